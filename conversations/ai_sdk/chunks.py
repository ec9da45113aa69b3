"""The wire format of the AI SDK's UI message stream (protocol ``v1``): Server-Sent Events whose
``data:`` lines are JSON chunks (``{"type": "text-delta", ...}``), ended by ``data: [DONE]``.

Only what this app sends is here; the chunk types are those of the ``ai`` package's
``uiMessageChunkSchema`` (7.x), and docs/ai-sdk.md maps our events and rows onto them.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "DONE_FRAME",
    "HEARTBEAT_FRAME",
    "STREAM_HEADERS",
    "Chunk",
    "frame",
    "frames",
    "utf16_tail",
]

#: A chunk: a JSON object with a ``type``.
Chunk = dict[str, Any]

#: The headers of a UI message stream response besides its content type (what ``ai``'s
#: ``UI_MESSAGE_STREAM_HEADERS`` sets): the version header tells clients the body is this protocol.
STREAM_HEADERS = {
    "x-vercel-ai-ui-message-stream": "v1",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
CONTENT_TYPE = "text/event-stream; charset=utf-8"

#: The last frame of a stream.
DONE_FRAME = "data: [DONE]\n\n"
#: An SSE comment: clients skip it; it keeps proxies from closing an idle stream and lets a
#: threaded server notice a client that left (the write fails).
HEARTBEAT_FRAME = ": ping\n\n"


def frame(chunk: Chunk) -> str:
    """One chunk as a Server-Sent Event (one ``data:`` line: JSON never holds a raw newline)."""
    return f"data: {json.dumps(chunk, ensure_ascii=False, separators=(',', ':'))}\n\n"


def frames(chunks: list[Chunk]) -> str:
    return "".join(frame(chunk) for chunk in chunks)


def utf16_tail(text: str, units: int) -> str:
    """``text`` without its first ``units`` UTF-16 code units (our offsets count those, as
    JavaScript does); ``units`` falls on a character boundary, as every offset of a reply does."""
    if units <= 0:
        return text
    if text.isascii():
        return text[units:]
    return text.encode("utf-16-le")[2 * units :].decode("utf-16-le", errors="replace")
