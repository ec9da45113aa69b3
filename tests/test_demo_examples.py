"""The demo server's pages of the React and Vue examples (``/examples/react/``, ``/examples/vue/``;
backend/demo_urls.py). Their behaviour in a browser is tested by frontend_client/e2e/examples.test.ts
against a real build; here a stand-in build in a temporary folder shows what is served and what
is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend import demo_urls
from django_ai.conversations.conf import ai_settings
from django_ai.conversations.owners import valid_anonymous_id

pytestmark = pytest.mark.django_db


@pytest.fixture
def examples_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(demo_urls, "EXAMPLES_DIR", tmp_path)
    return tmp_path


def build(examples_dir: Path, folder: str) -> Path:
    dist = examples_dir / folder / "dist"
    dist.mkdir(parents=True)
    (dist / "index.html").write_text('<!doctype html><script type="module" src="./app.js"></script>')
    (dist / "app.js").write_text("console.log('built');")
    return dist


@pytest.mark.parametrize(("name", "folder"), [("react", "react-chat"), ("vue", "vue-chat")])
def test_the_built_page_gets_a_csrf_cookie_and_a_visitor_id(client, examples_dir, name, folder):
    build(examples_dir, folder)
    response = client.get(f"/examples/{name}/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b'src="./app.js"' in response.content
    # Writes (start/, messages) need the CSRF cookie; the live conversation list needs the id.
    assert "csrftoken" in response.cookies
    assert valid_anonymous_id(client.session[ai_settings.ANONYMOUS_ID_SESSION_KEY])
    script = client.get(f"/examples/{name}/app.js")
    assert script.status_code == 200
    assert "javascript" in script["Content-Type"]
    assert b"".join(script.streaming_content) == b"console.log('built');"


def test_without_a_slash_it_redirects_so_relative_assets_resolve(client, examples_dir):
    build(examples_dir, "react-chat")
    response = client.get("/examples/react")
    assert response.status_code == 301
    assert response["Location"] == "/examples/react/"


def test_an_unbuilt_example_says_how_to_build_it(client, examples_dir):
    response = client.get("/examples/vue/")
    assert response.status_code == 503
    assert "node frontend_client/scripts/build-examples.mjs" in response.content.decode()
    assert client.get("/examples/vue/app.js").status_code == 404


def test_only_the_examples_build_output_is_served(client, examples_dir):
    dist = build(examples_dir, "react-chat")
    (dist.parent / "secret.txt").write_text("not in dist")
    (examples_dir / "package.json").write_text("{}")
    assert client.get("/examples/svelte/").status_code == 404
    assert client.get("/examples/react/missing.js").status_code == 404
    for path in ("../secret.txt", "..%2Fsecret.txt", "%2E%2E/secret.txt", "../../package.json"):
        response = client.get(f"/examples/react/{path}")
        assert response.status_code == 404, path


def test_a_signed_in_user_is_not_given_a_visitor_id(client, examples_dir, django_user_model):
    build(examples_dir, "react-chat")
    client.force_login(django_user_model.objects.create_user("ada", password="pw"))
    assert client.get("/examples/react/").status_code == 200
    assert ai_settings.ANONYMOUS_ID_SESSION_KEY not in client.session
