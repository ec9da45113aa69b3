"""The app's endpoints besides the model paths: ``schema/``, ``start/``, ``cancel/``, unknown models
and paths (JSON 404s), paths without their trailing slash, the app mounted at a project's root.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import include, path

from django_ai.conversations.bridge import get_exposed
from django_ai.conversations.bridge.errors import UnknownModel
from django_ai.conversations.constants import EventName, ProcessingStatus
from django_ai.conversations.models import ConversationSession
from django_ai.conversations.testing.factories import MessageFactory, SessionFactory, UserFactory

from .bridge_support import API, ai, echo_agent, error_codes, error_fields, fresh_bridge, rows, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]


class TestEndpoints:
    """``schema/``, ``start/``, ``cancel/`` and unknown model names."""

    def test_schema_describes_models_agents_and_events(self):
        user = UserFactory()
        body = user_api(user).get("schema/").json()
        message = body["models"]["message"]
        assert message["actions"] == ["read", "create"]
        assert message["create_fields"] == ["session", "content", "files"]
        assert message["fields"]["session"] == {"type": "relation", "null": False, "related": "session"}
        assert message["fields"]["message_type"]["choices"] == ["user", "agent", "system", "widget", "tool"]
        assert message["filters"]["timestamp"] == ["gt", "gte", "lt", "lte"]
        assert "context" not in body["models"]["session"]["fields"]
        assert body["models"]["session"]["actions"] == ["read", "update", "delete"]
        assert body["models"]["file"]["actions"] == ["read", "delete"]
        assert {
            "path": "test-agent",
            "name": "EchoAgent",
            "description": "Answers with the message.",
            "start_params": None,
        } in body["agents"]
        assert body["events"] == [str(e) for e in EventName]

    def test_schema_tells_the_upload_limit(self):
        api = user_api(UserFactory())
        assert api.get("schema/").json()["uploads"] == {"max_size": 20 * 1024 * 1024}
        with ai(MAX_UPLOAD_SIZE=1000):
            assert api.get("schema/").json()["uploads"] == {"max_size": 1000}

    def test_start_validates_its_body(self):
        api = user_api(UserFactory())
        response = api.post("start/", {"agent_path": "nope"})
        assert response.status_code == 404 and error_codes(response) == ["agent_not_found"]
        response = api.post("start/", {"agent_path": "test-agent", "context": "x"})
        assert response.status_code == 400 and error_fields(response) == ["context"]
        response = api.post("start/", {"agent_path": "test-agent", "owner": 1})
        assert response.status_code == 400 and error_codes(response) == ["unknown_key"]
        response = api.post("start/", {"agent_path": "test-agent", "title": "Mine"})
        assert response.status_code == 201 and response.json()["title"] == "Mine"
        assert "csrftoken" in response.cookies

    def test_cancel_own_turn(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        waiting = MessageFactory(session=session, processing_status=ProcessingStatus.PENDING)
        api = user_api(user)
        response = api.post("cancel/", {"session_id": str(session.pk)})
        assert response.json() == {"status": "cancelling", "cancelled": [str(waiting.pk)]}
        waiting.refresh_from_db()
        assert waiting.processing_status == ProcessingStatus.CANCELLED
        assert api.post("cancel/", {"session_id": str(session.pk)}).json() == {"status": "idle", "cancelled": []}
        response = api.post("cancel/", {"session_id": str(SessionFactory().pk)})
        assert response.status_code == 404

    def test_unknown_model_is_404_everywhere(self):
        api = user_api(UserFactory())
        for response in (
            api.query("nope"),
            api.create("nope", {}),
            api.update("nope", uuid.uuid4(), {"a": 1}),
            api.delete("nope", uuid.uuid4()),
            api.query("__class__"),
        ):
            assert response.status_code == 404 and error_codes(response) == ["unknown_model"]
        with pytest.raises(UnknownModel):
            get_exposed("nope")


@pytest.mark.parametrize("key", ["cls"])
def test_a_context_key_named_like_the_hidden_class_argument_is_400(key):
    """``create_context`` is a classmethod: ``cls`` is not in its bound signature, so the check
    let it through and the call itself failed with a TypeError (500). From a client it is now an
    undeclared start parameter; from Python it is still a clear error."""
    from django_ai.conversations.actions import start_conversation
    from django_ai.conversations.exceptions import ContextValidationError

    client = Client(raise_request_exception=False)
    response = client.post(
        API + "start/", {"agent_path": "test-agent", "context": {key: 1}}, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert error_codes(response) == ["start_param_not_allowed"]
    with pytest.raises(ContextValidationError) as raised:
        start_conversation("test-agent", context_kwargs={key: 1})
    assert raised.value.code == "invalid_context"
    assert ConversationSession.objects.count() == 0


class TestUrlEdges:
    @pytest.mark.parametrize("debug", [True, False])
    def test_writes_without_the_trailing_slash(self, settings, debug):
        settings.DEBUG = debug
        settings.APPEND_SLASH = True
        user = UserFactory()
        session = SessionFactory(user=user, agent_path="test-agent")
        api = user_api(user)
        renamed = api._send("patch", f"models/session/{session.pk}", {"title": "renamed"})
        assert renamed.status_code == 200, renamed.content
        session.refresh_from_db()
        assert session.title == "renamed"
        created = api._send("post", "models/message", {"session": str(session.pk), "content": "hello"})
        assert created.status_code == 201, created.content
        queried = api._send("post", "models/message/query", {"filter": {"session": str(session.pk)}})
        assert [r["content"] for r in rows(queried, "message")][:1] == ["hello"]
        assert api._send("get", "schema").status_code == 200
        # The documented paths keep working.
        assert api.update("session", session.pk, {"title": "again"}).status_code == 200
        assert api.query("session").status_code == 200

    @pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
    @pytest.mark.parametrize(
        "path", ["models/a/b/c/", "models/session/1/2", "realtime/nope/", "files/x/y", "schema/more/"]
    )
    def test_unknown_paths_are_json_404(self, settings, method, path):
        settings.DEBUG = True
        api = user_api(UserFactory())
        response = api._send(method, path, {} if method in ("post", "patch") else None)
        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/json")
        assert error_codes(response) == ["not_found"]


def _project_view(request):
    from django.http import HttpResponse

    return HttpResponse("the project's own page")


# A project that mounts the app at its root, with its own URLs after it.
urlpatterns = [path("", include("django_ai.conversations.urls")), path("about/", _project_view)]


def test_mounted_at_the_root_the_app_leaves_other_paths_to_the_project(settings):
    settings.ROOT_URLCONF = __name__
    client = Client()
    assert client.get("/about/").content == b"the project's own page"
    assert client.get("/models/a/b/c/").status_code == 404
    assert client.get("/models/a/b/c/").json()["errors"][0]["code"] == "not_found"
