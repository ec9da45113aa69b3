"""The demo page at ``/`` (its behaviour in a browser is tested by frontend_client/e2e/)."""

from __future__ import annotations

import json
import re

import pytest

from django_ai.conversations.conf import ai_settings
from django_ai.conversations.owners import valid_anonymous_id

pytestmark = pytest.mark.django_db


def page_config(response) -> dict:
    match = re.search(r'<script id="demo-config" type="application/json">(.*?)</script>', response.content.decode())
    assert match, "the page has no demo-config"
    return json.loads(match.group(1))


def test_anonymous_visitor_gets_the_page_an_id_and_a_csrf_cookie(client):
    response = client.get("/")
    assert response.status_code == 200
    assert "csrftoken" in response.cookies
    assert valid_anonymous_id(client.session[ai_settings.ANONYMOUS_ID_SESSION_KEY])
    config = page_config(response)
    assert config["apiBase"] == "/api/conversations/"
    assert config["user"] is None
    # The SDK bundle the app ships as a static file (the wheel has it), not a checkout's build folder.
    assert config["sdk"] == "/static/django_ai/conversations/client.js"
    assert 'src="/static/demo/app.js"' in response.content.decode()


def test_the_visitor_id_is_stable_and_owns_the_channel(client):
    client.get("/")
    first = client.session[ai_settings.ANONYMOUS_ID_SESSION_KEY]
    client.get("/")
    assert client.session[ai_settings.ANONYMOUS_ID_SESSION_KEY] == first
    # The live session list has a channel from the first request on.
    owner_channel = client.get("/api/conversations/realtime/config/").json()["owner_channel"]
    assert owner_channel.startswith("private-conversation-owner-anon-")


def test_signed_in_user(client, django_user_model):
    user = django_user_model.objects.create_user("ada", password="pw")
    client.force_login(user)
    response = client.get("/")
    assert page_config(response)["user"] == "ada"
    assert ai_settings.ANONYMOUS_ID_SESSION_KEY not in client.session
    assert "Sign out" in response.content.decode()


def test_missing_bundle_says_how_to_build_it(client, monkeypatch):
    from backend import demo_urls

    monkeypatch.setattr(demo_urls.finders, "find", lambda path: None)
    body = client.get("/").content.decode()
    assert "The SDK bundle is not built" in body
    assert "npm run build" in body
    assert "demo/app.js" not in body


@pytest.mark.once
def test_debug_is_off_unless_asked_for():
    """An error page under DEBUG shows settings and code; the demo turns it on only with
    DJANGO_DEBUG=1."""
    import os
    import subprocess
    import sys

    def debug_with(value: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_DEBUG"}
        if value is not None:
            env["DJANGO_DEBUG"] = value
        code = "import backend.settings as s; print(s.DEBUG)"
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert debug_with(None) == "False"
    assert debug_with("0") == "False"
    assert debug_with("1") == "True"


def test_the_page_and_its_files_are_served_with_debug_off(client, settings):
    settings.DEBUG = False
    page = client.get("/")
    assert page.status_code == 200
    for url in ("/static/demo/app.js", "/static/demo/app.css", page_config(page)["sdk"]):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"".join(response.streaming_content)
    # No path escapes the static folders.
    for path in (
        "/static/../backend/settings.py",
        "/static/demo/../../backend/settings.py",
        "/static/demo/%2e%2e/%2e%2e/settings.py",
    ):
        assert client.get(path).status_code in (400, 404), path
