"""What the AI SDK endpoints read and write in the database: a reply's saved state, the reply a
resume request re-attaches to, and the cancel of one reply when its client stops."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..constants import MessageType, ProcessingStatus
from ..models import ConversationMessage, ConversationWidget
from ..turns.notify import publish_status
from ..turns.steps import end_open_steps
from .translate import ReplySnapshot, StepRow, WidgetRow

__all__ = ["build_snapshot", "cancel_reply", "read_reply", "streaming_reply"]

#: User messages whose reply is on its way: a resume request re-attaches to them.
_UNDER_WAY = (ProcessingStatus.PENDING, ProcessingStatus.PROCESSING)
#: Agent messages of an attempt that ended without answering.
_ATTEMPT_ENDED = (ProcessingStatus.FAILED, ProcessingStatus.CANCELLED)


def read_reply(user_message_id: Any) -> ReplySnapshot:
    """The saved state of the reply to ``user_message_id`` (three small queries: the user
    message's status, the messages that answer it, their widgets)."""
    user_status = (
        ConversationMessage.objects.filter(pk=user_message_id).values_list("processing_status", flat=True).first()
        or ProcessingStatus.CANCELLED  # deleted meanwhile: nothing more will come
    )
    replies = list(ConversationMessage.objects.filter(reply_to_id=user_message_id).order_by("timestamp", "id"))
    widgets = {
        w.message_id: w
        for w in ConversationWidget.objects.filter(
            message_id__in=[m.pk for m in replies if m.message_type == MessageType.WIDGET]
        )
    }
    return build_snapshot(user_status, replies, widgets)


def build_snapshot(
    user_status: str, replies: list[ConversationMessage], widgets: dict[Any, ConversationWidget]
) -> ReplySnapshot:
    """A reply's state from its rows: ``replies`` (the messages whose ``reply_to`` is the user
    message, in time order) and ``widgets`` (their ConversationWidget rows by message id)."""
    agent_id: str | None = None
    text = ""
    notice: str | None = None
    parts: list[tuple[float, int, StepRow | WidgetRow]] = []
    for n, message in enumerate(replies):
        if message.message_type == MessageType.AGENT:
            # The newest: a message answered again (a rerun, a retry after a crash) keeps the
            # agent message of its failed attempt before the one being written now, which is
            # the reply while the new attempt waits or runs.
            if user_status in _UNDER_WAY and message.processing_status in _ATTEMPT_ENDED:
                continue
            agent_id, text = str(message.pk), message.content
        elif message.message_type == MessageType.SYSTEM:
            notice = message.content
        elif message.message_type == MessageType.TOOL:
            data = message.component_data if isinstance(message.component_data, dict) else {}
            offset = data.get("text_offset")
            step = StepRow(
                message_id=str(message.pk),
                call_id=str(data.get("call_id") or message.pk),
                name=str(data.get("name") or message.component_type),
                arguments=data.get("arguments") or {},
                status=message.processing_status,
                result=data.get("result"),
                error=data.get("error") if isinstance(data.get("error"), dict) else None,
                text_offset=offset if isinstance(offset, int) else None,
            )
            parts.append((_order(step.text_offset), n, step))
        elif message.message_type == MessageType.WIDGET and message.pk in widgets:
            widget = widgets[message.pk]
            offset = message.text_offset
            row = WidgetRow(
                widget_id=str(widget.pk),
                message_id=str(message.pk),
                widget_type=widget.widget_type,
                data=widget.data,
                display_data=widget.display_data,
                text_offset=offset if isinstance(offset, int) else None,
            )
            parts.append((_order(row.text_offset), n, row))
    parts.sort(key=lambda item: (item[0], item[1]))
    return ReplySnapshot(
        user_status=user_status, agent_id=agent_id, text=text, parts=tuple(p for _, _, p in parts), notice=notice
    )


def _order(offset: int | None) -> float:
    # Rows without an offset (made before offsets were recorded) keep their time order after
    # the placed ones.
    return float("inf") if offset is None else float(offset)


def streaming_reply(session_id: Any) -> ConversationMessage | None:
    """The user message of ``session_id``'s active path whose reply is being written or waits its
    turn (the oldest, as turns run in order), or None: a version left behind is being stopped."""
    return (
        ConversationMessage.objects.filter(
            session_id=session_id, active=True, message_type=MessageType.USER, processing_status__in=_UNDER_WAY
        )
        .order_by("timestamp", "id")
        .first()
    )


def cancel_reply(user_message_id: Any) -> bool:
    """Stop the reply to one user message, as ``cancel/`` does for a whole conversation: a
    message still waiting is cancelled at once, a running turn is asked to stop (it stops at the
    agent's next write); a waiting message whose turn was suspended for an approval (answered, not
    resumed yet) ends with its reply and steps. Other messages of the conversation are left
    alone. False when the message had already ended."""
    now = timezone.now()
    with transaction.atomic():
        message = (
            ConversationMessage.objects.select_for_update()
            .filter(pk=user_message_id, processing_status__in=_UNDER_WAY)
            .first()
        )
        if message is None:
            return False
        fields = ["updated_at"]
        if message.cancel_requested_at is None:
            message.cancel_requested_at = now
            fields.append("cancel_requested_at")
        if message.processing_status == ProcessingStatus.PENDING:
            message.processing_status = ProcessingStatus.CANCELLED
            message.finished_at = now
            fields += ["processing_status", "finished_at"]
            transaction.on_commit(partial(publish_status, message, reason="cancelled"))
            # A turn suspended for an approval, answered but not resumed yet: its reply and its
            # steps end with it, as cancel/ ends them (turns.policy.request_cancel).
            suspended = ConversationMessage.objects.select_for_update().filter(
                reply_to_id=message.pk,
                message_type=MessageType.AGENT,
                processing_status=ProcessingStatus.AWAITING_APPROVAL,
            )
            for reply in suspended:
                reply.processing_status = ProcessingStatus.CANCELLED
                reply.save(update_fields=["processing_status", "updated_at"])
                transaction.on_commit(partial(publish_status, reply, reason="cancelled"))
            end_open_steps([message.pk], status=ProcessingStatus.CANCELLED)
        message.save(update_fields=fields)
    return True
