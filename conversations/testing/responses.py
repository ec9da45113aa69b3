"""The objects a fake model answers with, shaped like litellm's (and OpenAI's) chat completion
responses and stream chunks: attribute access as on litellm's objects, plus ``model_dump()``,
``to_dict()`` and ``obj["key"]``, so code written against litellm reads them unchanged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any


class _Obj:
    """Attribute access like litellm's objects, plus ``model_dump()``/``to_dict()`` and ``obj["key"]``."""

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return _plain(self)

    to_dict = model_dump

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass
class Usage(_Obj):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass
class Function(_Obj):
    name: str | None = None
    arguments: str | None = None


@dataclass
class ChatCompletionMessageToolCall(_Obj):
    id: str
    function: Function
    type: str = "function"


@dataclass
class ChatCompletionDeltaToolCall(_Obj):
    index: int
    function: Function
    id: str | None = None
    type: str | None = None


@dataclass
class Message(_Obj):
    content: str | None
    role: str = "assistant"
    tool_calls: list[ChatCompletionMessageToolCall] | None = None

    def model_dump(self, **_: Any) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [_plain(c) for c in self.tool_calls]
        return data

    to_dict = model_dump


@dataclass
class Delta(_Obj):
    content: str | None = None
    role: str | None = None
    tool_calls: list[ChatCompletionDeltaToolCall] | None = None


@dataclass
class Choices(_Obj):
    message: Message
    index: int = 0
    finish_reason: str = "stop"


@dataclass
class StreamingChoices(_Obj):
    delta: Delta
    index: int = 0
    finish_reason: str | None = None


@dataclass
class ModelResponse(_Obj):
    id: str
    model: str
    created: int
    choices: list[Choices]
    usage: Usage
    object: str = "chat.completion"


@dataclass
class ModelResponseChunk(_Obj):
    id: str
    model: str
    created: int
    choices: list[StreamingChoices]
    usage: Usage | None = None
    object: str = "chat.completion.chunk"


class FakeStream:
    """A streamed reply: iterate it with ``for`` or ``async for``; ``usage`` is set on the last chunk."""

    def __init__(self, chunks: list[ModelResponseChunk], *, delay: float = 0.0):
        self._chunks = chunks
        self._delay = delay
        self.usage = chunks[-1].usage if chunks else None

    def __iter__(self) -> Iterator[ModelResponseChunk]:
        for i, chunk in enumerate(self._chunks):
            if self._delay and i:
                time.sleep(self._delay)
            yield chunk

    def __aiter__(self) -> AsyncIterator[ModelResponseChunk]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[ModelResponseChunk]:
        for i, chunk in enumerate(self._chunks):
            if self._delay and i:
                await asyncio.sleep(self._delay)
            yield chunk

    @property
    def chunks(self) -> list[ModelResponseChunk]:
        return list(self._chunks)
