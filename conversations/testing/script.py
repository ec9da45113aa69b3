"""What a test scripts for a fake model (:class:`FakeToolCall`, :class:`FakeReply`) and what the
code under test sent it (:class:`FakeRequest`), with the reading of both."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..tools import tool_schema


class FakeModelError(AssertionError):
    """The test's script and the code under test disagree (no reply left, a tool not offered...)."""


@dataclass
class FakeToolCall:
    """A tool call the fake model makes: ``FakeToolCall("search", {"query": "shoes"})``.

    ``arguments`` may be a dict (sent as JSON) or a string sent as is (to test bad JSON).
    """

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class FakeReply:
    """One scripted reply: text (a string, or its exact chunks) and/or tool calls.

    ``usage`` replaces the estimated token counts; ``finish_reason`` replaces the default
    (``"tool_calls"`` when there are tool calls, else ``"stop"``).
    """

    text: str | list[str] = ""
    tool_calls: list[FakeToolCall] = field(default_factory=list)
    usage: dict[str, int] | None = None
    finish_reason: str | None = None


Script = str | list[str] | FakeToolCall | FakeReply | BaseException | Callable[["FakeRequest"], Any]


@dataclass
class FakeRequest:
    """What the code under test sent: for assertions."""

    model: str | None
    messages: list[Any]
    tools: list[dict[str, Any]] | None
    stream: bool
    kwargs: dict[str, Any]

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools or []]

    @property
    def last_user_message(self) -> str | None:
        for message in reversed(self.messages):
            if message_field(message, "role") == "user":
                return message_text(message_field(message, "content"))
        return None


def message_field(message: Any, key: str) -> Any:
    return message.get(key) if isinstance(message, dict) else getattr(message, key, None)


def message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def as_reply(reply: Any) -> FakeReply:
    if isinstance(reply, FakeReply):
        return reply
    if isinstance(reply, FakeToolCall):
        return FakeReply(tool_calls=[reply])
    if isinstance(reply, str):
        return FakeReply(text=reply)
    if isinstance(reply, list) and all(isinstance(p, str) for p in reply):
        return FakeReply(text=reply)
    if isinstance(reply, list) and all(isinstance(p, FakeToolCall) for p in reply):
        return FakeReply(tool_calls=reply)
    raise FakeModelError(
        f"A scripted reply must be a str, a list of str chunks, a FakeToolCall (or a list of them), "
        f"a FakeReply, an exception or a callable; got {reply!r}."
    )


def tool_definitions(tools: Any) -> list[dict[str, Any]] | None:
    """Tools as JSON-schema dicts; functions are described with ``tool_schema`` (a real provider
    needs the dicts: pass ``tool_schemas(funcs)`` to it)."""
    if tools is None:
        return None
    definitions = []
    for tool in tools:
        if isinstance(tool, dict):
            if (
                tool.get("type") != "function"
                or not isinstance(tool.get("function"), dict)
                or not tool["function"].get("name")
            ):
                raise ValueError(
                    f"A tool definition must look like {{'type': 'function', 'function': {{'name': ..., "
                    f"'parameters': {{...}}}}}}; got {tool!r}."
                )
            definitions.append(copy.deepcopy(tool))
        elif callable(tool):
            definitions.append(tool_schema(tool))
        else:
            raise ValueError(f"A tool must be a tool definition dict or a function, not {tool!r}.")
    return definitions
