"""The row locks of the concurrency policy and the INSERT of a reply row do not deadlock (PostgreSQL).

An INSERT of an agent message checks its foreign keys in the order PostgreSQL fires their
triggers: ``reply_to`` (a key-share lock on the user message) before ``session``. An interrupt (or
a version made during a turn: ``turns.versions``) locks the session's row, then the conversation's
unfinished messages. When the message locks were ``FOR UPDATE``, a stream starting at that moment
(its reply row's INSERT) and the interrupt could wait for each other: PostgreSQL ended one with
"deadlock detected" (seen in the suite once, in test_turn_versions). The policy now takes
``FOR NO KEY UPDATE``, which still serialises with other lockers and UPDATEs but not with
foreign-key checks.

Two real connections: the test's, and a thread's. Nothing is timed: the test waits until
PostgreSQL shows the thread's INSERT waiting for a lock.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.turns.hooks import answered_by_caller
from django_ai.conversations.turns.policy import request_cancel

pytestmark = pytest.mark.django_db(transaction=True)


class Echo(ConversationAgent):
    def get_response(self, message, request=None, **kwargs):
        return message


def backends_waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        # Inside a transaction pg_stat_activity keeps its first snapshot unless told otherwise.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def test_a_cancel_under_the_session_lock_and_a_reply_insert_both_finish():
    if connection.vendor != "postgresql":
        pytest.skip("row locks and foreign-key trigger order are PostgreSQL's")
    register_agent("locks/echo", Echo)
    session = ConversationService.create_session("locks/echo")
    with answered_by_caller():
        running = ConversationMessage.objects.create(
            session=session, message_type=MessageType.USER, content="hi", processing_status=ProcessingStatus.PROCESSING
        )
    errors: list[BaseException] = []

    def insert_reply() -> None:
        try:
            ConversationMessage.objects.create(
                session_id=session.pk,
                message_type=MessageType.AGENT,
                reply_to_id=running.pk,
                processing_status=ProcessingStatus.STREAMING,
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=insert_reply)
    with transaction.atomic():
        # As versions.edit: the session's row locked FOR UPDATE first.
        list(ConversationSession.objects.select_for_update().filter(pk=session.pk).values_list("pk", flat=True))
        thread.start()
        # The INSERT holds its key-share lock on the user message and waits for the session's row.
        while backends_waiting_for_a_lock() == 0:
            assert thread.is_alive(), errors
            time.sleep(0.01)
        cancelled = request_cancel(session)  # FOR NO KEY UPDATE on the running message
    thread.join()
    assert errors == []
    assert cancelled == [running.pk]
    assert ConversationMessage.objects.filter(reply_to=running, message_type=MessageType.AGENT).count() == 1
