"""A real task worker process: django-tasks-db's ``manage.py db_worker`` against the test database.

The test process saves messages (the turn task is stored by the DatabaseBackend on commit); the
worker subprocess picks the task up, runs the agent and writes the answer. Transactional tests:
the worker only sees committed rows. Works on the SQLite test file and on PostgreSQL.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import isolated_registry, task_worker, wait_until

from .turns_support import AGENT_PATHS, AGENTS, ai_settings, post, reply_to, status_of

pytest.importorskip("django_tasks_db", reason="the 'worker' extra (django-tasks-db) is not installed")

WORKER_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.fixture(autouse=True)
def _worker_settings():
    with isolated_registry(AGENTS), override_settings(TASKS=WORKER_TASKS), ai_settings(
        AGENTS=AGENT_PATHS,
        STALE_TURN_TIMEOUT=1.5,
        TURN_HEARTBEAT_INTERVAL=0.2,
        TURN_RECOVERY_INTERVAL=0.25,
        STALE_TURN_ACTION="retry",
    ):
        yield


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_answers_a_message_saved_by_another_process():
    from django_tasks_db.models import DBTaskResult

    with task_worker() as start:
        worker = start()
        session = ConversationService.create_session("quick-echo")
        message = post(session, "hi from the web process")
        task = DBTaskResult.objects.get()
        assert task.task_path == "django_ai.conversations.turns.tasks.answer_pending"
        wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 20, message=worker.output())
        answer = reply_to(message)
        assert answer.content == "echo: hi from the web process"
        assert answer.metrics["attempt"] == 1 and answer.metrics["queue_wait_ms"] >= 0
        wait_until(lambda: DBTaskResult.objects.get().status == "SUCCESSFUL", 10, message=worker.output())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_killed_worker_leaves_nothing_stuck():
    """SIGKILL the worker mid-turn; a worker started afterwards finds the stale lease (no
    heartbeat for STALE_TURN_TIMEOUT) at start-up and answers the message again."""
    with task_worker() as start:
        first = start()
        session = ConversationService.create_session("slow")
        message = post(session, "slow 30")
        wait_until(
            lambda: (answer := reply_to(message)) is not None and answer.content.startswith("working."),
            20,
            message=first.output(),
        )
        first.kill()
        assert status_of(message) == ProcessingStatus.PROCESSING  # stuck, as the worker left it
        second = start()
        wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 20, message=second.output())
        answers = ConversationMessage.objects.filter(reply_to=message, message_type=MessageType.AGENT).order_by("timestamp")
        assert [(a.processing_status, a.content[:8]) for a in answers] == [
            (ProcessingStatus.FAILED, "working."),  # the half-streamed answer of the dead worker
            (ProcessingStatus.COMPLETED, "answered"),
        ]
        assert answers[1].content == "answered on attempt 2"
        # The worker frees the conversation's lease just after it saves the completed answer.
        wait_until(lambda: ConversationSession.objects.get(pk=session.pk).turn_token == "", 20, message=second.output())
        assert not ConversationMessage.objects.filter(
            processing_status__in=[ProcessingStatus.PENDING, ProcessingStatus.PROCESSING, ProcessingStatus.STREAMING]
        ).exists()
        assert "Recovered the turn of message" in second.output()
        assert ConversationSession.objects.get(pk=session.pk).active_turn is None
