"""Event payloads. Every event has ``id``, ``session_id`` and ``timestamp``; names come from
:class:`~django_ai.conversations.constants.EventName`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from ..constants import EventName


def build_event(name: EventName | str, *, session_id: Any, **data: Any) -> dict[str, Any]:
    EventName(name)  # unknown names are a programming error
    payload: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "session_id": str(session_id) if session_id is not None else None,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    for key, value in data.items():
        payload[key] = str(value) if isinstance(value, uuid.UUID) else value
    return payload
