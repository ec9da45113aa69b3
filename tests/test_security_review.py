"""The last test of the security review still to move: a cross-site upload. It belongs with the
upload tests (tests/test_files_upload.py) and moves there once that file's pending changes are in;
the other tests of this file moved to the bridge's behaviour files (query, envelope, endpoints,
throttles) and to tests/test_realtime_sse.py."""

from __future__ import annotations

import pytest
from django.test import Client

from .bridge_support import API, echo_agent, error_codes, fresh_bridge  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]


def test_a_cross_site_upload_cannot_plant_a_file_in_a_new_visitors_session(tmp_path, settings):
    """A multipart POST needs no CORS preflight, so a foreign page could submit one with the
    victim's cookies. Without an anonymous id yet, the upload would create one in the victim's
    session: it must pass Django's CSRF check first."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from django_ai.conversations.models import File
    from django_ai.conversations.owners import new_anonymous_id

    settings.MEDIA_ROOT = tmp_path
    attacker = Client(enforce_csrf_checks=True)
    response = attacker.post(API + "files/", {"file": SimpleUploadedFile("note.txt", b"planted")})
    assert response.status_code == 403
    assert error_codes(response) == ["permission_denied"]
    assert File.objects.count() == 0
    # The page's own script (CSRF cookie + header) and stateless clients (header id) still upload.
    browser = Client(enforce_csrf_checks=True)
    browser.get("/")  # the demo page sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    ok = browser.post(API + "files/", {"file": SimpleUploadedFile("note.txt", b"mine")}, HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 201, ok.json()
    stateless = Client(enforce_csrf_checks=True)
    ok = stateless.post(
        API + "files/", {"file": SimpleUploadedFile("note.txt", b"mine too")},
        HTTP_X_CONVERSATION_ANONYMOUS_ID=new_anonymous_id(),
    )
    assert ok.status_code == 201, ok.json()
    assert File.objects.count() == 2
