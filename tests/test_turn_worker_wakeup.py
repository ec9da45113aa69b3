"""``manage.py ai_db_worker``: django-tasks-db's worker woken by PostgreSQL's NOTIFY when a task is
stored, keeping its database connection between tasks. Real worker processes against the test
database (test_turn_workers.py runs its answer and crash-recovery tests with both commands).

No test times anything: the wake-up is shown by a worker that polls every 30 s answering within a
generous wait that ends well before its next poll.
"""

from __future__ import annotations

import importlib.util
from uuid import UUID

import pytest
from django.db import connection
from django.test import override_settings

from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import isolated_registry, task_worker, wait_until
from django_ai.conversations.turns.wakeup import CHANNEL, TaskListener, payload

from .turns_support import AGENT_PATHS, AGENTS, ai_settings, post, status_of

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("django_tasks_db") is None, reason="the 'worker' extra (django-tasks-db) is not installed"
)

WORKER_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "turns"]}}
# Longer than any wait below: a message answered within the wait was not found by a poll.
LONG_INTERVAL = "30"
IDLE_LINE = "No task ready"

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's (SQLite workers poll)"
)


@pytest.fixture
def worker_settings():
    with isolated_registry(AGENTS), override_settings(TASKS=WORKER_TASKS), ai_settings(AGENTS=AGENT_PATHS):
        yield


def _idle_count(worker) -> int:
    return worker.output().count(IDLE_LINE)


@needs_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker_settings")
def test_storing_a_task_notifies_with_its_backend_and_queue():
    listener = TaskListener(backend="default", queues=["turns"])
    assert listener.start()
    try:
        with ai_settings(TASK_QUEUE="turns"):
            session = ConversationService.create_session("quick-echo")
            post(session, "hello")  # its task is stored when the save commits
        notified = wait_until(lambda: listener.wait(1.0), 20, message="no NOTIFY for the stored task")
        assert notified is True
        # A worker of other queues is not woken by it.
        other = TaskListener(backend="default", queues=["files"])
        assert other.start()
        try:
            session = ConversationService.create_session("quick-echo")
            post(session, "hello again")
            # Its NOTIFY was sent at the commit, before post() returned: a listener it concerned
            # would have it within the wait.
            assert other.wait(0.5) is False
        finally:
            other.close()
    finally:
        listener.close()
    assert payload("default", "turns") == "default:turns"


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_notifications_are_delivered_when_the_transaction_commits():
    """Inside a transaction the NOTIFY waits for the commit, when the task's row becomes visible."""
    from django.db import transaction

    listener = TaskListener(backend="default", queues=["*"])
    assert listener.start()
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload("default", "default")])
            assert listener.wait(0.2) is False  # not committed yet
        assert wait_until(lambda: listener.wait(1.0), 20, message="no NOTIFY after the commit")
    finally:
        listener.close()


@needs_postgresql
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker_settings")
def test_an_idle_worker_is_woken_by_a_stored_task():
    """The worker looks at the table every 30 s; each message is sent once it says it went idle,
    so only the NOTIFY can have it answered within the 20 s waited for."""
    with task_worker(kind="ai_db", interval=float(LONG_INTERVAL), args=["--verbosity", "2"]) as start:
        worker = start()
        assert "wake-up=LISTEN" in worker.output()
        idle = wait_until(lambda: _idle_count(worker), 20, message=worker.output())  # looked once, waits
        for text in ("first", "second", "third"):
            message = post(ConversationService.create_session("quick-echo"), text)
            wait_until(lambda m=message: status_of(m) == ProcessingStatus.COMPLETED, 20, message=worker.output())
            # Waiting again (the look after a task found nothing) before the next message is sent.
            idle = wait_until(lambda seen=idle: (n := _idle_count(worker)) > seen and n, 20, message=worker.output())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker_settings")
def test_two_waking_workers_answer_every_message_exactly_once():
    from django_tasks_db.models import DBTaskResult

    sessions = [ConversationService.create_session("quick-echo") for _ in range(6)]
    with task_worker(kind="ai_db", interval=0.2) as start:
        workers = [start(), start()]
        messages = [post(session, f"message {i} of {n}") for n in range(3) for i, session in enumerate(sessions)]
        wait_until(
            lambda: all(status_of(m) == ProcessingStatus.COMPLETED for m in messages),
            60,
            message="\n".join(w.output() for w in workers),
        )
        for message in messages:
            replies = ConversationMessage.objects.filter(reply_to=message, message_type=MessageType.AGENT)
            assert [r.content for r in replies] == [f"echo: {message.content}"]
        wait_until(
            lambda: not DBTaskResult.objects.exclude(status="SUCCESSFUL").exists(),
            20,
            message="\n".join(w.output() for w in workers),
        )
        assert all(len(task.worker_ids) == 1 for task in DBTaskResult.objects.all())  # each claimed once


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker_settings")
def test_a_worker_without_wakeup_polls():
    with task_worker(kind="ai_db", args=["--no-wakeup"]) as start:
        worker = start()
        assert "wake-up=polling every" in worker.output()
        message = post(ConversationService.create_session("quick-echo"), "polled")
        wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 20, message=worker.output())


def test_the_worker_keeps_connections_that_requests_would_close():
    from django_ai.conversations.management.commands.ai_db_worker import DEFAULT_CONN_MAX_AGE, keep_connections

    settings_dict = connection.settings_dict
    saved = settings_dict["CONN_MAX_AGE"]
    try:
        settings_dict["CONN_MAX_AGE"] = 0  # Django's default: a new connection for every task
        keep_connections(None)
        assert settings_dict["CONN_MAX_AGE"] == DEFAULT_CONN_MAX_AGE
        settings_dict["CONN_MAX_AGE"] = 30  # the project's choice stands
        keep_connections(None)
        assert settings_dict["CONN_MAX_AGE"] == 30
        keep_connections(0)  # --conn-max-age 0: as db_worker
        assert settings_dict["CONN_MAX_AGE"] == 0
    finally:
        settings_dict["CONN_MAX_AGE"] = saved


@needs_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("worker_settings")
def test_the_one_statement_claim_takes_what_db_workers_query_would():
    """ai_db_worker's claim on PostgreSQL (one UPDATE ... RETURNING): ready tasks of its backend
    and queues, highest priority first then oldest, each once, written as db_worker writes it."""
    from datetime import timedelta

    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    from django_ai.conversations.management.commands.ai_db_worker import WakingWorker
    from django_ai.conversations.turns.tasks import answer_pending

    def enqueue(name: str, queue_name: str = "default", **using) -> str:
        # The queue named: the task keeps the TASK_QUEUE it was declared with (another test's).
        return answer_pending.using(backend="default", queue_name=queue_name, **using).enqueue(name).id

    old = enqueue("old")
    later = enqueue("later", run_after=timezone.now() + timedelta(hours=1))  # not ready yet
    other_queue = enqueue("other queue", queue_name="turns")
    urgent = enqueue("urgent", priority=10)
    new = enqueue("new")
    worker = WakingWorker(
        listener=TaskListener(backend="default", queues=["default"], enabled=False),
        queue_names=["default"],
        interval=1,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="claimer",
        excluded_queue_names=[],
    )
    claimed = []
    while (task := worker._claim()[0]) is not None:
        claimed.append(task)
    assert [str(t.id) for t in claimed] == [urgent, old, new]
    assert [t.args_kwargs["args"] for t in claimed] == [["urgent"], ["old"], ["new"]]
    for task in DBTaskResult.objects.filter(pk__in=[urgent, old, new]):
        assert (task.status, task.worker_ids) == ("RUNNING", ["claimer"]) and task.started_at is not None
    assert set(DBTaskResult.objects.filter(status="READY").values_list("pk", flat=True)) == {
        UUID(later),
        UUID(other_queue),
    }
