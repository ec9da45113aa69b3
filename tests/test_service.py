"""ConversationService and start_conversation: owners, and bad input to every public function.

Every refused call must raise a clear ConversationError (code, message, field) and write nothing:
the row counts of the four models are compared before and after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent, register_agent
from django_ai.conversations.actions import start_conversation
from django_ai.conversations.conf import ai_settings
from django_ai.conversations.constants import SessionStatus
from django_ai.conversations.exceptions import (
    AgentNotFound,
    ContextValidationError,
    ConversationError,
    ConversationPermissionDenied,
    FileNotFound,
    InvalidInput,
    InvalidMessage,
    SessionNotActive,
    SessionNotFound,
)
from django_ai.conversations.models import ConversationMessage, ConversationSession, ConversationWidget, File
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FileFactory, SessionFactory, UserFactory
from tests.helpers import make_request, same_visitor

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


class Echo(ConversationAgent):
    """Says back what it hears."""

    class Context(BaseModel):
        plan: str = "free"
        seats: int = 1

    async def get_response(self, message, request=None, **kwargs):
        return f"echo: {message}"


class Strict(ConversationAgent):
    class Context(BaseModel):
        user_id: int
        plan: str

    @classmethod
    def create_context(cls, request=None, plan="free", **kwargs):
        user = getattr(request, "user", None)
        return cls.Context(user_id=user.id if user is not None and user.is_authenticated else 0, plan=plan, **kwargs)

    async def get_response(self, message, request=None, **kwargs):
        return "strict"


class Narrow(ConversationAgent):
    @classmethod
    def create_context(cls, request=None, *, tier="basic"):
        return {"tier": tier}

    async def get_response(self, message, request=None, **kwargs):
        return "narrow"


@pytest.fixture(autouse=True)
def agents():
    register_agent("echo", Echo)
    register_agent("strict", Strict)
    register_agent("narrow", Narrow)


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (ConversationSession, ConversationMessage, ConversationWidget, File)
    }


class Unchanged:
    """``with Unchanged():`` asserts that no row was written inside the block."""

    def __enter__(self) -> Unchanged:
        self.before = counts()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert counts() == self.before


def refused(
    error: type[ConversationError],
    call: Any,
    *,
    code: str | None = None,
    field: str | None = None,
    match: str | None = None,
) -> ConversationError:
    with Unchanged(), pytest.raises(error, match=match) as info:
        call()
    exc = info.value
    assert isinstance(exc, ConversationError) and exc.message and exc.status_code >= 400
    if code is not None:
        assert exc.code == code
    if field is not None:
        assert exc.field == field
    return exc


# --- create_session ---------------------------------------------------------------------------------


def test_create_session_validates_and_stores_the_context():
    user = UserFactory()
    session = ConversationService.create_session("echo", user=user, context={"plan": "team", "seats": "3"})
    assert session.user == user and session.anonymous_id == ""
    assert session.context == {"plan": "team", "seats": 3}
    assert session.status == SessionStatus.ACTIVE
    default = ConversationService.create_session("echo", anonymous_id="anon_visitor")
    assert default.context == {"plan": "free", "seats": 1} and default.anonymous_id == "anon_visitor"
    context_instance = ConversationService.create_session("echo", context=Echo.Context(plan="pro"))
    assert context_instance.context == {"plan": "pro", "seats": 1}


def test_create_session_by_import_path_stores_the_registered_path():
    session = ConversationService.create_session(f"{__name__}.Echo", title="Billing", metadata={"source": "web"})
    assert session.agent_path == "echo"
    assert session.title == "Billing" and session.metadata == {"source": "web"}


@pytest.mark.parametrize("agent_path", ["nope", "", None, 42, ["echo"], "sales/premium"])
def test_create_session_unknown_agent(agent_path):
    exc = refused(
        AgentNotFound,
        lambda: ConversationService.create_session(agent_path),
        code="agent_not_found",
        field="agent_path",
    )
    assert exc.status_code == 404


def test_unknown_agent_error_names_the_registered_ones_and_the_fix():
    exc = refused(AgentNotFound, lambda: ConversationService.create_session("supprot"))
    assert "'supprot'" in exc.message and "echo" in exc.message and "register_agent" in exc.message


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        (
            '{"support": "nowhere.SupportAgent"}',
            "DJANGO_AI['AGENTS']['support'] = 'nowhere.SupportAgent': Could not import",
        ),
        (
            '["agents.chat_agents.EchoAgent"]',
            "DJANGO_AI['AGENTS'] must be a dict of agent path -> dotted class path, not list",
        ),
    ],
)
def test_a_bad_agents_setting_stops_start_up_naming_the_setting(tmp_path, agents, expected):
    # Before: an ImproperlyDeclaredAgent that did not name the setting, or an AttributeError.
    (tmp_path / "bad_agents_settings.py").write_text(
        "from backend.settings import *  # noqa: F401,F403\n"
        "DJANGO_AI = {**globals().get('DJANGO_AI', {}), 'AGENTS': " + agents + "}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="bad_agents_settings", PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured" in done.stderr
    assert expected in done.stderr


@pytest.mark.parametrize(
    ("context", "match"),
    [
        ({"seats": "many"}, "seats"),
        ({"plan": ["a"]}, "plan"),
        ("plan=pro", "instance or a dict"),
        (["plan", "pro"], "instance or a dict"),
    ],
)
def test_create_session_context_that_does_not_validate(context, match):
    exc = refused(
        ContextValidationError,
        lambda: ConversationService.create_session("echo", context=context),
        code="invalid_context",
        match=match,
    )
    assert exc.status_code == 400


def test_create_session_required_context_fields_without_context():
    exc = refused(ContextValidationError, lambda: ConversationService.create_session("strict"), match="required")
    assert {e["field"] for e in exc.errors} == {"user_id", "plan"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user": 5}, "user"),
        ({"user": "alice"}, "user"),
        ({"anonymous_id": 123}, "anonymous_id"),
        ({"anonymous_id": "x" * 129}, "anonymous_id"),
        ({"anonymous_id": "a\x00b"}, "anonymous_id"),
        ({"title": "t" * 201}, "title"),
        ({"title": None}, "title"),
        ({"metadata": ["not", "a", "dict"]}, "metadata"),
        ({"metadata": {"when": object()}}, "metadata"),
        ({"metadata": {"ratio": float("nan")}}, "metadata"),
        ({"metadata": {"note": ["a\x00b"]}}, "metadata"),
        ({"title": "a\x00b"}, "title"),
    ],
)
def test_create_session_bad_arguments(kwargs, field):
    refused(InvalidInput, lambda: ConversationService.create_session("echo", **kwargs), field=field)


def test_create_session_context_that_cannot_be_stored():
    class Free(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            return "x"

    register_agent("free", Free)
    refused(
        ContextValidationError,
        lambda: ConversationService.create_session("free", context={"when": object()}),
        field="context",
        match="JSON",
    )
    refused(
        ContextValidationError,
        lambda: ConversationService.create_session("echo", context={"plan": "a\x00b"}),
        field="context",
        match="NUL",
    )
    # Stored fine on SQLite and PostgreSQL alike once valid.
    assert ConversationService.create_session("free", context={"nested": {"list": [1, "two", None]}}).context == {
        "nested": {"list": [1, "two", None]}
    }


def test_create_session_anonymous_user_without_id_has_no_owner():
    session = ConversationService.create_session("echo", user=AnonymousUser())
    assert session.user is None and session.anonymous_id == ""
    # Only server code (no user, no request) can use it.
    assert ConversationService.send_message(session.id, "hi")["response"] == "echo: hi"
    refused(
        ConversationPermissionDenied, lambda: ConversationService.send_message(session.id, "hi", request=make_request())
    )


# --- start_conversation -----------------------------------------------------------------------------


def test_start_conversation_returns_the_seed_dict_and_more():
    user = UserFactory()
    result = start_conversation("strict", context_kwargs={"plan": "pro"}, request=make_request(user), title="Plan")
    session = ConversationSession.objects.get(pk=result["session_id"])
    assert result == {
        "session_id": str(session.pk),
        "status": "active",
        "agent_path": "strict",
        "anonymous_id": None,
        "title": "Plan",
        "created_at": session.created_at.isoformat(),
    }
    assert session.context == {"user_id": user.id, "plan": "pro"}


def test_start_conversation_without_request():
    result = start_conversation("echo", context_kwargs={"plan": "team"})
    session = ConversationSession.objects.get(pk=result["session_id"])
    assert result["anonymous_id"] is None and session.user is None and session.anonymous_id == ""
    assert session.context == {"plan": "team", "seats": 1}


@pytest.mark.parametrize(
    ("agent_path", "context_kwargs", "error", "match"),
    [
        ("nobody", None, AgentNotFound, "No agent is registered under 'nobody'"),
        ("echo", ["plan"], ContextValidationError, "context_kwargs must be a dict"),
        ("echo", "plan=pro", ContextValidationError, "context_kwargs must be a dict"),
        ("echo", {"seats": "lots"}, ContextValidationError, "seats"),
        ("strict", {"plan": 3}, ContextValidationError, "plan"),
        ("narrow", {"plan": "pro"}, ContextValidationError, "does not accept these context_kwargs"),
        ("narrow", {1: "x"}, ContextValidationError, "valid keyword names"),
        ("narrow", {"request": "x"}, ContextValidationError, "does not accept"),
    ],
)
def test_start_conversation_bad_input(agent_path, context_kwargs, error, match):
    request = make_request()
    refused(error, lambda: start_conversation(agent_path, context_kwargs=context_kwargs, request=request), match=match)


@pytest.mark.parametrize("request_arg", ["x", {"user": 1}, 42])
def test_start_conversation_refuses_what_is_not_a_request(request_arg):
    with pytest.raises(TypeError, match="takes the visitor's HttpRequest"):
        start_conversation("echo", request=request_arg)
    assert not ConversationSession.objects.exists()


def test_start_conversation_create_context_returning_the_wrong_type():
    class Wrong(ConversationAgent):
        @classmethod
        def create_context(cls, request=None, **kwargs):
            return "not a context"

        async def get_response(self, message, request=None, **kwargs):
            return "x"

    register_agent("wrong", Wrong)
    refused(
        ContextValidationError,
        lambda: start_conversation("wrong"),
        match="must return a EmptyContext instance or a dict",
    )


def test_start_conversation_bug_in_create_context_propagates_and_writes_nothing():
    class Buggy(ConversationAgent):
        @classmethod
        def create_context(cls, request=None, **kwargs):
            raise KeyError("tier")

        async def get_response(self, message, request=None, **kwargs):
            return "x"

    register_agent("buggy", Buggy)
    with Unchanged(), pytest.raises(KeyError):
        start_conversation("buggy")


# --- Owners -----------------------------------------------------------------------------------------


def test_anonymous_visitor_keeps_access_through_the_django_session():
    request = make_request()
    first = start_conversation("echo", request=request)
    anonymous_id = request.session[ai_settings.ANONYMOUS_ID_SESSION_KEY]
    assert first["anonymous_id"] == anonymous_id and anonymous_id.startswith("anon_")
    assert len(anonymous_id) >= 43  # 256 random bits

    later = same_visitor(request)
    # The same visitor keeps the same id for new conversations...
    second = start_conversation("echo", request=later)
    assert second["anonymous_id"] == anonymous_id
    # ...and reaches both.
    for session_id in (first["session_id"], second["session_id"]):
        result = ConversationService.send_message(session_id, "mine?", user=later.user, request=later)
        assert result["response"] == "echo: mine?"


def test_another_visitor_is_refused():
    request = make_request()
    session = start_conversation("echo", request=request)
    stranger = make_request()
    start_conversation("echo", request=stranger)  # has an anonymous id of their own
    for other in (stranger, make_request()):
        exc = refused(
            ConversationPermissionDenied,
            lambda other=other: ConversationService.send_message(session["session_id"], "hi", request=other),
        )
        assert exc.status_code == 403 and exc.code == "permission_denied"
    signed_in = make_request(UserFactory())
    refused(
        ConversationPermissionDenied,
        lambda: ConversationService.send_message(session["session_id"], "hi", user=signed_in.user, request=signed_in),
    )


def test_stateless_client_sends_the_anonymous_id_in_a_header():
    request = make_request()
    del request.session  # no session middleware
    result = start_conversation("echo", request=request)
    anonymous_id = result["anonymous_id"]
    assert anonymous_id and anonymous_id.startswith("anon_")

    header = "HTTP_" + ai_settings.ANONYMOUS_ID_HEADER.upper().replace("-", "_")
    later = make_request()
    later.META[header] = anonymous_id
    assert ConversationService.send_message(result["session_id"], "hi", request=later)["status"] == "success"
    # A header value that is not an id this app issues is ignored.
    forged = make_request()
    forged.META[header] = "guest"
    refused(
        ConversationPermissionDenied,
        lambda: ConversationService.send_message(result["session_id"], "hi", request=forged),
    )


def test_authenticated_owner():
    owner, other = UserFactory(), UserFactory()
    result = start_conversation("echo", request=make_request(owner))
    assert result["anonymous_id"] is None
    assert ConversationService.send_message(result["session_id"], "a", user=owner)["status"] == "success"
    assert (
        ConversationService.send_message(result["session_id"], "b", request=make_request(owner))["status"] == "success"
    )
    refused(
        ConversationPermissionDenied, lambda: ConversationService.send_message(result["session_id"], "c", user=other)
    )
    refused(
        ConversationPermissionDenied,
        lambda: ConversationService.send_message(result["session_id"], "c", user=AnonymousUser()),
    )
    assert ConversationService.get_session(result["session_id"], user=owner).pk == uuid.UUID(result["session_id"])


# --- send_message -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session_id", "match"),
    [
        (None, "session_id is required"),
        ("", "session_id is required"),
        ("not-a-uuid", "not a valid id"),
        (12, "not a valid id"),
        ("00000000-0000-0000-0000-000000000000", "does not exist"),
        (uuid.uuid4(), "does not exist"),
    ],
)
def test_send_message_unknown_or_missing_session(session_id, match):
    exc = refused(
        SessionNotFound,
        lambda: ConversationService.send_message(session_id, "hi"),
        code="session_not_found",
        match=match,
    )
    assert exc.status_code == 404


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        (None, "must be a str, not NoneType"),
        (b"bytes", "must be a str, not bytes"),
        (42, "must be a str, not int"),
        ({"text": "hi"}, "must be a str, not dict"),
        ("a\x00b", "NUL"),
    ],
)
def test_send_message_bad_message(message, match):
    session = ConversationService.create_session("echo")
    refused(
        InvalidMessage,
        lambda: ConversationService.send_message(session.id, message),
        code="invalid_message",
        field="message",
        match=match,
    )


def test_send_message_overlong_message():
    session = ConversationService.create_session("echo")
    with override_settings(DJANGO_AI={"MAX_MESSAGE_LENGTH": 10}):
        refused(
            InvalidMessage,
            lambda: ConversationService.send_message(session.id, "x" * 11),
            match="longer than 10 characters",
        )
        assert ConversationService.send_message(session.id, "x" * 10)["status"] == "success"


def test_send_message_to_an_archived_session():
    session = ConversationService.create_session("echo")
    ConversationSession.objects.filter(pk=session.pk).update(status=SessionStatus.ARCHIVED)
    exc = refused(
        SessionNotActive, lambda: ConversationService.send_message(session.id, "hi"), code="session_not_active"
    )
    assert exc.status_code == 409


def test_send_message_when_the_agent_is_no_longer_registered():
    session = SessionFactory(agent_path="retired")
    refused(AgentNotFound, lambda: ConversationService.send_message(session.id, "hi"))


def test_send_message_files(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    owner, stranger = UserFactory(), UserFactory()
    session = ConversationService.create_session("echo", user=owner)
    mine = FileFactory(user=owner, text="notes")  # extracted: the echo turn does not wait for it
    theirs = FileFactory(user=stranger)
    anonymous = FileFactory(anonymous_id="anon_someone_else_entirely_0123456789")

    for files in ([theirs], [mine, theirs.id], [str(anonymous.id)], [uuid.uuid4()]):
        refused(
            FileNotFound,
            lambda files=files: ConversationService.send_message(session.id, "see", user=owner, files=files),
            code="file_not_found",
            field="files",
        )
    refused(
        FileNotFound,
        lambda: ConversationService.send_message(session.id, "see", user=owner, files=["../etc/passwd"]),
        match="not a valid id",
    )
    for files in (mine, str(mine.id), mine.id, 7):
        refused(
            InvalidInput,
            lambda files=files: ConversationService.send_message(session.id, "see", user=owner, files=files),
            field="files",
        )

    result = ConversationService.send_message(session.id, "see", user=owner, files=[mine, mine.id])
    assert result["status"] == "success"
    message = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert list(message.files.all()) == [mine]
    mine.refresh_from_db()
    assert mine.session_id == session.pk
    # Once attached to the session, the file may be sent again, even by server code.
    assert ConversationService.send_message(session.id, "again", files=[mine])["status"] == "success"


def test_send_message_result_shape():
    session = ConversationService.create_session("echo")
    result = ConversationService.send_message(session.id, "hi")
    agent_message = ConversationMessage.objects.get(session=session, message_type="agent")
    user_message = ConversationMessage.objects.get(session=session, message_type="user")
    assert result == {
        "status": "success",
        "response": "echo: hi",
        "session_id": str(session.pk),
        "user_message_id": str(user_message.pk),
        "message_id": str(agent_message.pk),
    }
    assert user_message.processing_status == agent_message.processing_status == "completed"
    assert agent_message.reply_to_id == user_message.pk
    session.refresh_from_db()
    assert session.last_message_at is not None and session.turn_token == "" and session.active_turn is None


def test_get_session_and_cancel_turn():
    session = ConversationService.create_session("echo")
    assert ConversationService.get_session(str(session.pk)) == session
    refused(SessionNotFound, lambda: ConversationService.get_session("nope"))
    assert ConversationService.cancel_turn(session.pk) == {"status": "idle", "cancelled": []}
