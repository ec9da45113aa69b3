"""The extraction process's protocol: frames of a 4-byte big-endian length and JSON.

Requests go to the process's stdin, answers come from its stdout (isolated.py, process.py,
_child.py). Standard library only: the extraction process reads them before anything else.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

__all__ = ["read_frame", "write_frame"]

_FRAME = struct.Struct(">I")
_MAX_FRAME = 1 << 30


def write_frame(stream: IO[bytes], payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> dict[str, Any] | None:
    """The next frame, or None at the end of the stream."""
    head = _read_exactly(stream, _FRAME.size)
    if head is None:
        return None
    (size,) = _FRAME.unpack(head)
    if size > _MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes")
    body = _read_exactly(stream, size)
    return None if body is None else json.loads(body)


def _read_exactly(stream: IO[bytes], count: int) -> bytes | None:
    parts = []
    while count:
        chunk = stream.read(count)
        if not chunk:
            return None
        parts.append(chunk)
        count -= len(chunk)
    return b"".join(parts)
