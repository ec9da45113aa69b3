"""Event payloads. Every event has ``id``, ``session_id`` and ``timestamp``; names come from
:class:`~django_ai.conversations.constants.EventName`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from ..constants import EventName

__all__ = ["ENVELOPE_FIELDS", "TEXT_CHUNK", "build_event", "event_timestamp", "new_event_id", "truncated_event"]

#: The name of a streamed write's event, as a plain ``str`` (compared on the write path).
TEXT_CHUNK = str(EventName.TEXT_CHUNK)


def new_event_id() -> str:
    """A fresh event ``id``: unique per event, so clients may de-duplicate by it."""
    return uuid.uuid4().hex


def event_timestamp() -> str:
    """The ``timestamp`` of an event built now (ISO 8601, UTC)."""
    return datetime.now(UTC).isoformat()


def build_event(name: EventName | str, /, *, session_id: Any, **data: Any) -> dict[str, Any]:
    """The payload of event ``name``: ``id``, ``session_id`` and ``timestamp``, then ``data``
    (UUIDs as strings)."""
    EventName(name)  # unknown names are a programming error
    payload: dict[str, Any] = {
        "id": new_event_id(),
        "session_id": str(session_id) if session_id is not None else None,
        "timestamp": event_timestamp(),
    }
    for key, value in data.items():
        payload[key] = str(value) if isinstance(value, uuid.UUID) else value
    return payload


#: What a trimmed event keeps of its payload (when present): the envelope and the ids a client
#: needs to read the full row through the bridge.
ENVELOPE_FIELDS = (
    "id",
    "session_id",
    "timestamp",
    "message_id",
    "widget_id",
    "widget_type",
    "message_type",
    "sequence",
    "status",
    "model",
    "operation",
    "pks",
    "operation_id",
    "reply_to",
    "call_id",
)


def truncated_event(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` reduced to :data:`ENVELOPE_FIELDS` plus ``"truncated": True``.

    A transport with a size limit (Pusher: 10 KB per event) sends this instead of an event it
    cannot carry (a widget with large ``data``); clients read the row the event names
    (docs/protocol.md, "Truncated events").
    """
    trimmed = {key: payload[key] for key in ENVELOPE_FIELDS if key in payload}
    trimmed["truncated"] = True
    return trimmed
