"""Rebuild a streamed message from its row and its ``text_chunk`` events.

This is the reference implementation of the client algorithm in docs/protocol.md ("Resuming a
stream") — the TypeScript SDK implements the same steps — and a ready-made helper for Python
clients (a bot, a CLI, a test):

1. subscribe to the session channel and buffer ``text_chunk`` events;
2. read the agent message row: ``content`` and ``processing_status``;
3. feed both to a :class:`StreamAssembler` in any order. A chunk's ``offset`` says where its text
   starts in the message (UTF-16 code units, what JavaScript's ``String.length`` counts), so the
   assembler keeps what extends the known text, drops what it already has and holds chunks that
   start beyond it (a gap) until a fresher row fills the gap.

``needs_row`` turns true when a held chunk waits for text that neither the row nor any chunk has
given yet: read the row again (it is saved every ``STREAM_SAVE_INTERVAL`` seconds and at the end).
"""

from __future__ import annotations

from typing import Any

from ..constants import FINISHED_STATUSES
from .coalescer import utf16_len

__all__ = ["StreamAssembler"]


def _cut(text: str, units: int) -> str | None:
    """``text`` without its first ``units`` UTF-16 code units; None if that splits a character."""
    if text.isascii():
        return text[units:]
    raw = text.encode("utf-16-le")[2 * units :]
    try:
        return raw.decode("utf-16-le")
    except UnicodeDecodeError:
        return None


class StreamAssembler:
    """The text of one agent message, from its row plus its chunks (duplicates and reordering
    allowed)."""

    def __init__(self, message_id: Any):
        self.message_id = str(message_id)
        self.text = ""
        self.units = 0
        #: The sequence of the last write whose text (or its first part) is in :attr:`text`.
        self.sequence = 0
        self.finished = False
        self._held: dict[int, tuple[str, int]] = {}

    @property
    def needs_row(self) -> bool:
        """True while chunks are held for text that only a fresher row can give."""
        return bool(self._held) and not self.finished

    def apply_row(self, *, content: str, stream_sequence: int = 0, processing_status: str = "streaming") -> None:
        """Take the row's text when it is ahead of what the chunks gave."""
        if str(processing_status) in {str(s) for s in FINISHED_STATUSES}:
            # A finished row is the whole truth (the final text may differ from the streamed one).
            self.text, self.units, self.sequence, self.finished = content, utf16_len(content), stream_sequence, True
            self._held.clear()
            return
        units = utf16_len(content)
        if units > self.units:
            self.text, self.units = content, units
            self.sequence = max(self.sequence, stream_sequence)
        self._release()

    def apply_chunk(self, payload: dict[str, Any]) -> bool:
        """Apply one ``text_chunk`` payload; False when it is held (gap) or not for this message."""
        if str(payload.get("message_id")) != self.message_id or self.finished:
            return False
        text = payload.get("text") or ""
        sequence = int(payload.get("sequence") or 0)
        offset = payload.get("offset")
        if offset is None:
            # A sender without offsets (e.g. the Memory backend): one write per event, by sequence.
            if sequence <= self.sequence:
                return True
            if sequence != self.sequence + 1:
                return False
            self.text += text
            self.units += utf16_len(text)
            self.sequence = sequence
            return True
        self._held[int(offset)] = (text, sequence)
        self._release()
        return int(offset) not in self._held

    def _release(self) -> None:
        while True:
            progressed = False
            for offset in sorted(self._held):
                text, sequence = self._held[offset]
                end = offset + utf16_len(text)
                if offset > self.units:
                    break
                del self._held[offset]
                progressed = True
                if end <= self.units:
                    continue  # already known
                rest = _cut(text, self.units - offset)
                if rest is None:
                    continue
                self.text += rest
                self.units = end
                self.sequence = max(self.sequence, sequence)
            if not progressed:
                return
