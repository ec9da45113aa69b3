"""Enqueue a turn when a user message is saved, however it was saved (bridge, admin, ORM).

Code that answers a message itself (``ConversationService.send_message``) saves it inside
:func:`answered_by_caller`: no task is enqueued for what is saved there. The state lives in a
context variable of the saving thread, not on the model instance.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.models.signals import post_save

from ..constants import MessageType, ProcessingStatus
from ..models import ConversationMessage
from .scheduling import schedule_session_on_commit

__all__ = ["answered_by_caller", "connect"]

_answered_by_caller: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "django_ai_answered_by_caller", default=False
)


@contextmanager
def answered_by_caller() -> Iterator[None]:
    """Within the block, user messages saved by this thread (or task) get no turn task: the
    caller answers them itself, or (in tests) leaves them as they are on purpose."""
    reset = _answered_by_caller.set(True)
    try:
        yield
    finally:
        _answered_by_caller.reset(reset)


def enqueue_turn_on_commit(
    sender: Any, instance: Any, created: bool, raw: bool = False, using: str | None = None, **kwargs: Any
) -> None:
    """post_save receiver: a new ``pending`` user message gets its turn task once committed.

    ``bulk_create`` sends no post_save: after bulk-creating pending messages call
    ``schedule_session(session_id)`` yourself.
    """
    if raw or not created or _answered_by_caller.get():
        return
    if instance.message_type != MessageType.USER or instance.processing_status != ProcessingStatus.PENDING:
        return
    schedule_session_on_commit(instance.session_id, using=using)


def connect() -> None:
    post_save.connect(enqueue_turn_on_commit, sender=ConversationMessage, dispatch_uid="django_ai_enqueue_turn")
