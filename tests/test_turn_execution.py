"""Running the agent: which thread it runs in, what its ORM calls see, how a timeout or a cancel
stops it (async agents cancelled, sync agents told and then left behind), and that an agent
outliving its turn can no longer reach the conversation.

Real parts: the database (SQLite file / PostgreSQL) with real threads and connections; agents
really sleep, hang and stream.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.exceptions import TurnCancelled
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import wait_until
from django_ai.conversations.turns.runner import process_pending
from django_ai.conversations.turns.state import TurnExecutor, TurnState

from . import turns_support as support
from .turns_support import (
    Background,
    TurnSignals,
    ai_settings,
    message_rows,
    reply_to,
    session_for,
    status_of,
    turn_agents,  # noqa: F401 (a fixture, requested by pytestmark)
    waiting_message,
)

pytestmark = pytest.mark.usefixtures("turn_agents")


def _agent_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("django-ai-agent-")]


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
        first = waiting_message(session, "hang")
        second = waiting_message(session, "quick")
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
def test_agent_helpers_refuse_work_after_the_turn_closed():
    session = ConversationService.create_session("quick-echo")
    message = waiting_message(session, "hi")
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
    session = session_for(agent)
    with TurnSignals() as signals:
        turn = Background(lambda: ConversationService.send_message(session.id, "go"))
        turn.start()
        assert STREAMING.wait(20)
        assert ConversationService.cancel_turn(session.id)["status"] == "cancelling"
        result = turn.outcome(30)
    assert result["status"] == "cancelled"
    assert result["response"].startswith("partial")
    rows = message_rows(session)
    assert [(t, s) for t, s, _ in rows] == [("user", "cancelled"), ("agent", "cancelled")]
    assert rows[1][2].startswith("partial")
    assert [c[0] for c in signals.calls] == ["started", "finished"]
    assert signals.calls[1][2] == "cancelled"
    assert "raised while being stopped" in caplog.text


def test_the_turn_stops_serving_database_calls_once_the_agent_thread_says_it_finished():
    """The agent's thread wakes the turn's thread as its last act, while it is still alive: the
    turn's thread must then stop at once (the thread's own word), not wait out another poll
    interval until the thread is seen dead (it waited up to 100 ms per turn under load)."""
    from django_ai.conversations.turns.execution import _Watcher

    release = threading.Event()
    ending = threading.Thread(target=release.wait, daemon=True)  # alive until released
    ending.start()
    finished = threading.Event()
    try:
        watcher = _Watcher(object(), "token", ending, {}, finished)  # type: ignore[arg-type]
        assert not watcher.done()
        finished.set()
        assert ending.is_alive() and watcher.done()
    finally:
        release.set()
        ending.join()
