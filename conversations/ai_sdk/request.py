"""The body ``DefaultChatTransport`` POSTs: ``{"id", "messages", "trigger", "messageId"?}``.

Only the last entry of ``messages`` is read: the new user message, or, after
``addToolApprovalResponse``, the assistant message whose tool parts carry the user's answers (then
``messageId`` names it). The history the client sends is ignored, so a client cannot rewrite
earlier turns or put words in the agent's mouth: the conversation's rows are the truth.

``regenerate()`` sends ``trigger: "regenerate-message"`` and ``messageId``, the id of the
assistant message to answer again (without it, the last message sent names the user message):
only that id is read, and the reply is regenerated from the rows (``turns.versions``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from ..constants import ErrorCode
from ..exceptions import InvalidMessage, InvalidQuery

__all__ = [
    "FILE_URL_PREFIX",
    "ApprovalAnswer",
    "ApprovalRequest",
    "ChatRequest",
    "RegenerateRequest",
    "parse_chat_request",
]

#: A file part's ``url`` naming a file uploaded with ``POST files/``: ``django-ai-file:<file id>``.
FILE_URL_PREFIX = "django-ai-file:"
#: Keys the transport sends (``messageId`` when it regenerates or answers approvals of a message).
CHAT_KEYS = frozenset({"id", "messages", "trigger", "messageId"})
#: An id the bridge can keep as the message's ``X-Operation-Id`` (printable ASCII, at most 128).
_OPERATION_ID = re.compile(r"\A[\x21-\x7e]{1,128}\Z")
_MAX_FILES = 20


@dataclass(frozen=True)
class ChatRequest:
    """What a POST asks: the conversation, the new message's text and files, the client's id of
    the message (kept as its operation id, so a retried request makes no second message)."""

    session_id: str
    text: str
    file_ids: tuple[str, ...]
    client_message_id: str | None


@dataclass(frozen=True)
class ApprovalAnswer:
    """The user's answer to a tool call waiting for approval: ``step_id`` is the ``approvalId``
    the stream sent (the tool step's message id)."""

    step_id: str
    approved: bool
    reason: str


@dataclass(frozen=True)
class ApprovalRequest:
    """What a POST after ``addToolApprovalResponse`` asks: record the answers, then stream the
    rest of the reply."""

    session_id: str
    answers: tuple[ApprovalAnswer, ...]


@dataclass(frozen=True)
class RegenerateRequest:
    """What a POST of ``regenerate()`` asks: answer again the message ``message_id`` names (an
    id the client holds: an assistant message's, a user message's, or the client's own id of a
    message it sent)."""

    session_id: str
    message_id: str


def _bad(message: str, *, field: str, code: str = ErrorCode.INVALID_REQUEST) -> InvalidQuery:
    return InvalidQuery(message, code=code, field=field)


def parse_chat_request(data: Any) -> ChatRequest | ApprovalRequest | RegenerateRequest:
    """The request, or a 400 naming what is wrong (``field`` is the body's path to it)."""
    if not isinstance(data, dict):
        raise _bad("The request body must be a JSON object.", field="body", code=ErrorCode.INVALID_BODY)
    for key in data:
        if key not in CHAT_KEYS:
            raise InvalidQuery(
                f"Unknown key {str(key)[:64]!r}: the chat endpoint takes id, messages, trigger and messageId.",
                code=ErrorCode.UNKNOWN_KEY,
                field=str(key)[:64],
            )
    session_id = data.get("id")
    if not isinstance(session_id, str) or not session_id:
        raise _bad(
            "id is required: the id of the conversation (start/ returns it).", field="id", code=ErrorCode.REQUIRED
        )
    trigger = data.get("trigger", "submit-message")
    if trigger == "regenerate-message":
        return RegenerateRequest(session_id=session_id, message_id=_regenerated_id(data))
    if trigger != "submit-message":
        raise _bad(
            f"trigger {str(trigger)[:32]!r} is not supported: new messages are (submit-message) and "
            "regenerated replies (regenerate-message).",
            field="trigger",
        )
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list ending with the new user message.", field="messages")
    last = messages[-1]
    where = f"messages.{len(messages) - 1}"
    role = last.get("role") if isinstance(last, dict) else None
    if role == "assistant" and isinstance(last, dict):
        return ApprovalRequest(session_id=session_id, answers=_approval_answers(last, where, data.get("messageId")))
    if data.get("messageId") is not None:
        raise _bad("messageId is not supported: earlier messages cannot be replaced.", field="messageId")
    if not isinstance(last, dict) or role != "user":
        raise _bad(
            "The last message must be the new user message (role 'user'), or the assistant message "
            "answering tool approvals.",
            field=f"{where}.role",
        )
    parts = last.get("parts")
    if not isinstance(parts, list) or not parts:
        raise _bad("The user message needs parts: a text part at least.", field=f"{where}.parts")
    texts: list[str] = []
    files: list[str] = []
    for n, part in enumerate(parts):
        path = f"{where}.parts.{n}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad("A text part needs its text as a string.", field=f"{path}.text")
            texts.append(text)
        elif kind == "file":
            files.append(_file_id(part.get("url"), f"{path}.url"))
        else:
            raise _bad(
                f"Part type {str(kind)[:32]!r} is not supported in a user message: send text parts and file "
                f"parts of uploaded files ({FILE_URL_PREFIX}<id>).",
                field=f"{path}.type",
            )
    if len(files) > _MAX_FILES:
        raise _bad(f"At most {_MAX_FILES} files per message.", field=f"{where}.parts")
    text = "\n".join(texts)
    if not text.strip():
        raise InvalidMessage("The message has no text.", field=f"{where}.parts")
    client_id = last.get("id")
    return ChatRequest(
        session_id=session_id,
        text=text,
        file_ids=tuple(dict.fromkeys(files)),
        client_message_id=client_id if isinstance(client_id, str) and _OPERATION_ID.match(client_id) else None,
    )


def _regenerated_id(data: dict[str, Any]) -> str:
    """The id ``regenerate()`` names: ``messageId``, else the id of the last message sent."""
    message_id = data.get("messageId")
    if message_id is not None:
        if not isinstance(message_id, str) or not message_id:
            raise _bad("messageId must be the id of the message to regenerate.", field="messageId")
        return message_id
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad(
            "regenerate-message needs messageId, or messages ending with the message to answer again.",
            field="messageId",
            code=ErrorCode.REQUIRED,
        )
    last = messages[-1]
    last_id = last.get("id") if isinstance(last, dict) else None
    if not isinstance(last_id, str) or not last_id:
        raise _bad(
            "The last message needs its id: the message to answer again.", field=f"messages.{len(messages) - 1}.id"
        )
    return last_id


def _approval_answers(message: dict[str, Any], where: str, message_id: Any) -> tuple[ApprovalAnswer, ...]:
    """The answers in an assistant message's tool parts (state ``approval-responded``)."""
    if message_id is not None and message_id != message.get("id"):
        raise _bad("messageId must be the id of the last message, the one answering approvals.", field="messageId")
    parts = message.get("parts")
    answers: list[ApprovalAnswer] = []
    for n, part in enumerate(parts if isinstance(parts, list) else []):
        if not isinstance(part, dict) or part.get("state") != "approval-responded":
            continue
        approval = part.get("approval")
        path = f"{where}.parts.{n}.approval"
        if not isinstance(approval, dict) or not isinstance(approval.get("id"), str):
            raise _bad("An answered approval needs its id (the approvalId the stream sent).", field=f"{path}.id")
        if not isinstance(approval.get("approved"), bool):
            raise _bad("An answered approval needs approved: true or false.", field=f"{path}.approved")
        reason = approval.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise _bad("An approval's reason must be a string.", field=f"{path}.reason")
        answers.append(ApprovalAnswer(approval["id"], approval["approved"], reason or ""))
    if not answers:
        raise _bad(
            "The last message is the assistant's, but none of its tool parts answers an approval "
            "(state 'approval-responded'): send the new user message last.",
            field=f"{where}.parts",
        )
    return tuple(answers)


def _file_id(url: Any, field: str) -> str:
    if isinstance(url, str) and url.startswith(FILE_URL_PREFIX):
        try:
            return str(uuid.UUID(url.removeprefix(FILE_URL_PREFIX)))
        except ValueError:
            pass
    raise InvalidQuery(
        f"A file part's url must name an uploaded file: {FILE_URL_PREFIX}<the id POST files/ returned>. "
        "Data and web URLs are not fetched.",
        code=ErrorCode.INVALID_REQUEST,
        field=field,
    )
