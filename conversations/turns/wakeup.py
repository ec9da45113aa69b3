"""Waking an idle task worker as soon as a task is stored (PostgreSQL ``LISTEN``/``NOTIFY``).

django-tasks-db's ``db_worker`` finds new tasks by polling: an idle worker sleeps ``--interval``
seconds between two looks at the table, so a message sent to an idle worker waits half an interval
on average before its turn starts. On PostgreSQL the web process also says that it stored a task:

- :func:`notify_enqueued` (a ``task_enqueued`` receiver, connected by the app's ``ready()``) sends
  ``NOTIFY django_ai_tasks, '<backend alias>:<queue>'`` on the connection that stored the task,
  right after its INSERT (one statement; inside a transaction PostgreSQL delivers it at the commit,
  when the row becomes visible);
- :class:`TaskListener` (used by ``manage.py ai_db_worker``) holds a connection of its own that
  ``LISTEN``\\ s, and waits on it instead of sleeping: the worker polls at once when a task of its
  backend and queues is announced, and every ``--interval`` seconds anyway (a notification is lost
  when nobody listened at that moment, e.g. while the worker restarted).

SQLite (and psycopg 2, which lacks psycopg 3's ``notifies()``) keep polling: there the listener
says it cannot listen and the worker sleeps as ``db_worker`` does.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import DatabaseError, connections

from ..internal.tasks_compat import task_enqueued

__all__ = ["CHANNEL", "TaskListener", "connect", "notify_enqueued", "payload"]

logger = logging.getLogger("django_ai.conversations.tasks")

#: The PostgreSQL notification channel of stored tasks.
CHANNEL = "django_ai_tasks"


def payload(backend: str, queue: str) -> str:
    """What a notification carries: the backend alias and the queue of the stored task."""
    return f"{backend}:{queue}"


def notify_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    """``task_enqueued`` receiver: announce a task django-tasks-db stored in PostgreSQL.

    Tasks of other backends (Immediate, RQ...) have no ``db_result``: nothing to do. A failed
    NOTIFY is logged, never raised: the task is stored and a worker finds it at its next poll.
    """
    db_result = getattr(task_result, "db_result", None)
    if db_result is None:
        return
    connection = connections[db_result._state.db or "default"]
    if connection.vendor != "postgresql":
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload(task_result.backend, db_result.queue_name)])
    except DatabaseError:
        logger.exception("Could not wake the task workers (NOTIFY %s); they find the task at their next poll", CHANNEL)


def connect() -> None:
    """From the app's ``ready()``: announce every task django-tasks-db stores."""
    task_enqueued.connect(notify_enqueued, dispatch_uid="django_ai_notify_enqueued")


class TaskListener:
    """A connection of its own (not Django's: that one is closed and reopened as ``CONN_MAX_AGE``
    says) that ``LISTEN``\\ s on :data:`CHANNEL`, for one worker of backend ``backend`` serving
    ``queues`` (``["*"]``: every queue).

    :meth:`start` returns False where it cannot listen (SQLite, psycopg 2, a connection refused,
    or ``enabled=False``): then :meth:`wait` sleeps. A connection that breaks is dropped and opened again at the next
    :meth:`wait`; until then the worker polls.
    """

    def __init__(self, *, backend: str, queues: list[str], using: str = "default", enabled: bool = True) -> None:
        self.backend = backend
        self.queues = set(queues)
        self.using = using
        self.enabled = enabled
        self._connection: Any = None

    @property
    def listening(self) -> bool:
        return self._connection is not None

    def start(self) -> bool:
        """Open the connection and ``LISTEN`` (once: True while it stays open)."""
        if self._connection is not None:
            return True
        if not self.enabled:
            return False
        django_connection = connections[self.using]
        if django_connection.vendor != "postgresql":
            return False
        database: Any = getattr(django_connection, "Database", None)  # the driver module (psycopg)
        if not hasattr(getattr(database, "Connection", None), "notifies"):
            logger.info("Task wake-up needs psycopg 3 (the 'postgres' extra): polling every interval instead")
            return False
        try:
            # The parameters of Django's own connections, without a pool (get_connection_params
            # leaves it out): this one stays open for the worker's life.
            self._connection = database.connect(**django_connection.get_connection_params(), autocommit=True)
            self._connection.execute(f"LISTEN {CHANNEL}")
        except database.Error:
            logger.exception("Could not LISTEN for new tasks: polling every interval instead")
            self.close()
            return False
        return True

    def _concerns(self, notification: Any) -> bool:
        backend, _, queue = notification.payload.partition(":")
        return backend == self.backend and ("*" in self.queues or queue in self.queues)

    def wait(self, timeout: float) -> bool:
        """Wait until a task of this worker's backend and queues is announced (True) or
        ``timeout`` seconds passed (False); sleep where it cannot listen."""
        if not self.start():
            time.sleep(timeout)
            return False
        try:
            return any(self._concerns(n) for n in self._connection.notifies(timeout=timeout))
        except self._connection.Error:
            logger.warning("The connection listening for new tasks broke: opening it again", exc_info=True)
            self.close()
            return False

    def drain(self) -> None:
        """Forget the announcements received so far (the worker is about to look at the table
        anyway), without waiting: the next :meth:`wait` then waits for news."""
        if self._connection is None:
            return
        try:
            for _ in self._connection.notifies(timeout=0):
                pass
        except self._connection.Error:
            self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - it is being dropped anyway
                pass
