"""What a tool call gives back (:class:`ToolCall`), and tool calls assembled from a streamed reply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic_core

__all__ = ["ToolCall", "ToolCallCollector"]


@dataclass
class ToolCall:
    """A tool call that ran: what the model asked for and what the tool returned."""

    name: str
    arguments: dict[str, Any]
    result: Any
    id: str | None = None
    #: The arguments exactly as the model sent them (parsed JSON).
    raw_arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> str:
        """The result as text for the model: a str as is, anything else as JSON."""
        if isinstance(self.result, str):
            return self.result
        try:
            return pydantic_core.to_json(self.result).decode()
        except pydantic_core.PydanticSerializationError as exc:
            raise TypeError(
                f"Tool {self.name!r} returned {type(self.result).__name__}, which cannot be sent to the "
                f"model as JSON ({exc}). Return a str, a dict/list of JSON values or a pydantic model."
            ) from exc

    def as_message(self) -> dict[str, Any]:
        """The ``{"role": "tool", "tool_call_id": ..., "content": ...}`` message for the model."""
        return {"role": "tool", "tool_call_id": self.id, "name": self.name, "content": self.content}


class ToolCallCollector:
    """Assemble the tool calls of a streamed reply from its chunks.

    A streamed reply sends each tool call in pieces (``delta.tool_calls``: the id and name first,
    then fragments of the JSON arguments, matched by ``index``)::

        collector = ToolCallCollector()
        for chunk in response:
            delta = chunk.choices[0].delta
            stream.write(delta.content or "")
            collector.add(delta)
        for call in collector.calls:
            dispatch_tool_call(tools, call)

    ``calls`` are dicts in the shape of an assistant message's ``tool_calls``, ready both for
    dispatch and for the ``{"role": "assistant", "tool_calls": collector.calls}`` history entry.
    """

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, delta: Any) -> None:
        """Take the ``tool_calls`` of one chunk's delta (an object or a dict); others are ignored."""
        parts = delta.get("tool_calls") if isinstance(delta, Mapping) else getattr(delta, "tool_calls", None)
        for part in parts or ():
            get = part.get if isinstance(part, Mapping) else lambda key, p=part: getattr(p, key, None)
            index = get("index")
            if index is None:
                index = len(self._calls)
            call = self._calls.setdefault(
                int(index), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if get("id"):
                call["id"] = get("id")
            function = get("function")
            if function is not None:
                fget = function.get if isinstance(function, Mapping) else lambda key, f=function: getattr(f, key, None)
                if fget("name"):
                    call["function"]["name"] += fget("name")
                if fget("arguments"):
                    call["function"]["arguments"] += fget("arguments")

    @property
    def calls(self) -> list[dict[str, Any]]:
        return [self._calls[i] for i in sorted(self._calls)]

    def __bool__(self) -> bool:
        return bool(self._calls)

    def __len__(self) -> int:
        return len(self._calls)
