"""Context snapshots: every turn records, on its user message, the agent's Context (as stored JSON)
when it started (``context_before``) and when it ended (``context_after``), which is what
regenerate, edit and switching versions restore (docs/versions.md).

Real parts: the database (SQLite and PostgreSQL), turns answered inline by ``send_message`` or by
the in-process runner's background threads; the agent counts its turns in its Context.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import wait_until
from django_ai.conversations.turns import versions
from django_ai.conversations.turns.approval import answer_approval
from django_ai.conversations.turns.hooks import answered_by_caller
from django_ai.conversations.turns.scheduling import schedule_session
from django_ai.conversations.turns.state import TurnSuspended, current_turn

from .turns_support import make_step, post, reply_to, status_of
from .versions_support import background_turns, conversation, path_texts, user_messages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _turns():
    with background_turns():
        yield


def _snapshots(session) -> list[tuple[str, dict | None, dict | None]]:
    return [(m.content, m.context_before, m.context_after) for m in user_messages(session)]


def test_each_turn_records_the_context_it_started_from_and_ended_with():
    session = conversation("tally", "a", "b")
    assert _snapshots(session) == [
        ("a", {"count": 0, "seen": []}, {"count": 1, "seen": ["a"]}),
        ("b", {"count": 1, "seen": ["a"]}, {"count": 2, "seen": ["a", "b"]}),
    ]


def test_a_failed_turn_ends_with_the_context_it_started_from():
    session = conversation("tally", "a", "fail")
    failed = user_messages(session)[-1]
    assert failed.processing_status == ProcessingStatus.FAILED
    # The agent counted before failing; nothing of it is kept.
    assert failed.context_before == failed.context_after == {"count": 1, "seen": ["a"]}
    session.refresh_from_db()
    assert session.context == {"count": 1, "seen": ["a"]}


def test_a_stopped_turn_ends_with_the_context_it_started_from():
    session = conversation("tally", "a")
    held = post(session, "hold")
    wait_until(lambda: status_of(held) == ProcessingStatus.PROCESSING and reply_to(held) is not None, 10)
    ConversationService.cancel_turn(session.pk)
    wait_until(lambda: status_of(held) == ProcessingStatus.CANCELLED, 10)
    held.refresh_from_db()
    assert held.context_before == held.context_after == {"count": 1, "seen": ["a"]}
    assert reply_to(held).metrics["stopped"] == "cancelled"


class SavingApprovalAgent(ConversationAgent):
    """Counts its turn, then suspends for a step's approval; resumed, it counts again."""

    class Context(BaseModel):
        count: int = 0

    def get_response(self, message, request=None, **kwargs):
        state = current_turn.get()
        self.context.count += 1
        if state.resumed:
            return f"done at {self.context.count}"
        user_message = self.message
        step = state.call_db(lambda: make_step(user_message, arguments={"amount": 1}))
        if message == "supersede me":
            # The user makes another version while this turn runs (here, before it suspends).
            state.call_db(lambda: versions.edit(user_message.pk, content="instead"))
        raise TurnSuspended(step_ids=[step.pk])


def test_a_suspended_turn_records_the_context_saved_with_the_suspension_then_the_final_one():
    register_agent("saving-approval", SavingApprovalAgent)
    session = ConversationService.create_session("saving-approval")
    result = ConversationService.send_message(session.pk, "go")
    assert result["status"] == "awaiting_approval"
    (message,) = user_messages(session)
    assert (message.context_before, message.context_after) == ({"count": 0}, {"count": 1})
    answer_approval(result["pending_approvals"][0], approved=True)
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 10)
    message.refresh_from_db()
    # The resume started from the Context saved with the suspension; the first snapshot stays.
    assert (message.context_before, message.context_after) == ({"count": 0}, {"count": 2})


def test_a_turn_that_leaves_the_path_before_it_suspends_does_not_hold_the_conversation():
    register_agent("saving-approval", SavingApprovalAgent)
    session = ConversationService.create_session("saving-approval")
    ConversationService.send_message(session.pk, "supersede me")
    old, new = user_messages(session)
    wait_until(lambda: status_of(new) != ProcessingStatus.PENDING and status_of(old) != "processing", 10)
    old.refresh_from_db()
    # However the stop reached it (its poll, or its suspension found the message off the path):
    # cancelled, its rows off the path, its step closed, its Context not kept.
    assert (old.processing_status, old.active) == (ProcessingStatus.CANCELLED, False)
    assert not ConversationMessage.objects.filter(reply_to=old, active=True).exists()
    step = ConversationMessage.objects.get(reply_to=old, message_type=MessageType.TOOL)
    assert step.processing_status == ProcessingStatus.CANCELLED
    assert old.context_after == old.context_before == {"count": 0}
    assert reply_to(old).metrics["stopped"] == "superseded"
    # The new version ran (it waits for its own approval), from the Context the old one started from.
    wait_until(lambda: status_of(new) == ProcessingStatus.AWAITING_APPROVAL, 10)
    new.refresh_from_db()
    assert (new.context_before, new.context_after, new.active) == ({"count": 0}, {"count": 1}, True)
    session.refresh_from_db()
    assert session.context == {"count": 1}


def test_a_version_starts_from_its_originals_snapshot_even_if_the_conversation_moved_on():
    session = conversation("tally", "a", "b")
    a, b = user_messages(session)
    with answered_by_caller():  # no task yet: the Context changes before the version runs
        version = versions.regenerate(b.pk)
    assert version.context_before == {"count": 1, "seen": ["a"]}
    ConversationSession.objects.filter(pk=session.pk).update(context={"count": 99, "seen": []})
    schedule_session(session.pk)
    wait_until(lambda: status_of(version) == ProcessingStatus.COMPLETED, 15)
    assert reply_to(version).content == "#2 b"
    session.refresh_from_db()
    assert session.context == {"count": 2, "seen": ["a", "b"]}
    assert [text for _, text in path_texts(session)] == ["a", "#1 a", "b", "#2 b"]
    version.refresh_from_db()
    assert version.context_after == {"count": 2, "seen": ["a", "b"]}


def test_snapshots_add_no_query_to_a_turn():
    session = conversation("tally", "a")
    with CaptureQueriesContext(connection) as first:
        ConversationService.send_message(session.pk, "b")
    # A turn's queries do not depend on its Context's size, and none of them is a snapshot's own:
    # context_before goes with the statement that starts the turn (in an idle conversation the
    # user message's INSERT, saved processing: issue 16), context_after with the UPDATE that ends it.
    ConversationService.send_message(session.pk, "c" * 2000)
    with CaptureQueriesContext(connection) as later:
        ConversationService.send_message(session.pk, "d")
    assert len(later.captured_queries) == len(first.captured_queries)
    writes = [q["sql"] for q in first.captured_queries if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT"))]
    updates = [sql for sql in writes if sql.lstrip().upper().startswith("UPDATE")]
    message_table = f'"{ConversationMessage._meta.db_table}"'
    starts = [sql for sql in writes if sql.lstrip().upper().startswith("INSERT") and message_table in sql]
    ends = [sql for sql in updates if '"context_after"' in sql]
    # The user message's INSERT carries both (the reply's INSERT writes context_before NULL).
    assert '"context_before"' in starts[0] and '"started_at"' in starts[0]
    assert not [sql for sql in updates if '"context_before"' in sql]
    assert len(ends) == 1 and '"finished_at"' in ends[0]
    assert len(first.captured_queries) == 9  # a README echo turn (docs/benchmarks.md, tests/test_turn_queries.py)


class SelfSupersedingAgent(ConversationAgent):
    """Adds 10 to its count; on "supersede me" it first makes another version of its own message
    (as a user would from another tab while it runs): "fail", whose turn fails."""

    class Context(BaseModel):
        count: int = 0

    def get_response(self, message, request=None, **kwargs):
        state = current_turn.get()
        if message == "fail":
            raise RuntimeError("asked to fail")
        self.context.count += 10
        if message == "supersede me":
            user_message = self.message
            state.call_db(lambda: versions.edit(user_message.pk, content="fail"))
        return f"count {self.context.count}"


def test_a_turn_whose_message_left_the_path_does_not_store_its_context():
    register_agent("self-superseding", SelfSupersedingAgent)
    session = ConversationService.create_session("self-superseding")
    ConversationService.send_message(session.pk, "first")
    ConversationService.send_message(session.pk, "supersede me")
    first, old, new = user_messages(session)
    wait_until(lambda: status_of(new) == ProcessingStatus.FAILED, 10)
    old.refresh_from_db()
    # Completed before it noticed, or stopped: either way off the path with its rows, and the
    # conversation keeps the new path's Context (the edit's, which its failed turn left as it was).
    assert old.processing_status in {ProcessingStatus.COMPLETED, ProcessingStatus.CANCELLED}
    assert not old.active
    assert not ConversationMessage.objects.filter(reply_to=old, active=True).exists()
    session.refresh_from_db()
    assert session.context == {"count": 10}
    assert [m.content for m in user_messages(session, active=True)] == ["first", "fail"]


def test_the_end_of_a_turn_still_announces_the_user_message(events):
    # The end's UPDATE of the user message (guarded by its place on the active path) replaced a
    # save(): clients and the project's post_save receivers hear of it as before.
    session = conversation("tally", "a")
    (message,) = user_messages(session)
    updates = [
        p
        for p in events.of("model_change")
        if p["model"] == "message" and p["operation"] == "update" and str(message.pk) in p["pks"]
    ]
    assert updates
