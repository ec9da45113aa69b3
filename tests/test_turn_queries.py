"""The SQL statements of a turn, counted (issue 16): what each one buys is in docs/benchmarks.md
("Turn overhead", the table per query). Query counts are deterministic: a change that adds one to
every turn shows here, on SQLite and on PostgreSQL alike.

A README echo turn through ``ConversationService.send_message`` in an idle conversation is 9
statements (18 before issue 16): the session read (owner check), the lease claimed for the new
message (one UPDATE that also checks that no message waits and that the session is unchanged
since it was read), the user message's INSERT, already ``processing``, then one transaction
(BEGIN, the session's UPDATE: Context, lease check and release; the reply's INSERT; the user
message's end; COMMIT), and the look at the queue for messages that arrived meanwhile. A stream
of 5 chunks adds 2: the reply's row created at the stream's start and its text saved at the
stream's end (the turn's end then UPDATEs that row instead of INSERTing one).

Statements that come by the clock (the lease's heartbeat, the look for a cancel request every
0.5 s of an async agent's turn, a streamed reply's save every ``STREAM_SAVE_INTERVAL``) are left
out by setting their intervals to an hour: a turn stalled half a second on a busy CI machine
would otherwise add one.
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import ProcessingStatus
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.turns import execution
from django_ai.conversations.turns.hooks import answered_by_caller

from .turns_support import ai_settings

pytestmark = pytest.mark.django_db

HOUR = 3600.0


@pytest.fixture(autouse=True)
def _no_statements_by_the_clock(monkeypatch):
    monkeypatch.setattr(execution, "CANCEL_POLL_INTERVAL", HOUR)
    with ai_settings(TURN_HEARTBEAT_INTERVAL=HOUR, STREAM_SAVE_INTERVAL=HOUR):
        yield


class AsyncEcho(ConversationAgent):
    """The README's EchoAgent."""

    async def get_response(self, message, request=None, **kwargs):
        return f"You said: {message}"


class SyncEcho(ConversationAgent):
    def get_response(self, message, request=None, **kwargs):
        return f"You said: {message}"


class FiveChunks(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            for word in f"You said: {message} !".split():
                stream.write(word + " ")
        return stream.content


def kind(sql: str) -> str:
    word = sql.lstrip().split(None, 1)[0].upper()
    # Inside the test's transaction the turn's atomic() is a savepoint: BEGIN/COMMIT outside it.
    return "transaction" if word in {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"} else word


def second_turn(path: str) -> tuple[list[str], dict]:
    """The statements of a conversation's second turn (the first warms up what runs once)."""
    session = ConversationService.create_session(path)
    ConversationService.send_message(session.pk, "first")
    with CaptureQueriesContext(connection) as captured:
        result = ConversationService.send_message(session.pk, "second")
    assert result["status"] == "success"
    return [q["sql"] for q in captured.captured_queries], result


@pytest.mark.parametrize("agent", [AsyncEcho, SyncEcho], ids=["async", "sync"])
def test_an_echo_turn_is_9_statements(agent):
    register_agent("queries/echo", agent)
    statements, result = second_turn("queries/echo")
    assert [kind(sql) for sql in statements] == [
        "SELECT",  # the session: owner, status, agent, Context
        "UPDATE",  # the lease, claimed for the new message
        "INSERT",  # the user message, processing (clients and crash recovery see it), committed
        "transaction",
        "UPDATE",  # the session: Context, usage, the lease checked and released
        "INSERT",  # the reply
        "UPDATE",  # the user message: completed, context_after
        "transaction",
        "SELECT",  # messages that arrived during the turn
    ]
    assert result["response"] == "You said: second"
    session = ConversationSession.objects.get(pk=result["session_id"])
    assert (session.turn_token, session.active_turn, session.turn_heartbeat_at) == ("", None, None)
    message = ConversationMessage.objects.get(pk=result["user_message_id"])
    # Saved processing (the INSERT started the turn), then completed.
    assert (message.processing_status, message.attempts, message.context_before, message.context_after) == (
        ProcessingStatus.COMPLETED,
        1,
        {},
        {},
    )
    assert message.started_at is not None and message.finished_at >= message.started_at


def test_a_turn_streaming_5_chunks_is_11_statements():
    register_agent("queries/stream", FiveChunks)
    statements, result = second_turn("queries/stream")
    kinds = [kind(sql) for sql in statements]
    assert len(statements) == 11, kinds
    assert Counter(kinds) == {"UPDATE": 5, "SELECT": 2, "INSERT": 2, "transaction": 2}
    reply = ConversationMessage.objects.get(pk=result["message_id"])
    assert (reply.content, reply.stream_sequence, reply.processing_status) == (
        "You said: second ! ",
        4,
        ProcessingStatus.COMPLETED,
    )


def test_a_message_behind_a_waiting_one_is_answered_after_it():
    # The lease is taken for a message only when nothing older waits; otherwise the turn reads the
    # queue under the lease and answers the older message first (one more SELECT, not a wrong order).
    register_agent("queries/echo", SyncEcho)
    session = ConversationService.create_session("queries/echo")

    with answered_by_caller():  # left waiting, as if its task had not run yet
        older = ConversationMessage.objects.create(
            session=session, message_type="user", content="older", processing_status=ProcessingStatus.PENDING
        )
    result = ConversationService.send_message(session.pk, "newer")
    assert result["response"] == "You said: newer"
    older.refresh_from_db()
    assert older.processing_status == ProcessingStatus.COMPLETED
    replies = ConversationMessage.objects.filter(session=session, message_type="agent").order_by("timestamp")
    assert [r.content for r in replies] == ["You said: older", "You said: newer"]


class Counting(ConversationAgent):
    class Context(BaseModel):
        count: int = 0

    def get_response(self, message, request=None, **kwargs):
        self.context.count += 1
        return f"count {self.context.count}"


def test_a_session_changed_since_it_was_read_is_read_again_under_the_lease():
    # send_message reads the session before it takes the lease; the lease is then claimed only while
    # the row is unchanged (its updated_at), or the turn would start from a Context another turn
    # (or a version) replaced meanwhile and write its own over it. Here the Context changes right
    # after that read, as another turn's end would: the turn starts from the new one.
    register_agent("queries/counting", Counting)
    session = ConversationService.create_session("queries/counting")
    changed = []

    def change_after_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not changed and sql.startswith("SELECT") and f'FROM "{ConversationSession._meta.db_table}"' in sql:
            changed.append(True)
            ConversationSession.objects.filter(pk=session.pk).update(context={"count": 100}, updated_at=timezone.now())
        return result

    with connection.execute_wrapper(change_after_read):
        result = ConversationService.send_message(session.pk, "one")
    assert changed
    assert result["response"] == "count 101"
    session.refresh_from_db()
    assert session.context == {"count": 101}
    assert (session.turn_token, session.active_turn) == ("", None)


def test_a_path_change_the_session_update_did_not_see_records_the_end_again():
    # The session's UPDATE that ends a turn saves the Context only while the user message is on
    # the active path (a subquery). On PostgreSQL a version operation that commits while that
    # UPDATE waits for the row is not seen by its subquery, but is by the user message's own
    # UPDATE right after: the turn then rolls its transaction back and records the end again,
    # reading the path under the session's row lock. Here the message leaves the path right after
    # the session's UPDATE, inside the transaction (so the rollback brings it back): the end is
    # recorded once, by the second attempt, and consistently.
    register_agent("queries/counting", Counting)
    session = ConversationService.create_session("queries/counting")
    table = ConversationSession._meta.db_table
    seen: list[str] = []

    def leave_path_once(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith(f'UPDATE "{table}"') and '"last_message_at"' in sql:
            seen.append("end, if on the path" if "EXISTS" in sql else "end")
            if len(seen) == 1:
                ConversationMessage.objects.filter(session=session, message_type="user").update(active=False)
        elif sql.startswith(f'UPDATE "{table}" SET "turn_heartbeat_at"'):
            seen.append("lease checked")
        return result

    with connection.execute_wrapper(leave_path_once):
        result = ConversationService.send_message(session.pk, "one")
    # The first attempt, rolled back; the second: the lease checked on its own, then the session.
    assert seen == ["end, if on the path", "lease checked", "end"]
    assert result["response"] == "count 1"
    session.refresh_from_db()
    assert session.context == {"count": 1}
    assert (session.turn_token, session.active_turn) == ("", None)
    message = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert (message.processing_status, message.active, message.context_after) == (
        ProcessingStatus.COMPLETED,
        True,
        {"count": 1},
    )
    assert ConversationMessage.objects.filter(reply_to=message).count() == 1
