"""One reply (the answer to one user message) as UI message chunks, from our realtime events and
from its saved rows.

:class:`ReplyTranslator` is pure: the stream loop (:mod:`.streaming`) gives it events and row
snapshots (:mod:`.rows`) and writes out the chunks it returns. Both sources describe the same
reply, so it remembers what it has sent (the text's length in UTF-16 units, each tool call's state,
each widget's data) and sends only what is new: an event already covered by a snapshot, or a
snapshot older than the events, adds nothing.

A reply's parts are its streamed text cut by its tool steps and widgets where they happened
(``text_offset``); a text part ends when a tool step or a widget comes and a new one starts with
the next text (docs/ai-sdk.md has the mapping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..constants import ErrorCode, EventName, ProcessingStatus
from ..realtime.coalescer import utf16_len
from .chunks import Chunk, utf16_tail

__all__ = ["ReplySnapshot", "ReplyTranslator", "StepRow", "WidgetRow", "widget_data"]

_ENDED = frozenset(
    {
        ProcessingStatus.COMPLETED,
        ProcessingStatus.FAILED,
        ProcessingStatus.CANCELLED,
        ProcessingStatus.AWAITING_APPROVAL,
    }
)
_FINISH_REASONS = {
    ProcessingStatus.COMPLETED: "stop",
    ProcessingStatus.FAILED: "error",
    ProcessingStatus.CANCELLED: "other",
    ProcessingStatus.AWAITING_APPROVAL: "tool-calls",
}


@dataclass(frozen=True)
class StepRow:
    """A tool step of the reply (a ``message_type="tool"`` row; docs/tools.md)."""

    message_id: str
    call_id: str
    name: str
    arguments: Any
    status: str
    result: Any = None
    error: dict[str, Any] | None = None
    text_offset: int | None = None


@dataclass(frozen=True)
class WidgetRow:
    """A widget the reply showed."""

    widget_id: str
    message_id: str
    widget_type: str
    data: Any
    display_data: Any
    text_offset: int | None = None


@dataclass(frozen=True)
class ReplySnapshot:
    """The saved state of a reply: the user message's status, the agent message (its text and
    id, when it exists), the tool steps and widgets in reply order, the failure notice."""

    user_status: str
    agent_id: str | None = None
    text: str = ""
    parts: tuple[StepRow | WidgetRow, ...] = ()
    notice: str | None = None


def widget_data(widget_id: str, message_id: str, widget_type: str, data: Any, display_data: Any) -> dict[str, Any]:
    """The ``data`` of a ``data-widget`` part."""
    return {
        "widget_id": widget_id,
        "message_id": message_id,
        "widget_type": widget_type,
        "data": data,
        "display_data": display_data,
    }


@dataclass
class _Tool:
    started: bool = False
    input_sent: bool = False
    approval_sent: bool = False
    ended: bool = False


@dataclass
class ReplyTranslator:
    """UI message chunks for the reply to ``user_message_id``.

    ``started`` is False until that message's turn starts (its ``message_status`` says
    ``processing``): events before it belong to an earlier turn of the conversation and are
    dropped, except the tool and text events, which name their reply.
    """

    user_message_id: str
    session_id: str
    started: bool = False
    agent_id: str | None = None
    #: The agent message's text sent so far, and its length in UTF-16 units.
    text: str = ""
    text_units: int = 0
    #: The open text part's id, if one is open.
    open_text: str | None = None
    start_sent: bool = False
    #: Set once the user message ended (completed, failed, cancelled, awaiting approval): the
    #: stream loop then reads the final rows and calls :meth:`finish`.
    ended_status: str | None = None
    finished: bool = False
    #: Set when an event cannot be applied without the rows (a gap in the text, a trimmed
    #: widget): the loop reads a snapshot and calls :meth:`apply_snapshot`.
    needs_rows: bool = False
    _parts: int = 0
    _tools: dict[str, _Tool] = field(default_factory=dict)
    _widgets: dict[str, Any] = field(default_factory=dict)
    _held_text: list[tuple[int, str]] = field(default_factory=list)

    # Events ------------------------------------------------------------------------------

    def feed(self, event: str, payload: dict[str, Any], *, known_widgets: frozenset[str] | None = None) -> list[Chunk]:
        """The chunks an event adds. ``known_widgets``: when replaying events held from before
        the stream joined, the widgets of this reply (others belong to earlier replies)."""
        if self.finished:
            return []
        if event == EventName.MESSAGE_STATUS:
            return self._status(payload)
        if event in (EventName.TOOL_CALL_START, EventName.TOOL_CALL_ARGUMENTS, EventName.TOOL_CALL_RESULT):
            if str(payload.get("reply_to")) != self.user_message_id:
                return []
            return self._tool_event(event, payload)
        if event == EventName.STREAM_START:
            if str(payload.get("reply_to")) == self.user_message_id:
                self.agent_id = str(payload.get("message_id"))
            return []
        if event == EventName.TEXT_CHUNK:
            if self.agent_id is None or str(payload.get("message_id")) != self.agent_id:
                return []
            return self._text_chunk(payload)
        if event == EventName.STREAM_END:
            if self.agent_id is not None and str(payload.get("message_id")) == self.agent_id:
                return self._close_text()
            return []
        if event in (EventName.WIDGET, EventName.WIDGET_UPDATE):
            widget_id = str(payload.get("widget_id"))
            if not self.started or (known_widgets is not None and widget_id not in known_widgets):
                return []
            if payload.get("truncated"):
                self.needs_rows = True  # the row has the data the event could not carry
                return []
            if event == EventName.WIDGET_UPDATE and widget_id not in self._widgets and known_widgets is None:
                # Not shown by this reply (yet): maybe an earlier reply's widget, which stays
                # there; the rows say whether it is this reply's.
                self.needs_rows = True
                return []
            return self._widget(
                widget_data(
                    widget_id,
                    str(payload.get("message_id")),
                    str(payload.get("widget_type")),
                    payload.get("data"),
                    payload.get("display_data"),
                )
            )
        return []

    def _status(self, payload: dict[str, Any]) -> list[Chunk]:
        if str(payload.get("message_id")) != self.user_message_id:
            return []
        status = payload.get("status")
        if status == ProcessingStatus.PROCESSING:
            self.started = True
        elif status in _ENDED:
            self.started = True
            self.ended_status = str(status)
        elif status == ProcessingStatus.PENDING:
            # Sent back to wait (an approval was answered, a retry): the same reply goes on.
            self.ended_status = None
        return []

    def _text_chunk(self, payload: dict[str, Any]) -> list[Chunk]:
        text = str(payload.get("text") or "")
        offset = payload.get("offset")
        if not isinstance(offset, int):
            # The Memory backend (tests) sends one event per write, without offsets, in order.
            offset = self.text_units
        if offset > self.text_units:
            # Sent before this stream joined and not in the rows it read yet: read them again.
            self._held_text.append((offset, text))
            self.needs_rows = True
            return []
        return self._append_text(utf16_tail(text, self.text_units - offset))

    def _append_text(self, new: str) -> list[Chunk]:
        if not new:
            return []
        chunks = self._start()
        if self.open_text is None:
            self._parts += 1
            self.open_text = f"{self.agent_id or self.user_message_id}-text-{self._parts}"
            chunks.append({"type": "text-start", "id": self.open_text})
        chunks.append({"type": "text-delta", "id": self.open_text, "delta": new})
        self.text += new
        self.text_units += utf16_len(new)
        return chunks

    def _close_text(self) -> list[Chunk]:
        if self.open_text is None:
            return []
        chunk = {"type": "text-end", "id": self.open_text}
        self.open_text = None
        return [chunk]

    def _start(self) -> list[Chunk]:
        if self.start_sent:
            return []
        self.start_sent = True
        chunk: Chunk = {
            "type": "start",
            "messageMetadata": {"session_id": self.session_id, "reply_to": self.user_message_id},
        }
        if self.agent_id is not None:
            chunk["messageId"] = self.agent_id
        return [chunk]

    def _widget(self, data: dict[str, Any]) -> list[Chunk]:
        widget_id = data["widget_id"]
        if self._widgets.get(widget_id) == data:
            return []
        self._widgets[widget_id] = data
        return [*self._start(), *self._close_text(), {"type": "data-widget", "id": widget_id, "data": data}]

    def _tool_event(self, event: str, payload: dict[str, Any]) -> list[Chunk]:
        call_id = str(payload.get("call_id"))
        name = str(payload.get("name"))
        if event == EventName.TOOL_CALL_START:
            return self._tool_input_start(call_id, name)
        if event == EventName.TOOL_CALL_ARGUMENTS:
            return self._tool_input(
                call_id, name, payload.get("arguments"), str(payload.get("status")), str(payload.get("message_id"))
            )
        return self._tool_result(
            call_id, name, str(payload.get("status")), payload.get("result"), payload.get("error"), None
        )

    def _tool(self, call_id: str) -> _Tool:
        return self._tools.setdefault(call_id, _Tool())

    def _tool_input_start(self, call_id: str, name: str) -> list[Chunk]:
        tool = self._tool(call_id)
        if tool.started or tool.input_sent:
            return []
        tool.started = True
        return [
            *self._start(),
            *self._close_text(),
            {"type": "tool-input-start", "toolCallId": call_id, "toolName": name},
        ]

    def _tool_input(self, call_id: str, name: str, arguments: Any, status: str, step_id: str) -> list[Chunk]:
        tool = self._tool(call_id)
        chunks: list[Chunk] = []
        if not tool.input_sent:
            tool.input_sent = True
            chunks += [
                *self._start(),
                *self._close_text(),
                {"type": "tool-input-available", "toolCallId": call_id, "toolName": name, "input": arguments},
            ]
        if status == ProcessingStatus.AWAITING_APPROVAL and not tool.approval_sent:
            tool.approval_sent = True
            # The approval's id is the step's row: answer it with POST models/message/<id>/approve/.
            chunks.append({"type": "tool-approval-request", "approvalId": step_id, "toolCallId": call_id})
        return chunks

    def _tool_result(
        self, call_id: str, name: str, status: str, result: Any, error: Any, arguments: Any
    ) -> list[Chunk]:
        if status not in (ProcessingStatus.COMPLETED, ProcessingStatus.FAILED, ProcessingStatus.CANCELLED):
            return []
        tool = self._tool(call_id)
        if tool.ended:
            return []
        chunks: list[Chunk] = []
        if not tool.input_sent:
            # The client must know the call before its output.
            tool.input_sent = True
            chunks += [
                *self._start(),
                *self._close_text(),
                {"type": "tool-input-available", "toolCallId": call_id, "toolName": name, "input": arguments or {}},
            ]
        tool.ended = True
        if status == ProcessingStatus.COMPLETED:
            chunks.append({"type": "tool-output-available", "toolCallId": call_id, "output": result})
            return chunks
        code = error.get("code") if isinstance(error, dict) else None
        if code in (ErrorCode.TOOL_REJECTED, ErrorCode.APPROVAL_EXPIRED):
            chunks.append({"type": "tool-output-denied", "toolCallId": call_id})
            return chunks
        message = error.get("message") if isinstance(error, dict) else None
        text = str(message or ("The tool call was cancelled." if status == ProcessingStatus.CANCELLED else "failed"))
        chunks.append({"type": "tool-output-error", "toolCallId": call_id, "errorText": text})
        return chunks

    # Rows --------------------------------------------------------------------------------

    def apply_snapshot(self, snapshot: ReplySnapshot) -> list[Chunk]:
        """The chunks the saved reply adds to what was sent: new text up to each step or widget
        (by its ``text_offset``), the step or widget, then the rest of the text."""
        if self.finished:
            return []
        self.needs_rows = False
        if snapshot.agent_id is not None:
            self.agent_id = snapshot.agent_id
        if snapshot.user_status != ProcessingStatus.PENDING:
            self.started = True
        chunks: list[Chunk] = []
        # A row that no longer starts with what was sent (the agent returned another text than
        # it streamed) cannot be taken back: only what extends it is sent.
        text = snapshot.text if snapshot.text.startswith(self.text) else self.text
        for part in snapshot.parts:
            if part.text_offset is not None and part.text_offset > self.text_units:
                chunks += self._append_text(
                    _utf16_head(utf16_tail(text, self.text_units), part.text_offset - self.text_units)
                )
            if isinstance(part, WidgetRow):
                chunks += self._widget(
                    widget_data(part.widget_id, part.message_id, part.widget_type, part.data, part.display_data)
                )
            else:
                chunks += self._tool_input(part.call_id, part.name, part.arguments, part.status, part.message_id)
                chunks += self._tool_result(
                    part.call_id, part.name, part.status, part.result, part.error, part.arguments
                )
        chunks += self._append_text(utf16_tail(text, self.text_units))
        held, self._held_text = sorted(self._held_text), []
        for offset, piece in held:
            chunks += self._text_chunk({"offset": offset, "text": piece})
        if snapshot.user_status in _ENDED:
            self.ended_status = snapshot.user_status
        return chunks

    def finish(self, final: ReplySnapshot) -> list[Chunk]:
        """The last chunks, once the user message ended: what the final rows add, an ``error``
        for a failed turn (its notice's text), and ``finish``."""
        self._held_text = []  # the final row is the whole text
        chunks = self.apply_snapshot(final)
        status = final.user_status
        chunks += self._start()
        chunks += self._close_text()
        if status == ProcessingStatus.FAILED:
            chunks.append({"type": "error", "errorText": final.notice or "The agent could not answer."})
        elif status == ProcessingStatus.CANCELLED:
            chunks.append({"type": "abort", "reason": "cancelled"})
        chunks.append({"type": "finish", "finishReason": _FINISH_REASONS.get(ProcessingStatus(status), "other")})
        self.finished = True
        return chunks


def _utf16_head(text: str, units: int) -> str:
    """The first ``units`` UTF-16 code units of ``text``."""
    if text.isascii():
        return text[:units]
    return text.encode("utf-16-le")[: 2 * units].decode("utf-16-le", errors="replace")
