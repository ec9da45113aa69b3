"""The database side of tool steps: one ``tool`` message per tool call of a reply (design in
docs/tools.md, "Tool steps"). Run on the turn's thread (``TurnState.call_db``); rows are saved
with ``save()`` so ``model_change`` reaches clients."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from ..constants import MessageType, ProcessingStatus
from ..models import ConversationMessage, ConversationSession

__all__ = ["RUNNABLE", "create_steps", "int_or_zero", "reply_steps", "save_step", "text_safe"]

#: Statuses of a step that still has to run (approved while its turn was suspended).
RUNNABLE = (ProcessingStatus.PENDING,)

_SAVED = ["processing_status", "content", "component_data", "started_at", "finished_at", "updated_at"]


def text_safe(value: Any) -> Any:
    """``value`` with every NUL in its strings (keys too) replaced by U+FFFD: PostgreSQL stores no
    NUL in text nor ``\\u0000`` in jsonb, and a model's arguments or a tool's result may hold one."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {text_safe(k): text_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [text_safe(v) for v in value]
    return value


def create_steps(
    session: ConversationSession, user_message: ConversationMessage, steps: list[dict[str, Any]]
) -> list[ConversationMessage]:
    """Create the rows of a round's calls: each ``{"name", "status", "content", "data", "finished"}``."""
    now = timezone.now()
    rows = []
    for step in steps:
        row = ConversationMessage(
            session=session,
            message_type=MessageType.TOOL,
            reply_to=user_message,
            component_type=text_safe(step["name"][:100]),
            component_data=text_safe(step["data"]),
            text_offset=step["data"].get("text_offset"),
            content=text_safe(step["content"]),
            processing_status=step["status"],
            timestamp=now,
            started_at=now,
            finished_at=now if step["finished"] else None,
        )
        row.save()
        rows.append(row)
    return rows


def save_step(row: ConversationMessage, *, status: str, content: str, data: dict[str, Any], finished: bool) -> None:
    """Record a step's new state (running, or ended)."""
    now: datetime = timezone.now()
    row.processing_status = status
    row.content = text_safe(content)
    row.component_data = text_safe(data)
    if not finished:
        row.started_at = now
    else:
        row.finished_at = now
    row.save(update_fields=_SAVED)


def reply_steps(user_message_id: Any) -> list[ConversationMessage]:
    """The tool steps of the reply to a user message, in (round, index) order."""
    rows = list(
        ConversationMessage.objects.filter(reply_to_id=user_message_id, message_type=MessageType.TOOL).order_by(
            "timestamp", "id"
        )
    )

    def key(row: ConversationMessage) -> tuple[int, int]:
        data = row.component_data or {}
        return (int_or_zero(data.get("round")), int_or_zero(data.get("index")))

    return sorted(rows, key=key)


def int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
