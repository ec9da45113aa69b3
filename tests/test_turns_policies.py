"""One turn at a time per conversation: the enqueue / reject / interrupt policies, and cancel.

Real parts: the database with real threads (the running turn is in a background thread of the
in-process task runner, as in the demo), agents that really stream while they are stopped.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from django.test import override_settings

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import EventName, MessageType, ProcessingStatus
from django_ai.conversations.exceptions import TurnInProgress
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import isolated_registry, wait_for_turns, wait_until

from .test_turns_queue import IMMEDIATE
from .turns_support import AGENTS, AsyncSlowStreamAgent, SlowStreamAgent, ai_settings, post, reply_to, status_of


class RejectingAgent(SlowStreamAgent):
    concurrency = "reject"


class InterruptingAgent(AsyncSlowStreamAgent):
    concurrency = "interrupt"


class SilentAsyncAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        await asyncio.sleep(30)
        return "never"


@pytest.fixture(autouse=True)
def _setup():
    with isolated_registry(
        {**AGENTS, "reject": RejectingAgent, "interrupt": InterruptingAgent, "silent-async": SilentAsyncAgent}
    ), override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=2):
        yield
        wait_for_turns(15)


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
    assert caught.value.as_dict() == {"code": "turn_in_progress", "message": "The agent is still answering the previous message."}
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
