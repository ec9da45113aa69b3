"""``model_change`` events: what they carry and when they go.

A ``model_change`` names an exposed model, the operation and the primary keys, never the row:
clients refetch through the bridge, so permissions apply on every read. Which channels hear of a
change is the exposed model's decision (:meth:`~.exposed.ExposedModel.get_change_channels`);
this module sends the event once the current transaction commits, with the ``X-Operation-Id`` of
the bridge request in progress so a client can recognise the echo of its own write.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import models, transaction

from ..constants import EventName, ModelOperation
from ..models import ConversationSession
from ..realtime import publish

__all__ = ["conversation_ids", "current_operation_id", "operation", "send_model_change", "send_model_changes"]

#: The id of the write operation in progress (set by the bridge from the client's request) so a
#: client can recognise the echo of its own write.
current_operation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "django_ai_operation_id", default=None
)


@contextmanager
def operation(operation_id: str | None) -> Iterator[None]:
    """Run a write under ``operation_id`` (the request's ``X-Operation-Id``, or None)."""
    token = current_operation_id.set(operation_id)
    try:
        yield
    finally:
        current_operation_id.reset(token)


def conversation_ids(instance: models.Model) -> list[Any]:
    """The conversations a row belongs to: itself when it is one, else those its foreign keys to
    ``ConversationSession`` point to."""
    if isinstance(instance, ConversationSession):
        return [instance.pk]
    ids = []
    for field in instance._meta.concrete_fields:
        if field.is_relation and field.related_model is ConversationSession:
            value = getattr(instance, field.attname)
            if value is not None:
                ids.append(value)
    return ids


def send_model_change(
    *, model: str, operation: ModelOperation | str, pk: Any, channels: Iterable[str], session_id: Any
) -> None:
    """Send ``model_change`` for one row of the exposed model ``model`` on each of ``channels``
    once the current transaction commits (at once outside a transaction)."""
    send_model_changes(model=model, operation=operation, pks=[pk], channels=channels, session_id=session_id)


def send_model_changes(
    *, model: str, operation: ModelOperation | str, pks: Iterable[Any], channels: Iterable[str], session_id: Any
) -> None:
    """Send one ``model_change`` naming every row of ``pks`` (rows of the exposed model ``model``
    changed by one write, e.g. a bulk ``update()``, which fires no model signal) on each of
    ``channels`` once the current transaction commits. Nothing is sent for no pks."""
    targets = [c for c in dict.fromkeys(channels) if c]
    keys = list(dict.fromkeys(str(pk) for pk in pks))
    if not targets or not keys:
        return
    payload = {
        "model": str(model),
        "operation": str(ModelOperation(operation)),
        "pks": keys,
        "operation_id": current_operation_id.get(),
    }

    def send() -> None:
        for channel in targets:
            publish(EventName.MODEL_CHANGE, session_id=session_id, channel=channel, **payload)

    transaction.on_commit(send, robust=True)
