"""Putting a task on the configured task backend and queue (turn tasks and file extraction).

Tasks go through Django's Tasks API: the backend alias ``DJANGO_AI['TASK_BACKEND']`` of
``settings.TASKS`` and the queue ``DJANGO_AI['TASK_QUEUE']``. Three ways a task runs, decided by
the backend:

- a real queue (django-tasks-db's ``db_worker``, django-tasks-rq...): the task is stored and a
  worker process runs it;
- a backend that runs tasks in the caller (Django's ``ImmediateBackend``): the task is handed to
  ``IN_PROCESS_TURN_THREADS`` background threads of this process (``turns.inprocess``), so a
  request does not wait for the agent;
- the same backend with ``IN_PROCESS_TURN_THREADS = 0``, or while a transaction is still open
  (e.g. a test's): the task runs right here.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from .. import telemetry
from ..conf import ai_settings
from ..internal.tasks_compat import ImmediateBackend, InvalidTask, InvalidTaskBackend, Task
from .inprocess import in_process_runner

__all__ = ["enqueue_session", "enqueue_task", "improperly_configured", "runs_in_caller", "runs_in_process"]

QUEUE, IN_PROCESS, INLINE = "queue", "in_process", "inline"


def runs_in_caller(backend: Any) -> bool:
    """Whether ``backend`` runs a task inside ``enqueue()`` (no worker involved).

    Override point for a custom synchronous backend: subclass Django's ImmediateBackend.
    """
    return isinstance(backend, ImmediateBackend)


def improperly_configured(exc: Exception, queue: str | None = None) -> ImproperlyConfigured:
    """The error naming the setting to fix when the backend refuses a task (``exc``)."""
    alias = ai_settings.TASK_BACKEND
    queue = queue or ai_settings.TASK_QUEUE
    if isinstance(exc, InvalidTaskBackend):
        return ImproperlyConfigured(
            f"DJANGO_AI['TASK_BACKEND'] is {alias!r}, which is not an alias of settings.TASKS ({exc}). "
            "Set it to one of the aliases in TASKS (usually 'default')."
        )
    return ImproperlyConfigured(
        f"The task backend {alias!r} refuses the turn task on queue {queue!r}: {exc}. "
        "Set DJANGO_AI['TASK_QUEUE'] to a queue listed in that backend's QUEUES."
    )


def _configured(task: Task, queue_name: str | None) -> Task:
    try:
        return task.using(backend=ai_settings.TASK_BACKEND, queue_name=queue_name or ai_settings.TASK_QUEUE)
    except (InvalidTaskBackend, InvalidTask) as exc:
        raise improperly_configured(exc, queue_name) from exc


def _mode(task: Task) -> str:
    if not runs_in_caller(task.get_backend()):
        return QUEUE
    if int(ai_settings.IN_PROCESS_TURN_THREADS) <= 0 or transaction.get_connection().in_atomic_block:
        # Inside an open transaction another thread's connection could not see its rows.
        return INLINE
    return IN_PROCESS


def runs_in_process(task: Task) -> bool:
    """Whether this process runs ``task`` itself (the configured backend runs tasks in the caller)."""
    return runs_in_caller(_configured(task, None).get_backend())


def _submit(configured: Task, *args: Any, **kwargs: Any) -> None:
    in_process_runner().submit(
        lambda: configured.enqueue(*args, **kwargs), threads=int(ai_settings.IN_PROCESS_TURN_THREADS)
    )


def enqueue_task(task: Task, *args: Any, queue_name: str | None = None, **kwargs: Any) -> Any:
    """Enqueue ``task`` on the configured backend and queue.

    Returns the TaskResult, or None when the task went to this process's background threads
    (a backend that runs tasks in the caller, see the module docstring).
    """
    configured = _configured(task, queue_name)
    if _mode(configured) == IN_PROCESS:
        _submit(configured, *args, **kwargs)
        return None
    return configured.enqueue(*args, **kwargs)


def enqueue_session(task: Task, session_id: Any) -> Any:
    """Enqueue the turn ``task`` for a conversation; run here, it answers every waiting message
    (``drain``) since nothing would enqueue the next one. The task gets the current trace context
    (``trace``, when telemetry is on), so the turn continues the trace of the request that saved
    the message, in a worker or on this process's threads alike."""
    configured = _configured(task, None)
    mode = _mode(configured)
    carrier = telemetry.trace_carrier()
    traced = {"trace": carrier} if carrier else {}
    if mode == IN_PROCESS:
        _submit(configured, str(session_id), **traced)
        return None
    return configured.enqueue(str(session_id), drain=mode == INLINE, **traced)
