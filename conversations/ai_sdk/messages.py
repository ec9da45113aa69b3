"""A conversation's rows as the AI SDK's ``UIMessage`` list (``GET ai-sdk/chat/<id>/messages/``),
what a page gives ``useChat({messages})`` when it opens a conversation again.

Each user message is a ``user`` message (its text, its files as ``file`` parts); its reply is one
``assistant`` message whose parts are built by the same :class:`~.translate.ReplyTranslator` that
streams replies, so a reloaded page shows what the stream showed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..constants import MessageType, ProcessingStatus
from ..models import ConversationMessage, ConversationSession, ConversationWidget
from .chunks import Chunk
from .request import FILE_URL_PREFIX
from .rows import build_snapshot
from .translate import ReplyTranslator

__all__ = ["conversation_messages", "ui_parts"]

_UNDER_WAY = (ProcessingStatus.PENDING, ProcessingStatus.PROCESSING)


def ui_parts(chunks: list[Chunk]) -> list[dict[str, Any]]:
    """The parts a client builds from ``chunks`` (the ``ai`` package's rules, for the chunks
    this app sends)."""
    parts: list[dict[str, Any]] = []
    texts: dict[str, dict[str, Any]] = {}
    tools: dict[str, dict[str, Any]] = {}
    for chunk in chunks:
        kind = chunk["type"]
        if kind == "text-start":
            texts[chunk["id"]] = {"type": "text", "text": "", "state": "streaming"}
            parts.append(texts[chunk["id"]])
        elif kind == "text-delta":
            texts[chunk["id"]]["text"] += chunk["delta"]
        elif kind == "text-end":
            texts[chunk["id"]]["state"] = "done"
        elif kind in ("tool-input-start", "tool-input-available"):
            tool = tools.get(chunk["toolCallId"])
            if tool is None:
                tool = tools[chunk["toolCallId"]] = {
                    "type": f"tool-{chunk['toolName']}",
                    "toolCallId": chunk["toolCallId"],
                }
                parts.append(tool)
            tool["state"] = "input-streaming" if kind == "tool-input-start" else "input-available"
            tool["input"] = chunk.get("input")
        elif kind == "tool-approval-request":
            tools[chunk["toolCallId"]].update(state="approval-requested", approval={"id": chunk["approvalId"]})
        elif kind == "tool-output-available":
            tools[chunk["toolCallId"]].update(state="output-available", output=chunk["output"])
        elif kind == "tool-output-error":
            tools[chunk["toolCallId"]].update(state="output-error", errorText=chunk["errorText"])
        elif kind == "tool-output-denied":
            tools[chunk["toolCallId"]]["state"] = "output-denied"
        elif kind.startswith("data-"):
            same = next((p for p in parts if p["type"] == kind and p.get("id") == chunk.get("id")), None)
            if same is not None:
                same["data"] = chunk["data"]
            else:
                parts.append({"type": kind, "id": chunk.get("id"), "data": chunk["data"]})
    return parts


def conversation_messages(session: ConversationSession) -> list[dict[str, Any]]:
    """The conversation's active path (docs/versions.md) as ``UIMessage`` objects, oldest first
    (three queries)."""
    rows = list(
        ConversationMessage.objects.filter(session=session, active=True)
        .prefetch_related("files")
        .order_by("timestamp", "id")
    )
    widgets = {w.message_id: w for w in ConversationWidget.objects.filter(session=session, message__isnull=False)}
    replies: dict[Any, list[ConversationMessage]] = defaultdict(list)
    for row in rows:
        if row.reply_to_id is not None:
            replies[row.reply_to_id].append(row)
    messages: list[dict[str, Any]] = []
    for row in rows:
        if row.message_type == MessageType.USER:
            messages.append(_user_message(row))
            reply = _reply(session, row, replies.get(row.pk, []), widgets)
            if reply is not None:
                messages.append(reply)
        elif row.reply_to_id is None and row.message_type in (MessageType.AGENT, MessageType.SYSTEM):
            # Written outside a turn (a greeting saved by the project): text only.
            role = "assistant" if row.message_type == MessageType.AGENT else "system"
            messages.append({"id": str(row.pk), "role": role, "parts": [{"type": "text", "text": row.content}]})
    return messages


def _user_message(row: ConversationMessage) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {
            "type": "file",
            "mediaType": f.content_type or "application/octet-stream",
            "filename": f.filename,
            "url": f"{FILE_URL_PREFIX}{f.pk}",
        }
        for f in row.files.all()
    ]
    parts.append({"type": "text", "text": row.content})
    return {"id": str(row.pk), "role": "user", "parts": parts, "metadata": {"status": row.processing_status}}


def _reply(
    session: ConversationSession,
    user: ConversationMessage,
    rows: list[ConversationMessage],
    widgets: dict[Any, ConversationWidget],
) -> dict[str, Any] | None:
    snapshot = build_snapshot(user.processing_status, rows, widgets)
    translator = ReplyTranslator(user_message_id=str(user.pk), session_id=str(session.pk), started=True)
    parts = ui_parts(translator.apply_snapshot(snapshot))
    if user.processing_status not in _UNDER_WAY:
        for part in parts:
            if part["type"] == "text":
                part["state"] = "done"
    if not parts and snapshot.notice is None:
        return None
    metadata: dict[str, Any] = {
        "session_id": str(session.pk),
        "reply_to": str(user.pk),
        "status": user.processing_status,
    }
    if snapshot.notice is not None and user.processing_status == ProcessingStatus.FAILED:
        # (A reply that succeeded when answered again keeps its failed attempt's notice.)
        metadata["error"] = snapshot.notice
    return {
        "id": snapshot.agent_id or f"{user.pk}-reply",
        "role": "assistant",
        "parts": parts,
        "metadata": metadata,
    }
