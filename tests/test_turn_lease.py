"""The conversation's lease: one turn at a time, renewed while the agent is silent, and a turn
that lost it writes nothing.

Twenty messages posted at once to one conversation, from twenty threads with their own
database connections: the turns run one at a time, in arrival order, and a counter kept in the
agent's Context ends at exactly 20 (no lost update).

What makes it hold: a turn runs under the conversation's lease, taken by one compare-and-set
UPDATE; the waiting messages are picked oldest first (timestamp, id); a turn that finds the lease
held leaves its message to the holder, which looks again after releasing it.

PostgreSQL (READ COMMITTED, row locks): the 20 posts commit in parallel; the UPDATEs of the lease
serialise on the session's row, so exactly one poster gets it.
SQLite: one writer at a time for the whole database (BEGIN IMMEDIATE, busy timeout 20 s), readers
go on under WAL. The same guarantees hold — the lease's UPDATE is atomic under the database lock —
but the posts are written one after the other rather than in parallel.
Both run here: the suite runs on SQLite (a file) and again on PostgreSQL in CI.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from django.test import override_settings

from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import isolated_registry, wait_until
from django_ai.conversations.turns.runner import process_pending

from . import turns_support as support
from .turns_support import AGENTS, IMMEDIATE, Background, ai_settings, post, reply_to, status_of, waiting_message

N = 20


@pytest.fixture(autouse=True)
def _setup():
    support.GATE.clear()
    # Each poster's commit runs the turn task in the poster's own thread: twenty threads race for
    # the conversation.
    with isolated_registry(AGENTS), override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=0):
        yield
    support.GATE.set()


def _post_concurrently(session) -> list[ConversationMessage]:
    barrier = threading.Barrier(N)

    def poster(i: int):
        def run():
            barrier.wait(10)
            return post(session, f"m{i:02d}")

        return Background(run, name=f"poster-{i}")

    posters = [poster(i) for i in range(N)]
    for thread in posters:
        thread.start()
    return [thread.outcome(60) for thread in posters]


def _assert_one_at_a_time(messages: list[ConversationMessage]) -> list[ConversationMessage]:
    rows = list(ConversationMessage.objects.filter(pk__in=[m.pk for m in messages]).order_by("started_at"))
    assert all(m.processing_status == ProcessingStatus.COMPLETED for m in rows)
    assert all(m.attempts == 1 for m in rows)
    for before, after in itertools.pairwise(rows):
        assert before.finished_at <= after.started_at, "two turns of one conversation overlapped"
    answers = ConversationMessage.objects.filter(reply_to__in=rows, message_type=MessageType.AGENT)
    assert answers.count() == N
    return rows


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_queue_behind_a_running_turn_and_run_in_arrival_order():
    session = ConversationService.create_session("counter")
    holder = Background(lambda: post(session, "hold"), name="holder")  # answers "hold", then the queue
    holder.start()
    wait_until(
        lambda: ConversationMessage.objects.filter(
            session=session, content="hold", processing_status=ProcessingStatus.PROCESSING
        ).exists(),
        10,
    )
    messages = _post_concurrently(session)
    # Every poster found the conversation busy and left its message waiting.
    assert set(
        ConversationMessage.objects.filter(pk__in=[m.pk for m in messages]).values_list("processing_status", flat=True)
    ) == {ProcessingStatus.PENDING}
    support.GATE.set()
    holder.outcome(60)

    rows = _assert_one_at_a_time(messages)
    arrival = sorted(messages, key=lambda m: (m.timestamp, str(m.pk)))
    assert [m.pk for m in rows] == [m.pk for m in arrival]
    session.refresh_from_db()
    assert session.context["count"] == N
    assert session.context["seen"] == [m.content for m in arrival]
    assert session.turn_token == ""


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_racing_for_an_idle_conversation_lose_no_update():
    session = ConversationService.create_session("counter")
    messages = _post_concurrently(session)  # each returns once its thread found nothing left to do
    rows = _assert_one_at_a_time(messages)
    session.refresh_from_db()
    assert session.context["count"] == N
    assert session.context["seen"] == [m.content for m in rows]  # processing order = started order
    assert sorted(session.context["seen"]) == [f"m{i:02d}" for i in range(N)]
    assert session.turn_token == ""


@pytest.mark.django_db(transaction=True)
def test_heartbeats_continue_while_a_sync_agent_is_silent():
    with ai_settings(TURN_HEARTBEAT_INTERVAL=0.1):
        session = ConversationService.create_session("silent")
        message = waiting_message(session, "silent 1.5")
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


@pytest.mark.django_db(transaction=True)
def test_a_turn_that_lost_its_lease_writes_nothing():
    """If the worker stalls and recovery takes the conversation over, the old turn notices at its
    next heartbeat, stops, and drops its result instead of overwriting the new owner's."""
    with ai_settings(TURN_HEARTBEAT_INTERVAL=0.1, TURN_CANCEL_GRACE=0.1):
        session = ConversationService.create_session("silent")
        message = waiting_message(session, "silent 2")
        turn = Background(lambda: process_pending(session.pk).outcomes)
        turn.start()
        wait_until(lambda: status_of(message) == ProcessingStatus.PROCESSING, 5)
        ConversationSession.objects.filter(pk=session.pk).update(turn_token="taken-over")
        [outcome] = turn.outcome(5)
    assert outcome.lease_lost
    assert status_of(message) == ProcessingStatus.PROCESSING  # left to the new owner
    assert reply_to(message) is None
    assert ConversationSession.objects.get(pk=session.pk).turn_token == "taken-over"
