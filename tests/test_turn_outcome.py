"""How a turn ends and what it records: completed, failed with a notice and its code, the metrics,
the turn signals (a broken receiver never breaks a turn), an agent that raises what is not an
Exception, returns what is not a reply, or is no longer registered.

Real parts: the database, real threads, the in-memory realtime backend.
"""

from __future__ import annotations

import gc
import time
import warnings
from datetime import timedelta

import pytest
from django.utils import timezone

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.realtime import reset_backend
from django_ai.conversations.realtime.memory import MemoryBackend
from django_ai.conversations.service import ConversationService
from django_ai.conversations.signals import turn_failed, turn_finished, turn_started
from django_ai.conversations.turns.lease import acquire_lease
from django_ai.conversations.turns.runner import process_pending, run_turn

from .turns_support import (
    TurnSignals,
    ai_settings,
    reply_to,
    session_for,
    turn_agents,  # noqa: F401 (a fixture, requested by pytestmark)
    waiting_message,
)

pytestmark = pytest.mark.usefixtures("turn_agents")


@pytest.mark.django_db
def test_metrics_on_the_agent_message():
    session = ConversationService.create_session("usage")
    message = waiting_message(session, "count", timestamp=timezone.now() - timedelta(seconds=2))
    [outcome] = process_pending(session.pk).outcomes
    metrics = reply_to(message).metrics
    assert outcome.status == ProcessingStatus.COMPLETED
    assert metrics["queue_wait_ms"] >= 2000
    assert isinstance(metrics["first_chunk_ms"], int) and metrics["first_chunk_ms"] >= 0
    assert metrics["total_ms"] >= metrics["first_chunk_ms"]
    assert metrics["chunks"] == 3
    assert (metrics["prompt_tokens"], metrics["completion_tokens"]) == (12, 5)
    assert metrics["attempt"] == 1


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
    session = session_for(InstantAgent)
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


@pytest.mark.django_db
def test_signals_and_a_broken_receiver_does_not_break_the_turn(caplog):
    calls = []

    def started(sender, **kwargs):
        calls.append(("started", sender.__name__))
        raise RuntimeError("telemetry is down")

    def finished(sender, status, metrics, agent_message, **kwargs):
        calls.append(
            ("finished", sender.__name__, str(status), agent_message.processing_status if agent_message else None)
        )

    def failed(sender, exception, **kwargs):
        calls.append(("failed", sender.__name__, type(exception).__name__))

    turn_started.connect(started)
    turn_finished.connect(finished)
    turn_failed.connect(failed)
    try:
        ok = ConversationService.send_message(ConversationService.create_session("quick-echo").pk, "hi")
        bad = ConversationService.send_message(ConversationService.create_session("failing").pk, "hi")
    finally:
        turn_started.disconnect(started)
        turn_finished.disconnect(finished)
        turn_failed.disconnect(failed)
    assert ok["response"] == "echo: hi"
    assert bad["status"] == "error"
    assert calls == [
        ("started", "EchoAgent"),
        ("finished", "EchoAgent", "completed", "completed"),
        ("started", "FailingAgent"),
        ("failed", "FailingAgent", "ValueError"),
        ("finished", "FailingAgent", "failed", "failed"),
    ]
    assert "telemetry is down" in caplog.text
    failed_message = ConversationMessage.objects.get(pk=bad["user_message_id"])
    assert reply_to(failed_message).content == "half an answer"
    assert reply_to(failed_message, MessageType.SYSTEM).metadata["code"] == "agent_error"


@pytest.mark.django_db
def test_unknown_agent_fails_the_message_with_a_clear_code(caplog):
    session = ConversationSession.objects.create(agent_path="not-registered")
    message = waiting_message(session, "hi")
    [outcome] = process_pending(session.pk).outcomes
    assert outcome.status == ProcessingStatus.FAILED
    assert reply_to(message, MessageType.SYSTEM).metadata["code"] == "agent_not_found"
    assert "not-registered" in caplog.text
    session.refresh_from_db()
    assert session.turn_token == ""


@pytest.mark.django_db
def test_a_turn_of_an_unregistered_agent_sends_started_failed_and_finished_once():
    # Before: turn_failed and turn_finished came without turn_started.
    session = ConversationSession.objects.create(agent_path="gone")
    message = waiting_message(session, "hi")
    with TurnSignals() as signals:
        (outcome,) = process_pending(session.pk).outcomes
    assert outcome.status == ProcessingStatus.FAILED
    assert signals.calls == [
        ("started", "ConversationAgent", str(message.pk)),
        ("failed", "ConversationAgent", "AgentNotFound"),
        ("finished", "ConversationAgent", "failed"),
    ]


@pytest.mark.django_db
def test_a_message_cancelled_after_being_picked_does_not_start():
    session = ConversationService.create_session("quick-echo")
    message = waiting_message(session, "hi")
    token = acquire_lease(session.pk, message.pk)
    ConversationMessage.objects.filter(pk=message.pk).update(processing_status=ProcessingStatus.CANCELLED)
    outcome = run_turn(message, token=token)
    assert outcome.status == ProcessingStatus.CANCELLED
    assert reply_to(message) is None


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
    session = session_for(agent)
    with TurnSignals() as signals:
        result = ConversationService.send_message(session.id, "abort")
    assert result["status"] == "error"
    assert [c[0] for c in signals.calls] == ["started", "failed", "finished"]
    assert signals.calls[1][2] == "AgentAbort"
    user = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert user.processing_status == ProcessingStatus.FAILED
    notice = user.replies.get(message_type=MessageType.SYSTEM)
    assert notice.metadata == {"code": "agent_error", "error_id": notice.metadata["error_id"]}
    assert "gave up" in caplog.text
    session.refresh_from_db()
    assert session.turn_token == "" and session.active_turn is None
    assert ConversationService.send_message(session.id, "next")["response"] == "fine"


class InterruptedAgent(ConversationAgent):
    def get_response(self, message, request=None, **kwargs):
        raise KeyboardInterrupt


@pytest.mark.django_db
def test_keyboard_interrupt_is_raised_again_once_the_turn_is_recorded():
    session = session_for(InterruptedAgent)
    with pytest.raises(KeyboardInterrupt):
        ConversationService.send_message(session.id, "hi")
    user = session.messages.get(message_type=MessageType.USER)
    assert user.processing_status == ProcessingStatus.FAILED
    session.refresh_from_db()
    assert session.turn_token == "" and session.active_turn is None


class ForgotAwait(ConversationAgent):
    async def _ask_model(self, message):
        return "answer"

    async def get_response(self, message, request=None, **kwargs):
        return self._ask_model(message)


@pytest.mark.django_db
def test_returning_a_coroutine_names_the_missing_await(caplog):
    session = session_for(ForgotAwait)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ConversationService.send_message(session.id, "hi")
        gc.collect()
    assert result["status"] == "error"
    assert "returned an awaitable (coroutine)" in caplog.text and "'await' it" in caplog.text
    assert not [w for w in caught if "was never awaited" in str(w.message)]
