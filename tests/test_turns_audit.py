"""Audit of the turn machinery: what an agent can get wrong (or a library raises at it), and what
the turn, the stored context, the signals and the metrics do then.

Real parts: the database, real threads (cancel tests run the turn in a background thread with its
own connection), a subprocess for start-up errors.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from django.db.models import JSONField, Value
from pydantic import BaseModel, Field

from django_ai.conversations import ConversationAgent, register_agent
from django_ai.conversations.actions import start_conversation
from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.exceptions import ContextValidationError
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.realtime import reset_backend
from django_ai.conversations.realtime.memory import MemoryBackend
from django_ai.conversations.turns.hooks import answered_by_caller
from django_ai.conversations.turns.runner import process_pending
from django_ai.conversations.service import ConversationService
from django_ai.conversations.signals import turn_failed, turn_finished, turn_started

from .turns_support import Background, ai_settings

ROOT = Path(__file__).resolve().parent.parent


def _session(agent_cls: type[ConversationAgent], context: Any = None) -> ConversationSession:
    register_agent("audit", agent_cls)
    return ConversationService.create_session("audit", context=context)


def _rows(session: ConversationSession) -> list[tuple[str, str, str]]:
    return list(
        session.messages.order_by("timestamp", "id").values_list("message_type", "processing_status", "content")
    )


class _Signals:
    """Records the three turn signals while the block runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def _started(self, sender: Any, session: Any, user_message: Any, **kwargs: Any) -> None:
        self.calls.append(("started", sender.__name__, str(user_message.pk)))

    def _failed(self, sender: Any, session: Any, user_message: Any, exception: Any, **kwargs: Any) -> None:
        self.calls.append(("failed", sender.__name__, type(exception).__name__))

    def _finished(self, sender: Any, session: Any, user_message: Any, agent_message: Any, status: Any, metrics: Any, **kwargs: Any) -> None:
        self.calls.append(("finished", sender.__name__, str(status)))

    def __enter__(self) -> _Signals:
        turn_started.connect(self._started)
        turn_failed.connect(self._failed)
        turn_finished.connect(self._finished)
        return self

    def __exit__(self, *exc: Any) -> None:
        turn_started.disconnect(self._started)
        turn_failed.disconnect(self._failed)
        turn_finished.disconnect(self._finished)


# --- Context: aliases, wrong types ---------------------------------------------------------------


class AliasedAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int = Field(0, alias="userId")
        visits: int = 0

    async def get_response(self, message, request=None, **kwargs):
        self.context.visits += 1
        return f"user {self.context.user_id}, visit {self.context.visits}"


@pytest.mark.django_db
def test_a_context_with_aliased_fields_keeps_its_values_across_turns():
    # Before: the JSON stored by field name was read back by alias only, so user_id silently
    # fell back to its default at session creation and at every turn.
    session = _session(AliasedAgent, context={"userId": 5})
    session.refresh_from_db()
    assert session.context == {"user_id": 5, "visits": 0}
    first = ConversationService.send_message(session.id, "hi")
    second = ConversationService.send_message(session.id, "hi again")
    assert (first["response"], second["response"]) == ("user 5, visit 1", "user 5, visit 2")
    session.refresh_from_db()
    assert session.context == {"user_id": 5, "visits": 2}

    started = start_conversation("audit", context_kwargs={"userId": 7})
    assert ConversationSession.objects.get(pk=started["session_id"]).context == {"user_id": 7, "visits": 0}


class ForgetfulAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int = 0

    @classmethod
    def create_context(cls, request=None, **kwargs):
        cls.Context(user_id=42)  # no return

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class OtherModel(BaseModel):
    user_id: int = 42
    secret_plan: str = "gold"


class WrongModelAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int = 0

    @classmethod
    def create_context(cls, request=None, **kwargs):
        return OtherModel()

    async def get_response(self, message, request=None, **kwargs):
        return "x"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("agent", "match"),
    [
        (ForgetfulAgent, r"must return a Context instance or a dict, not NoneType \(did it forget to 'return'"),
        (WrongModelAgent, "must return a Context instance or a dict, not OtherModel"),
    ],
)
def test_create_context_returning_none_or_another_model_is_refused(agent, match):
    # Before: None became the defaults (user_id=0) and another model was converted, dropping
    # what did not fit, both silently.
    register_agent("audit", agent)
    with pytest.raises(ContextValidationError, match=match) as info:
        start_conversation("audit")
    assert info.value.code == "invalid_context"
    assert not ConversationSession.objects.exists()


@pytest.mark.django_db
def test_create_session_refuses_a_context_of_another_model_class():
    register_agent("audit", WrongModelAgent)
    with pytest.raises(ContextValidationError, match="must be a Context instance or a dict, not OtherModel"):
        ConversationService.create_session("audit", context=OtherModel())
    assert not ConversationSession.objects.exists()


class ContextDroppingAgent(ConversationAgent):
    class Context(BaseModel):
        count: int = 0

    def get_response(self, message, request=None, **kwargs):
        if message == "drop":
            self.context = None
        else:
            self.context.count += 1
        return "done"


@pytest.mark.django_db
def test_an_agent_that_sets_its_context_to_none_fails_and_keeps_the_stored_context():
    # Before: the turn succeeded and the conversation's state was reset to the defaults.
    session = _session(ContextDroppingAgent, context={"count": 3})
    results = [ConversationService.send_message(session.id, m)["status"] for m in ("inc", "drop", "inc")]
    assert results == ["success", "error", "success"]
    session.refresh_from_db()
    assert session.context == {"count": 5}
    assert session.messages.get(message_type=MessageType.SYSTEM).metadata == {"code": "invalid_context"}


@pytest.mark.django_db
def test_a_context_stored_as_json_null_is_read_as_empty():
    session = _session(ContextDroppingAgent)
    ConversationSession.objects.filter(pk=session.pk).update(context=Value(None, output_field=JSONField()))
    session.refresh_from_db()
    assert session.context is None
    assert ConversationService.send_message(session.id, "inc")["status"] == "success"
    session.refresh_from_db()
    assert session.context == {"count": 1}


# --- Agents that raise what is not an Exception ----------------------------------------------------


class AgentAbort(BaseException):
    """What some libraries raise (pytest.fail(), trio/gevent timeouts): not an Exception."""


class SyncAborting(ConversationAgent):
    def get_response(self, message, request=None, **kwargs):
        if message == "abort":
            with ResponseStream() as stream:
                stream.write("half")
                raise AgentAbort("gave up")
        return "fine"


class AsyncAborting(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        if message == "abort":
            raise AgentAbort("gave up")
        return "fine"


@pytest.mark.django_db
@pytest.mark.parametrize("agent", [SyncAborting, AsyncAborting])
def test_a_base_exception_from_the_agent_fails_the_turn_and_frees_the_conversation(agent, caplog):
    # Before: it escaped the turn: the message stayed "processing" and the lease stayed held, so
    # the conversation was stuck until crash recovery (STALE_TURN_TIMEOUT).
    session = _session(agent)
    with _Signals() as signals:
        result = ConversationService.send_message(session.id, "abort")
    assert result["status"] == "error"
    assert [c[0] for c in signals.calls] == ["started", "failed", "finished"]
    assert signals.calls[1][2] == "AgentAbort"
    user = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert user.processing_status == ProcessingStatus.FAILED
    assert user.replies.get(message_type=MessageType.SYSTEM).metadata == {"code": "agent_error"}
    assert "gave up" in caplog.text
    session.refresh_from_db()
    assert session.turn_token == "" and session.active_turn is None
    assert ConversationService.send_message(session.id, "next")["response"] == "fine"


class InterruptedAgent(ConversationAgent):
    def get_response(self, message, request=None, **kwargs):
        raise KeyboardInterrupt


@pytest.mark.django_db
def test_keyboard_interrupt_is_raised_again_once_the_turn_is_recorded():
    session = _session(InterruptedAgent)
    with pytest.raises(KeyboardInterrupt):
        ConversationService.send_message(session.id, "hi")
    user = session.messages.get(message_type=MessageType.USER)
    assert user.processing_status == ProcessingStatus.FAILED
    session.refresh_from_db()
    assert session.turn_token == "" and session.active_turn is None


# --- Cancel: agents whose way out raises -----------------------------------------------------------

STREAMING = threading.Event()


class AsyncCleanupRaises(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            stream.write("partial")
            try:
                STREAMING.set()
                await asyncio.sleep(30)
            finally:
                raise RuntimeError("closing the HTTP client failed")
        return stream.content


class SyncWrapsTheStop(ConversationAgent):
    def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            stream.write("partial")
            STREAMING.set()
            try:
                for _ in range(600):
                    time.sleep(0.05)
                    stream.write(".")
            except BaseException as exc:
                raise RuntimeError("tool loop aborted") from exc
        return stream.content


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("agent", [AsyncCleanupRaises, SyncWrapsTheStop])
def test_an_agent_that_raises_while_being_cancelled_ends_cancelled(agent, caplog):
    # Before: the turn ended "failed" with the generic error notice although the user cancelled.
    STREAMING.clear()
    session = _session(agent)
    with _Signals() as signals:
        turn = Background(lambda: ConversationService.send_message(session.id, "go"))
        turn.start()
        assert STREAMING.wait(20)
        assert ConversationService.cancel_turn(session.id)["status"] == "cancelling"
        result = turn.outcome(30)
    assert result["status"] == "cancelled"
    assert result["response"].startswith("partial")
    rows = _rows(session)
    assert [(t, s) for t, s, _ in rows] == [("user", "cancelled"), ("agent", "cancelled")]
    assert rows[1][2].startswith("partial")
    assert [c[0] for c in signals.calls] == ["started", "finished"]
    assert signals.calls[1][2] == "cancelled"
    assert "raised while being stopped" in caplog.text


# --- Signals, metrics, replies ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_turn_of_an_unregistered_agent_sends_started_failed_and_finished_once():
    # Before: turn_failed and turn_finished came without turn_started.
    session = ConversationSession.objects.create(agent_path="gone")
    message = ConversationMessage(
        session=session, message_type=MessageType.USER, content="hi", processing_status=ProcessingStatus.PENDING
    )
    with answered_by_caller():
        message.save()
    with _Signals() as signals:
        (outcome,) = process_pending(session.pk).outcomes
    assert outcome.status == ProcessingStatus.FAILED
    assert signals.calls == [
        ("started", "ConversationAgent", str(message.pk)),
        ("failed", "ConversationAgent", "AgentNotFound"),
        ("finished", "ConversationAgent", "failed"),
    ]


class ForgotAwait(ConversationAgent):
    async def _ask_model(self, message):
        return "answer"

    async def get_response(self, message, request=None, **kwargs):
        return self._ask_model(message)


@pytest.mark.django_db
def test_returning_a_coroutine_names_the_missing_await(caplog):
    session = _session(ForgotAwait)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ConversationService.send_message(session.id, "hi")
        gc.collect()
    assert result["status"] == "error"
    assert "returned an awaitable (coroutine)" in caplog.text and "'await' it" in caplog.text
    assert not [w for w in caught if "was never awaited" in str(w.message)]


class SlowFlushBackend(MemoryBackend):
    """Memory backend whose end-of-turn flush (timeout 1 s) takes half a second, like a slow
    Pusher; records when that flush started."""

    flush_started: list[float] = []

    def flush(self, timeout: float | None = None) -> None:
        if timeout and timeout >= 1:
            SlowFlushBackend.flush_started.append(time.monotonic())
            time.sleep(0.5)


class InstantAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        return "done"


@pytest.mark.django_db
def test_total_ms_is_the_agents_time_not_the_delivery_of_its_events():
    session = _session(InstantAgent)
    SlowFlushBackend.flush_started.clear()
    with ai_settings(REALTIME_BACKEND=f"{__name__}.SlowFlushBackend"):
        reset_backend()
        try:
            before = time.monotonic()
            result = ConversationService.send_message(session.id, "hi")
        finally:
            reset_backend()
    assert result["status"] == "success"
    (flush_started,) = SlowFlushBackend.flush_started
    total_ms = ConversationMessage.objects.get(pk=result["message_id"]).metrics["total_ms"]
    # The turn started after `before` and the agent returned before the flush began.
    assert total_ms <= (flush_started - before) * 1000


# --- Start-up --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        ('{"support": "nowhere.SupportAgent"}', "DJANGO_AI['AGENTS']['support'] = 'nowhere.SupportAgent': Could not import"),
        ('["agents.chat_agents.EchoAgent"]', "DJANGO_AI['AGENTS'] must be a dict of agent path -> dotted class path, not list"),
    ],
)
def test_a_bad_agents_setting_stops_start_up_naming_the_setting(tmp_path, agents, expected):
    # Before: an ImproperlyDeclaredAgent that did not name the setting, or an AttributeError.
    (tmp_path / "audit_settings.py").write_text(
        "from backend.settings import *  # noqa: F401,F403\n"
        "DJANGO_AI = {**globals().get('DJANGO_AI', {}), 'AGENTS': " + agents + "}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="audit_settings", PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured" in done.stderr
    assert expected in done.stderr
