"""Review of ``POST files/``: refusals in the envelope, and nothing stored when one happens."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from django_ai.conversations.constants import SessionStatus
from django_ai.conversations.models import File
from django_ai.conversations.testing.factories import SessionFactory, UserFactory

from .bridge_support import API, error_codes, error_fields, user_api
from .test_files_upload import media  # noqa: F401 - the autouse fixture: MEDIA_ROOT in tmp, throttles reset
from .test_files_upload import stored_files as stored

pytestmark = pytest.mark.django_db


def test_more_files_than_django_accepts_is_an_envelope_400(media, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 5
    api = user_api(UserFactory())
    files = [SimpleUploadedFile(f"a{i}.txt", b"hello") for i in range(6)]
    response = api.client.post(API + "files/", {"file": files})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json", response.content[:200]
    assert error_codes(response) == ["too_many_files"]
    assert File.objects.count() == 0 and stored(media) == []


@pytest.mark.parametrize("status", [SessionStatus.ARCHIVED, SessionStatus.COMPLETED])
def test_no_upload_into_a_conversation_that_is_over(media, status):
    user = UserFactory()
    session = SessionFactory(user=user, status=status)
    response = user_api(user).client.post(API + "files/", {"file": SimpleUploadedFile("a.txt", b"hello"), "session": str(session.pk)})
    assert response.status_code == 409, response.json()
    assert error_codes(response) == ["session_not_active"] and error_fields(response) == ["session"]
    assert File.objects.count() == 0 and stored(media) == []


def test_an_active_conversation_of_the_caller_still_takes_uploads(media):
    user = UserFactory()
    session = SessionFactory(user=user)
    response = user_api(user).client.post(API + "files/", {"file": SimpleUploadedFile("a.txt", b"hello"), "session": str(session.pk)})
    assert response.status_code == 201, response.json()
    assert File.objects.get().session_id == session.pk and len(stored(media)) == 1
