"""``model_change`` events: after every committed write to a conversation model, a
primary-key-only event goes to the conversation's channel and, for sessions and files, to the
owner's channel. Clients refetch through the bridge, so permissions apply on every read."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from ..constants import EventName, ModelOperation

#: The id of the write operation in progress (set by the bridge from the client's request) so a
#: client can recognise the echo of its own write.
current_operation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "django_ai_operation_id", default=None
)

MODEL_NAMES = {
    "ConversationSession": "session",
    "ConversationMessage": "message",
    "ConversationWidget": "widget",
    "File": "file",
}


@contextmanager
def operation(operation_id: str | None) -> Iterator[None]:
    token = current_operation_id.set(operation_id)
    try:
        yield
    finally:
        current_operation_id.reset(token)


def _targets(instance: Any) -> tuple[Any, list[str]]:
    from .channels import owner_channel, owner_channel_for_session, session_channel

    name = type(instance).__name__
    if name == "ConversationSession":
        channels = [session_channel(instance.pk), owner_channel_for_session(instance)]
        return instance.pk, [c for c in channels if c]
    if name == "File":
        channels = [owner_channel(user_id=instance.user_id, anonymous_id=instance.anonymous_id)]
        if instance.session_id:
            channels.append(session_channel(instance.session_id))
        return instance.session_id, [c for c in channels if c]
    return instance.session_id, [session_channel(instance.session_id)]


def emit_model_change(instance: Any, op: ModelOperation) -> None:
    """Send ``model_change`` for ``instance`` once the current transaction commits."""
    from . import publish

    model = MODEL_NAMES[type(instance).__name__]
    pk = str(instance.pk)
    session_id, channels = _targets(instance)
    op_id = current_operation_id.get()

    def send() -> None:
        for channel in channels:
            publish(
                EventName.MODEL_CHANGE,
                session_id=session_id,
                channel=channel,
                model=model,
                operation=str(op),
                pks=[pk],
                operation_id=op_id,
            )

    transaction.on_commit(send, robust=True)


def _on_save(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw or type(instance).__name__ not in MODEL_NAMES:
        return
    emit_model_change(instance, ModelOperation.CREATE if created else ModelOperation.UPDATE)


def _on_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    if type(instance).__name__ not in MODEL_NAMES:
        return
    emit_model_change(instance, ModelOperation.DELETE)


def _on_files_changed(sender: Any, instance: Any, action: str, **kwargs: Any) -> None:
    if action in ("post_add", "post_remove", "post_clear") and type(instance).__name__ == "ConversationMessage":
        emit_model_change(instance, ModelOperation.UPDATE)


def connect() -> None:
    from ..models import ConversationMessage, ConversationSession, ConversationWidget, File

    for model in (ConversationSession, ConversationMessage, ConversationWidget, File):
        post_save.connect(_on_save, sender=model, dispatch_uid=f"django_ai_sync_save_{model.__name__}")
        post_delete.connect(_on_delete, sender=model, dispatch_uid=f"django_ai_sync_delete_{model.__name__}")
    m2m_changed.connect(
        _on_files_changed, sender=ConversationMessage.files.through, dispatch_uid="django_ai_sync_files"
    )
