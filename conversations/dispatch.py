"""Scheduling turns: how a pending user message gets answered.

A saved user message (``pending``) is answered by a task enqueued when its transaction commits,
through Django's Tasks API: the backend alias ``DJANGO_AI['TASK_BACKEND']`` of ``settings.TASKS``
and the queue ``DJANGO_AI['TASK_QUEUE']``. The task answers the conversation's waiting messages
one at a time, in arrival order, under the conversation's lease (see ``runner``).

Three ways a task runs, decided by the backend:

- a real queue (django-tasks-db's ``db_worker``, django-tasks-rq...): the task is stored and a
  worker process runs it; one task answers one message, then enqueues the next one, so busy
  conversations share the workers fairly with quiet ones;
- a backend that runs tasks in the caller (Django's ``ImmediateBackend``): the task is handed to
  ``IN_PROCESS_TURN_THREADS`` background threads of this process (``tasks.inprocess``), so a
  request does not wait for the agent;
- the same backend with ``IN_PROCESS_TURN_THREADS = 0``, or while a transaction is still open
  (e.g. a test's): the task runs right here and answers every waiting message before returning.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from .conf import ai_settings
from .internal.tasks_compat import ImmediateBackend, InvalidTask, InvalidTaskBackend, Task

__all__ = ["enqueue_task", "runs_in_caller", "schedule_session", "schedule_session_on_commit"]

logger = logging.getLogger("django_ai.conversations.tasks")

QUEUE, IN_PROCESS, INLINE = "queue", "in_process", "inline"


def runs_in_caller(backend: Any) -> bool:
    """Whether ``backend`` runs a task inside ``enqueue()`` (no worker involved).

    Override point for a custom synchronous backend: subclass Django's ImmediateBackend.
    """
    return isinstance(backend, ImmediateBackend)


def _improperly_configured(exc: Exception, queue: str | None = None) -> ImproperlyConfigured:
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
        raise _improperly_configured(exc, queue_name) from exc


def _turn_task() -> Task:
    try:
        from .tasks.turns import answer_pending
    except (InvalidTaskBackend, InvalidTask) as exc:  # declared on the configured backend and queue
        raise _improperly_configured(exc) from exc
    return answer_pending


def turns_run_in_process() -> bool:
    """Whether this process answers its own turns: the configured task backend runs tasks in the
    caller (Django's ImmediateBackend, the default), so no worker process sweeps for it."""
    return runs_in_caller(_configured(_turn_task(), None).get_backend())


def _mode(task: Task, using: str | None = None) -> str:
    if not runs_in_caller(task.get_backend()):
        return QUEUE
    if int(ai_settings.IN_PROCESS_TURN_THREADS) <= 0 or transaction.get_connection(using).in_atomic_block:
        # Inside an open transaction another thread's connection could not see its rows.
        return INLINE
    return IN_PROCESS


def enqueue_task(task: Task, *args: Any, queue_name: str | None = None, **kwargs: Any) -> Any:
    """Enqueue ``task`` on the configured backend and queue.

    Returns the TaskResult, or None when the task went to this process's background threads
    (a backend that runs tasks in the caller, see the module docstring).
    """
    configured = _configured(task, queue_name)
    if _mode(configured) == IN_PROCESS:
        from .tasks.inprocess import in_process_runner

        in_process_runner().submit(
            lambda: configured.enqueue(*args, **kwargs), threads=int(ai_settings.IN_PROCESS_TURN_THREADS)
        )
        return None
    return configured.enqueue(*args, **kwargs)


def schedule_session(session_id: Any) -> Any:
    """Make sure the session's pending messages will be answered: enqueue its turn task now.

    Safe to call any number of times: a task that finds the conversation busy (or nothing
    waiting) returns at once. Returns the TaskResult when the backend gives one.
    """
    configured = _configured(_turn_task(), None)
    mode = _mode(configured)
    if mode == IN_PROCESS:
        from .tasks.inprocess import in_process_runner

        in_process_runner().submit(
            lambda: configured.enqueue(str(session_id)), threads=int(ai_settings.IN_PROCESS_TURN_THREADS)
        )
        return None
    return configured.enqueue(str(session_id), drain=mode == INLINE)


def schedule_session_on_commit(session_id: Any, *, using: str | None = None) -> None:
    """Schedule the session's turn when the current transaction commits (at once without one)."""

    def schedule() -> None:
        try:
            schedule_session(session_id)
        except Exception:  # noqa: BLE001 - the message is saved; recovery enqueues it again
            logger.exception(
                "Could not enqueue the turn of conversation %s; its pending messages are enqueued "
                "again by crash recovery after STALE_TURN_TIMEOUT (or run 'manage.py recover_turns').",
                session_id,
            )

    transaction.on_commit(schedule, using=using)
