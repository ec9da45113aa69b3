"""Scheduling turns: making sure a conversation's waiting messages get answered.

A saved user message (``pending``) is answered by the turn task (``turns.tasks.answer_pending``),
enqueued when its transaction commits (``turns.hooks``) on the configured backend and queue
(``turns.enqueue``). The task answers the conversation's waiting messages one at a time, in
arrival order, under the conversation's lease (``turns.runner``). With a real queue one task
answers one message, then enqueues the next one, so busy conversations share the workers fairly
with quiet ones; run in the caller it answers every waiting message before returning.

``django_ai.conversations.dispatch.schedule_session`` is the documented alias of
:func:`schedule_session`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from ..constants import MessageType, ProcessingStatus
from ..internal.tasks_compat import InvalidTask, InvalidTaskBackend, Task
from ..models import ConversationMessage
from .enqueue import enqueue_session, improperly_configured, runs_in_process
from .notify import publish_status

__all__ = ["rerun_messages", "schedule_session", "schedule_session_on_commit", "turn_task", "turns_run_in_process"]

# Enqueue failures have always been logged here, apart from the turn's own log.
logger = logging.getLogger("django_ai.conversations.tasks")


def turn_task() -> Task:
    """The turn task, declared on the configured task backend and queue."""
    try:
        # Imported on first use: declaring the task validates it against DJANGO_AI['TASK_BACKEND']
        # and TASK_QUEUE, and a wrong value must reach the system checks (E040/E041) and this
        # error, not break app loading.
        from .tasks import answer_pending
    except (InvalidTaskBackend, InvalidTask) as exc:
        raise improperly_configured(exc) from exc
    return answer_pending


def turns_run_in_process() -> bool:
    """Whether this process answers its own turns: the configured task backend runs tasks in the
    caller (Django's ImmediateBackend, the default), so no worker process sweeps for it."""
    return runs_in_process(turn_task())


def schedule_session(session_id: Any) -> Any:
    """Make sure the session's pending messages will be answered: enqueue its turn task now.

    Safe to call any number of times: a task that finds the conversation busy (or nothing
    waiting) returns at once. Returns the TaskResult when the backend gives one.
    """
    return enqueue_session(turn_task(), session_id)


def schedule_session_on_commit(session_id: Any, *, using: str | None = None) -> None:
    """Schedule the session's turn when the current transaction commits (at once without one)."""

    def schedule() -> None:
        try:
            schedule_session(session_id)
        except Exception:
            logger.exception(
                "Could not enqueue the turn of conversation %s; its pending messages are enqueued "
                "again by crash recovery after STALE_TURN_TIMEOUT (or run 'manage.py recover_turns').",
                session_id,
            )

    transaction.on_commit(schedule, using=using)


def rerun_messages(messages: Iterable[ConversationMessage]) -> list[ConversationMessage]:
    """Answer failed user messages again: they go back to ``pending`` and their conversations are
    scheduled when the transaction commits. Agent and system messages stand for the user message
    they answer. Messages that did not fail are left alone. Returns the user messages re-queued."""
    ids: set[Any] = set()
    for message in messages:
        if message.message_type == MessageType.USER:
            ids.add(message.pk)
        elif message.reply_to_id is not None:
            ids.add(message.reply_to_id)
    requeued: list[ConversationMessage] = []
    with transaction.atomic():
        rows = ConversationMessage.objects.select_for_update().filter(
            pk__in=ids, message_type=MessageType.USER, processing_status=ProcessingStatus.FAILED
        )
        for message in rows:
            message.processing_status = ProcessingStatus.PENDING
            message.started_at = None
            message.finished_at = None
            message.cancel_requested_at = None
            message.save(
                update_fields=["processing_status", "started_at", "finished_at", "cancel_requested_at", "updated_at"]
            )
            requeued.append(message)
        for session_id in {m.session_id for m in requeued}:
            schedule_session_on_commit(session_id)
    for message in requeued:
        publish_status(message, reason="rerun")
    return requeued
