"""What a message sent while a turn runs does: the enqueue / reject / interrupt policies, and
cancel.

Real parts: the database with real threads (the running turn is in a background thread of the
in-process task runner, as in the demo), agents that really stream while they are stopped.

The race tests at the end post ten messages at the same moment to an idle conversation whose
agent's policy is ``reject``: exactly one is accepted, the nine others are refused with
``TurnInProgress`` (409 through the bridge), and nothing of theirs is written.

What makes it hold: the policy's check and the message's insert run in one transaction that locks
the session's row first, so the posters are checked one after the other and each sees the
messages the earlier ones committed.

PostgreSQL (READ COMMITTED, row locks): ``SELECT ... FOR UPDATE`` on the session; a poster waits
for the lock, then its check reads the committed rows of the poster before it.
SQLite (no row locks): the policy writes the session's row, which takes the database's write lock
until the commit (the demo settings' ``transaction_mode="IMMEDIATE"`` takes it at BEGIN already);
the posters wait for it (busy timeout) and then see the committed message. Both run here.
(Without the lock both tests fail on PostgreSQL; on SQLite the ``send_message`` one fails, while
the bridge's already ran its check inside its IMMEDIATE transaction. With ``transaction_mode``
DEFERRED it fails too.)
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from django.db import connection
from django.test import override_settings

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import EventName, MessageType, ProcessingStatus
from django_ai.conversations.exceptions import TurnInProgress
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import isolated_registry, wait_for_turns, wait_until
from django_ai.conversations.testing.factories import UserFactory

from .bridge_support import error_codes, user_api
from .turns_support import (
    AGENTS,
    IMMEDIATE,
    AsyncSlowStreamAgent,
    Background,
    SlowStreamAgent,
    ai_settings,
    post,
    reply_to,
    status_of,
)


class RejectingAgent(SlowStreamAgent):
    concurrency = "reject"


class InterruptingAgent(AsyncSlowStreamAgent):
    concurrency = "interrupt"


#: Posters in the race tests.
N = 10
#: Opened by the race tests once every poster has been answered: the accepted turn then ends.
HELD = threading.Event()


class HeldRejectingAgent(ConversationAgent):
    """Refuses messages while a turn runs; its turn lasts until HELD opens."""

    concurrency = "reject"

    def get_response(self, message, request=None, **kwargs):
        if not HELD.wait(30):
            raise RuntimeError("HELD was never opened")
        return f"accepted {message}"


class SilentAsyncAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        await asyncio.sleep(30)
        return "never"


@pytest.fixture(autouse=True)
def _setup():
    with (
        isolated_registry(
            {
                **AGENTS,
                "reject": RejectingAgent,
                "interrupt": InterruptingAgent,
                "silent-async": SilentAsyncAgent,
                "held-reject": HeldRejectingAgent,
            }
        ),
        override_settings(TASKS=IMMEDIATE),
        ai_settings(IN_PROCESS_TURN_THREADS=2),
    ):
        HELD.clear()
        yield
        HELD.set()
        wait_for_turns(20)


def _running(path: str, text: str):
    """A session whose first message is being answered in the background."""
    session = ConversationService.create_session(path)
    message = post(session, text)
    wait_until(lambda: status_of(message) == ProcessingStatus.PROCESSING, 5)
    wait_until(lambda: reply_to(message) is not None or path.startswith("silent"), 5)
    return session, message


@pytest.mark.django_db(transaction=True)
def test_reject_refuses_a_message_while_a_turn_runs_and_saves_nothing():
    session, first = _running("reject", "slow 0.8")
    with pytest.raises(TurnInProgress) as caught:
        ConversationService.send_message(session.pk, "are you there?")
    assert caught.value.status_code == 409
    assert caught.value.as_dict() == {
        "code": "turn_in_progress",
        "message": "The agent is still answering the previous message.",
    }
    assert ConversationMessage.objects.filter(session=session, message_type=MessageType.USER).count() == 1
    wait_for_turns(10)
    assert status_of(first) == ProcessingStatus.COMPLETED
    # Once the turn is over the next message is accepted.
    assert ConversationService.send_message(session.pk, "slow 0")["status"] == "success"


@pytest.mark.django_db(transaction=True)
def test_enqueue_policy_keeps_the_message_and_answers_it_after_the_running_turn():
    session, first = _running("slow", "slow 0.5")
    result = ConversationService.send_message(session.pk, "slow 0")
    assert result["status"] == "success"
    first.refresh_from_db()
    second = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert first.processing_status == ProcessingStatus.COMPLETED
    assert first.finished_at <= second.started_at  # one at a time, in arrival order


@pytest.mark.django_db(transaction=True)
def test_interrupt_cancels_the_running_turn_and_answers_the_new_message(events):
    session, first = _running("interrupt", "slow 30")
    started = time.monotonic()
    result = ConversationService.send_message(session.pk, "slow 0")
    assert time.monotonic() - started < 15  # not the 30 s the first turn would take
    assert result["status"] == "success" and result["response"] == "working"
    first.refresh_from_db()
    assert first.processing_status == ProcessingStatus.CANCELLED
    partial = reply_to(first)
    assert partial.processing_status == ProcessingStatus.CANCELLED
    assert partial.content.startswith("working.")  # the partial text is kept
    assert partial.metrics["stopped"] == "cancelled"
    statuses = [(p["message_id"], p["status"]) for p in events.of(EventName.MESSAGE_STATUS)]
    assert (str(first.pk), "cancelled") in statuses


@pytest.mark.django_db(transaction=True)
def test_cancel_from_python_stops_a_streaming_sync_agent_and_keeps_its_text():
    session, message = _running("slow", "slow 30")
    assert ConversationService.cancel_turn(session.pk) == {"status": "cancelling", "cancelled": [str(message.pk)]}
    wait_until(lambda: status_of(message) == ProcessingStatus.CANCELLED, 15)  # not the 30 s of the turn
    wait_for_turns(5)
    answer = reply_to(message)
    assert answer.processing_status == ProcessingStatus.CANCELLED
    assert answer.content.startswith("working")
    assert reply_to(message, MessageType.SYSTEM) is None  # a cancel is not an error
    session.refresh_from_db()
    assert session.turn_token == ""


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_silent_async_agent_at_once():
    session, message = _running("silent-async", "wait")
    ConversationService.cancel_turn(session.pk)
    wait_until(lambda: status_of(message) == ProcessingStatus.CANCELLED, 15)  # it would sleep 30 s


@pytest.mark.django_db(transaction=True)
def test_cancel_reaches_a_sync_agent_that_checks_self_cancelled():
    session, message = _running("polite", "work")
    ConversationService.cancel_turn(session.pk)
    wait_until(lambda: status_of(message) == ProcessingStatus.CANCELLED, 5)
    wait_for_turns(5)
    assert reply_to(message).content == "partial"


@pytest.mark.django_db(transaction=True)
def test_cancel_drops_the_waiting_messages_too(events):
    session, running = _running("slow", "slow 30")
    waiting = [post(session, "slow 0"), post(session, "slow 0")]
    result = ConversationService.cancel_turn(session.pk)
    assert sorted(result["cancelled"]) == sorted(str(m.pk) for m in [running, *waiting])
    wait_for_turns(10)
    assert [status_of(m) for m in [running, *waiting]] == [ProcessingStatus.CANCELLED] * 3
    assert all(reply_to(m) is None for m in waiting)  # they never started
    cancelled_events = {p["message_id"] for p in events.of(EventName.MESSAGE_STATUS) if p["status"] == "cancelled"}
    assert {str(m.pk) for m in waiting} <= cancelled_events


@pytest.mark.django_db(transaction=True)
def test_cancelling_an_idle_or_finished_conversation_is_a_clear_no_op():
    session = ConversationService.create_session("quick-echo")
    assert ConversationService.cancel_turn(session.pk) == {"status": "idle", "cancelled": []}
    result = ConversationService.send_message(session.pk, "hi")
    assert ConversationService.cancel_turn(session.pk) == {"status": "idle", "cancelled": []}
    message = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert message.processing_status == ProcessingStatus.COMPLETED
    assert message.cancel_requested_at is None


def _at_once(send, warm=None) -> list[Background]:
    """Start N threads with their own connections that call ``send(i)`` at the same moment
    (after ``warm(i)``, if given)."""
    barrier = threading.Barrier(N)

    def poster(i: int) -> Background:
        def run():
            connection.ensure_connection()  # connect first: the race is the check, not the connect
            if warm is not None:
                warm(i)
            barrier.wait(10)
            return send(i)

        return Background(run, name=f"poster-{i}")

    posters = [poster(i) for i in range(N)]
    for thread in posters:
        thread.start()
    return posters


def _user_messages(session) -> list[ConversationMessage]:
    return list(ConversationMessage.objects.filter(session=session, message_type=MessageType.USER))


def _assert_one_accepted_and_answered(session, accepted_text: str) -> None:
    (message,) = _user_messages(session)
    assert message.content == accepted_text
    assert message.processing_status == ProcessingStatus.COMPLETED
    replies = ConversationMessage.objects.filter(session=session).exclude(message_type=MessageType.USER)
    assert [(r.message_type, r.content, r.reply_to_id) for r in replies] == [
        (MessageType.AGENT, f"accepted {accepted_text}", message.pk)
    ]
    session.refresh_from_db()
    assert session.turn_token == "" and session.active_turn is None


@pytest.mark.django_db(transaction=True)
def test_simultaneous_send_message_calls_accept_exactly_one():
    session = ConversationService.create_session("held-reject")
    posters = _at_once(lambda i: ConversationService.send_message(session.pk, f"m{i}"))
    # The accepted poster answers its message inline and waits for HELD; the others return.
    wait_until(
        lambda: sum(not t.is_alive() for t in posters) + len(_user_messages(session)) >= N,
        20,
        message="the posters neither returned nor saved their messages",
    )
    refused = [t for t in posters if not t.is_alive()]
    assert all(isinstance(t.error, TurnInProgress) for t in refused), [t.error for t in refused]
    assert len(refused) == N - 1, f"{N - len(refused)} messages were accepted at once"
    assert len(_user_messages(session)) == 1

    HELD.set()
    (accepted,) = [t for t in posters if t not in refused]
    result = accepted.outcome(30)
    assert result["status"] == "success"
    _assert_one_accepted_and_answered(session, result["response"].removeprefix("accepted "))


@pytest.mark.django_db(transaction=True)
def test_simultaneous_bridge_posts_get_one_201_and_409s():
    user = UserFactory()
    session = ConversationSession.objects.create(agent_path="held-reject", user=user)
    apis = [user_api(user) for _ in range(N)]
    posters = _at_once(
        lambda i: apis[i].create("message", {"session": str(session.pk), "content": f"m{i}"}),
        warm=lambda i: apis[i].query("session"),  # the first request of a client does more work
    )
    responses = [t.outcome(30) for t in posters]  # the turn runs in a background thread

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (N - 1), statuses
    for response in responses:
        if response.status_code == 409:
            assert error_codes(response) == ["turn_in_progress"]
    (created,) = [r for r in responses if r.status_code == 201]
    body = created.json()
    accepted_text = body["included"]["message"][body["data"]]["content"]
    assert [m.content for m in _user_messages(session)] == [accepted_text]

    HELD.set()
    wait_for_turns(20)
    _assert_one_accepted_and_answered(session, accepted_text)
