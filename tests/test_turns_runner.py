"""The turn itself: threads, heartbeats, timeouts, metrics, signals, lost leases.

Real parts: the database (SQLite file / PostgreSQL) with real threads and connections; agents
really sleep, hang and stream.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.utils import timezone

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.exceptions import TurnCancelled
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.registry import register_agent
from django_ai.conversations.turns.hooks import answered_by_caller
from django_ai.conversations.turns.lease import acquire_lease
from django_ai.conversations.turns.runner import process_pending, run_turn
from django_ai.conversations.turns.state import TurnExecutor, TurnState
from django_ai.conversations.service import ConversationService
from django_ai.conversations.signals import turn_failed, turn_finished, turn_started
from django_ai.conversations.testing import isolated_registry, wait_until

from . import turns_support as support
from .turns_support import AGENTS, Background, ai_settings, reply_to, status_of


@pytest.fixture(autouse=True)
def _agents():
    support.RELEASE.clear()
    with isolated_registry(AGENTS):
        yield
    support.RELEASE.set()  # let abandoned agents end


def _waiting(session: ConversationSession, text: str, **fields) -> ConversationMessage:
    """A pending user message that no task picks up: the test runs its turn itself."""
    message = ConversationMessage(
        session=session, message_type=MessageType.USER, content=text, processing_status=ProcessingStatus.PENDING, **fields
    )
    with answered_by_caller():
        message.save()
    return message


def _agent_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("django-ai-agent-")]


@pytest.mark.django_db(transaction=True)
def test_heartbeats_continue_while_a_sync_agent_is_silent():
    with ai_settings(TURN_HEARTBEAT_INTERVAL=0.1):
        session = ConversationService.create_session("silent")
        message = _waiting(session, "silent 1.5")
        turn = Background(lambda: process_pending(session.pk).outcomes)
        turn.start()
        beats = set()
        wait_until(lambda: status_of(message) == ProcessingStatus.PROCESSING, 5)
        while status_of(message) == ProcessingStatus.PROCESSING:
            beats.add(ConversationSession.objects.values_list("turn_heartbeat_at", flat=True).get(pk=session.pk))
            time.sleep(0.05)
        outcomes = turn.outcome()
    assert outcomes[0].status == ProcessingStatus.COMPLETED
    beats.discard(None)
    assert len(beats) >= 4, beats  # every 0.1 s for 1.5 s, while the agent wrote nothing
    assert support.SEEN_THREADS["silent 1.5"].startswith("django-ai-agent-")


@pytest.mark.django_db
def test_async_agent_orm_calls_use_the_turn_thread_and_its_transaction():
    """``await Model.objects.aget()`` and ``sync_to_async`` inside an async agent run on the turn's
    thread: same connection, so rows of the caller's open transaction (this test's) are visible."""

    class OrmAgent(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            user = await get_user_model().objects.aget(username="probe")
            where = await sync_to_async(lambda: threading.current_thread().name)()
            return f"{user.username}@{where}"

    register_agent("orm", OrmAgent)
    get_user_model().objects.create(username="probe")
    session = ConversationService.create_session("orm")
    result = ConversationService.send_message(session.pk, "who?")
    assert result["response"] == f"probe@{threading.current_thread().name}"


@pytest.mark.django_db
def test_sync_agent_inside_an_open_transaction_runs_in_the_turn_thread():
    seen = {}

    class OrmSync(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            seen["thread"] = threading.current_thread().name
            return get_user_model().objects.get(username="probe").username

    register_agent("orm-sync", OrmSync)
    get_user_model().objects.create(username="probe")
    session = ConversationService.create_session("orm-sync")
    assert ConversationService.send_message(session.pk, "who?")["response"] == "probe"
    assert seen["thread"] == threading.current_thread().name


@pytest.mark.django_db(transaction=True)
def test_sync_agent_in_autocommit_runs_in_a_helper_thread_and_uses_the_orm():
    seen = {}

    class OrmSync(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            seen["thread"] = threading.current_thread().name
            return str(ConversationMessage.objects.filter(session=self.session).count())

    register_agent("orm-sync", OrmSync)
    session = ConversationService.create_session("orm-sync")
    assert ConversationService.send_message(session.pk, "count")["response"] == "1"
    assert seen["thread"].startswith("django-ai-agent-")
    wait_until(lambda: not _agent_threads(), 5)


@pytest.mark.django_db
def test_hanging_async_agent_is_cancelled_at_the_turn_timeout():
    session = ConversationService.create_session("hang-async")
    started = time.monotonic()
    result = ConversationService.send_message(session.pk, "hang")
    assert time.monotonic() - started < 20  # bounded by the 0.4 s timeout, not the agent's 60 s sleep
    assert result["status"] == "error"
    user_message = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert user_message.processing_status == ProcessingStatus.FAILED
    notice = reply_to(user_message, MessageType.SYSTEM)
    assert notice.metadata["code"] == "turn_timeout"
    assert notice.metrics["stopped"] == "timeout"


@pytest.mark.django_db(transaction=True)
def test_hanging_sync_agent_is_left_behind_and_the_conversation_goes_on():
    """A sync agent cannot be killed: at the timeout (+ grace) its turn ends without it, the next
    message is answered, and when the agent wakes up it can no longer write anything."""
    with ai_settings(TURN_CANCEL_GRACE=0.2):
        session = ConversationService.create_session("hang-sync")
        first = _waiting(session, "hang")
        second = _waiting(session, "quick")
        started = time.monotonic()
        outcomes = process_pending(session.pk).outcomes
        elapsed = time.monotonic() - started
    assert elapsed < 20, elapsed  # bounded by timeout + grace, not by the agent (30 s)
    assert [o.status for o in outcomes] == [ProcessingStatus.FAILED, ProcessingStatus.COMPLETED]
    assert reply_to(first, MessageType.SYSTEM).metadata["code"] == "turn_timeout"
    assert reply_to(second).content == "quick answer"
    abandoned = [t for t in _agent_threads() if t.is_alive()]
    assert abandoned, "the hanging agent's thread should still be running"
    support.RELEASE.set()
    for thread in abandoned:
        thread.join(5)
    assert not ConversationMessage.objects.filter(content__contains="late").exists()
    assert ConversationMessage.objects.filter(session=session).count() == 4  # 2 user, 1 notice, 1 answer
    assert status_of(first) == ProcessingStatus.FAILED


@pytest.mark.django_db
def test_sync_agent_in_an_open_transaction_times_out_when_it_checks_cancelled():
    with ai_settings(TURN_TIMEOUT=0.3):
        session = ConversationService.create_session("polite")
        result = ConversationService.send_message(session.pk, "work")
    assert result["status"] == "error"
    user_message = ConversationMessage.objects.get(pk=result["user_message_id"])
    answer = reply_to(user_message)
    assert answer.processing_status == ProcessingStatus.FAILED
    assert answer.content == "partial"  # the partial text is kept
    assert answer.metrics["stopped"] == "timeout"


@pytest.mark.django_db
def test_metrics_on_the_agent_message():
    session = ConversationService.create_session("usage")
    message = _waiting(session, "count", timestamp=timezone.now() - timedelta(seconds=2))
    [outcome] = process_pending(session.pk).outcomes
    metrics = reply_to(message).metrics
    assert outcome.status == ProcessingStatus.COMPLETED
    assert metrics["queue_wait_ms"] >= 2000
    assert isinstance(metrics["first_chunk_ms"], int) and metrics["first_chunk_ms"] >= 0
    assert metrics["total_ms"] >= metrics["first_chunk_ms"]
    assert metrics["chunks"] == 3
    assert (metrics["prompt_tokens"], metrics["completion_tokens"]) == (12, 5)
    assert metrics["attempt"] == 1


@pytest.mark.django_db
def test_signals_and_a_broken_receiver_does_not_break_the_turn(caplog):
    calls = []

    def started(sender, **kwargs):
        calls.append(("started", sender.__name__))
        raise RuntimeError("telemetry is down")

    def finished(sender, status, metrics, agent_message, **kwargs):
        calls.append(("finished", sender.__name__, str(status), agent_message.processing_status if agent_message else None))

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


@pytest.mark.django_db(transaction=True)
def test_a_turn_that_lost_its_lease_writes_nothing():
    """If the worker stalls and recovery takes the conversation over, the old turn notices at its
    next heartbeat, stops, and drops its result instead of overwriting the new owner's."""
    with ai_settings(TURN_HEARTBEAT_INTERVAL=0.1, TURN_CANCEL_GRACE=0.1):
        session = ConversationService.create_session("silent")
        message = _waiting(session, "silent 2")
        turn = Background(lambda: process_pending(session.pk).outcomes)
        turn.start()
        wait_until(lambda: status_of(message) == ProcessingStatus.PROCESSING, 5)
        ConversationSession.objects.filter(pk=session.pk).update(turn_token="taken-over")
        [outcome] = turn.outcome(5)
    assert outcome.lease_lost
    assert status_of(message) == ProcessingStatus.PROCESSING  # left to the new owner
    assert reply_to(message) is None
    assert ConversationSession.objects.get(pk=session.pk).turn_token == "taken-over"


@pytest.mark.django_db
def test_unknown_agent_fails_the_message_with_a_clear_code(caplog):
    session = ConversationSession.objects.create(agent_path="not-registered")
    message = _waiting(session, "hi")
    [outcome] = process_pending(session.pk).outcomes
    assert outcome.status == ProcessingStatus.FAILED
    assert reply_to(message, MessageType.SYSTEM).metadata["code"] == "agent_not_found"
    assert "not-registered" in caplog.text
    session.refresh_from_db()
    assert session.turn_token == ""


@pytest.mark.django_db
def test_a_message_cancelled_after_being_picked_does_not_start():
    session = ConversationService.create_session("quick-echo")
    message = _waiting(session, "hi")
    token = acquire_lease(session.pk, message.pk)
    ConversationMessage.objects.filter(pk=message.pk).update(processing_status=ProcessingStatus.CANCELLED)
    outcome = run_turn(message, token=token)
    assert outcome.status == ProcessingStatus.CANCELLED
    assert reply_to(message) is None


@pytest.mark.django_db
def test_agent_helpers_refuse_work_after_the_turn_closed():
    session = ConversationService.create_session("quick-echo")
    message = _waiting(session, "hi")
    state = TurnState(session=session, user_message=message)
    state.cancel("timeout")
    state.close()
    errors = []

    def other_thread():
        for call in (lambda: state.call_db(lambda: 1), lambda: TurnExecutor(state).submit(lambda: 1).result()):
            try:
                call()
            except TurnCancelled as exc:
                errors.append(exc.reason)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(5)
    assert errors == ["timeout", "timeout"]
