"""Real task worker processes against the test database: django-tasks-db's ``manage.py
db_worker`` and this app's ``manage.py ai_db_worker`` (tests/test_turn_worker_wakeup.py has what
only the latter does), and django-rq's ``manage.py rqworker`` with django-tasks-rq's job class.

The test process saves messages (the backend stores the turn task on commit); the worker
subprocess picks the task up, runs the agent and writes the answer. Transactional tests: the
worker only sees committed rows. Works on the SQLite test file and on PostgreSQL.

RQ needs a Redis server: REDIS_URL (CI sets it; default redis://127.0.0.1:6379/0). The queue name is
unique per run, so parallel runs sharing one Redis do not see each other's tasks. Each backend's
tests are skipped when its extra ('worker', 'rq') is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import uuid

import pytest
from django.test import override_settings

from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import isolated_registry, task_worker, wait_until

from .turns_support import AGENT_PATHS, AGENTS, ai_settings, post, reply_to, status_of

WORKER_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

needs_db_worker = pytest.mark.skipif(
    importlib.util.find_spec("django_tasks_db") is None, reason="the 'worker' extra (django-tasks-db) is not installed"
)


@pytest.fixture
def db_worker_settings():
    with (
        isolated_registry(AGENTS),
        override_settings(TASKS=WORKER_TASKS),
        ai_settings(
            AGENTS=AGENT_PATHS,
            STALE_TURN_TIMEOUT=1.5,
            TURN_HEARTBEAT_INTERVAL=0.2,
            TURN_RECOVERY_INTERVAL=0.25,
            STALE_TURN_ACTION="retry",
        ),
    ):
        yield


# django-tasks-db's db_worker, and this app's ai_db_worker (the same worker, woken by NOTIFY).
DB_WORKERS = pytest.mark.parametrize("kind", ["db", "ai_db"])


@needs_db_worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_worker_settings")
@DB_WORKERS
def test_worker_answers_a_message_saved_by_another_process(kind):
    from django_tasks_db.models import DBTaskResult

    with task_worker(kind=kind) as start:
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


@needs_db_worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("db_worker_settings")
@DB_WORKERS
def test_killed_worker_leaves_nothing_stuck(kind):
    """SIGKILL the worker mid-turn; a worker started afterwards finds the stale lease (no
    heartbeat for STALE_TURN_TIMEOUT) at start-up and answers the message again."""
    with task_worker(kind=kind) as start:
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
        answers = ConversationMessage.objects.filter(reply_to=message, message_type=MessageType.AGENT).order_by(
            "timestamp"
        )
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


def _redis_available() -> bool:
    import redis  # installed with the optional 'rq' extra, checked just before

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _rq_skip_reason() -> str | None:
    if importlib.util.find_spec("django_tasks_rq") is None:
        return "the 'rq' extra (django-tasks-rq) is not installed"
    if not _redis_available():
        return f"no Redis server at {REDIS_URL} (CI provides one)"
    return None


@pytest.fixture
def rq_queue():
    reason = _rq_skip_reason()
    if reason:
        pytest.skip(reason)
    queue = f"turns-test-{uuid.uuid4().hex[:10]}"
    tasks = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": [queue]}}
    with (
        isolated_registry(AGENTS),
        override_settings(TASKS=tasks, RQ_QUEUES={queue: {"URL": REDIS_URL}}),
        ai_settings(AGENTS=AGENT_PATHS, TASK_QUEUE=queue),
    ):
        yield queue
        import django_rq  # the optional 'rq' extra, there since the fixture did not skip

        django_rq.get_queue(queue).empty()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_rq_worker_answers_messages_one_at_a_time(rq_queue):
    with task_worker(kind="rq", queue=rq_queue) as start:
        worker = start()
        session = ConversationService.create_session("counter")
        messages = [post(session, f"m{i}") for i in range(3)]
        wait_until(
            lambda: all(status_of(m) == ProcessingStatus.COMPLETED for m in messages), 30, message=worker.output()
        )
    assert [reply_to(m).content for m in messages] == ["#1", "#2", "#3"]
    session.refresh_from_db()
    assert session.context == {"count": 3, "seen": ["m0", "m1", "m2"]}
