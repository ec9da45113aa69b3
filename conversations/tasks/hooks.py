"""Enqueue a turn when a user message is saved, however it was saved (bridge, admin, ORM)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save

from ..constants import MessageType, ProcessingStatus

__all__ = ["connect", "INLINE_FLAG"]

#: Set (True) on a ConversationMessage instance before saving it when the caller answers it
#: itself, as ``ConversationService.send_message`` does: then no task is enqueued for it.
INLINE_FLAG = "_django_ai_inline"


def enqueue_turn_on_commit(sender: Any, instance: Any, created: bool, raw: bool = False, using: str | None = None, **kwargs: Any) -> None:
    """post_save receiver: a new ``pending`` user message gets its turn task once committed.

    ``bulk_create`` sends no post_save: after bulk-creating pending messages call
    ``dispatch.schedule_session(session_id)`` yourself.
    """
    if raw or not created or getattr(instance, INLINE_FLAG, False):
        return
    if instance.message_type != MessageType.USER or instance.processing_status != ProcessingStatus.PENDING:
        return
    from ..dispatch import schedule_session_on_commit

    schedule_session_on_commit(instance.session_id, using=using)


def connect() -> None:
    from ..models import ConversationMessage

    post_save.connect(enqueue_turn_on_commit, sender=ConversationMessage, dispatch_uid="django_ai_enqueue_turn")
