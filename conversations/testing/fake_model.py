"""A scripted stand-in for an LLM, shaped like litellm's (and OpenAI's) chat completion API.

::

    from django_ai.conversations.testing import FakeModel, FakeToolCall

    model = FakeModel(replies=[
        FakeToolCall("check_eligibility", {"product_id": "pro"}),
        "You can use the pro features.",
    ])
    with model.patch("litellm"):          # litellm.completion / acompletion now answer from the script
        result = ConversationService.send_message(session_id=..., message="Can I?")
    assert model.requests[0].tool_names == ["check_eligibility"]

Each request takes the next scripted reply. A reply is a ``str`` (streamed word by word, or in
``chunk_size`` characters), a list of strings (the exact chunks), a :class:`FakeToolCall`, a
:class:`FakeReply` (text and/or several tool calls, custom usage), an exception instance (raised
by the request) or a callable ``(request) -> reply`` for answers that depend on the messages.

Token usage is a deterministic estimate (one token per word or punctuation mark) reported as
``usage`` on responses and on the last streamed chunk, so tests can assert on it exactly.

The script's pieces are in ``testing/script.py``, the response objects in ``testing/responses.py``;
this module runs the script.
"""

from __future__ import annotations

import copy
import importlib
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from typing import Any
from unittest import mock

from .responses import (
    ChatCompletionDeltaToolCall,
    ChatCompletionMessageToolCall,
    Choices,
    Delta,
    FakeStream,
    Function,
    Message,
    ModelResponse,
    ModelResponseChunk,
    StreamingChoices,
    Usage,
)
from .script import (
    FakeModelError,
    FakeReply,
    FakeRequest,
    FakeToolCall,
    Script,
    as_reply,
    message_field,
    message_text,
    tool_definitions,
)

__all__ = [
    "FakeModel",
    "FakeModelError",
    "FakeReply",
    "FakeRequest",
    "FakeStream",
    "FakeToolCall",
    "count_tokens",
]

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_WORD_CHUNK_RE = re.compile(r"\s*\S+\s*")


def count_tokens(text: str) -> int:
    """The fake model's token estimate: one per word or punctuation mark."""
    return len(_TOKEN_RE.findall(text))


class FakeModel:
    """A scripted model with litellm's ``completion``/``acompletion`` shape.

    ``replies``: the script, one entry per request (see the module docstring). ``chunk_size``:
    stream strings in pieces of that many characters instead of word by word. ``chunk_delay``:
    seconds between streamed chunks (to test cancelling or timeouts). ``model``: the model name
    reported in responses when the request names none.
    """

    def __init__(
        self,
        *,
        replies: Iterable[Script] = (),
        chunk_size: int | None = None,
        chunk_delay: float = 0.0,
        model: str = "fake-model",
    ):
        if chunk_size is not None and chunk_size < 1:
            raise ValueError("chunk_size must be a positive number of characters.")
        self._script: list[Script] = list(replies)
        self.chunk_size = chunk_size
        self.chunk_delay = chunk_delay
        self.model = model
        self.requests: list[FakeRequest] = []
        self.usage = Usage()
        self._lock = threading.Lock()
        self._served = 0

    def add_replies(self, *replies: Script) -> FakeModel:
        """Append replies to the script."""
        with self._lock:
            self._script.extend(replies)
        return self

    @property
    def remaining(self) -> int:
        """Scripted replies not used yet."""
        return len(self._script) - self._served

    @property
    def last_request(self) -> FakeRequest:
        if not self.requests:
            raise FakeModelError("The fake model received no request.")
        return self.requests[-1]

    def completion(
        self,
        model: str | None = None,
        messages: list[Any] | None = None,
        stream: bool = False,
        tools: list[Any] | None = None,
        **kwargs: Any,
    ) -> ModelResponse | FakeStream:
        """Answer like ``litellm.completion``: a response, or with ``stream=True`` a chunk iterator."""
        request, reply, number = self._take(model, messages, stream, tools, kwargs)
        return self._respond(request, reply, number)

    async def acompletion(
        self,
        model: str | None = None,
        messages: list[Any] | None = None,
        stream: bool = False,
        tools: list[Any] | None = None,
        **kwargs: Any,
    ) -> ModelResponse | FakeStream:
        """Answer like ``litellm.acompletion``; with ``stream=True`` iterate with ``async for``."""
        request, reply, number = self._take(model, messages, stream, tools, kwargs)
        return self._respond(request, reply, number)

    @contextmanager
    def patch(self, target: str = "litellm") -> Iterator[FakeModel]:
        """Make ``<target>.completion`` and ``<target>.acompletion`` this model's, inside the block.

        ``target`` is a module: ``"litellm"`` for code that calls ``litellm.completion(...)``, or
        the module of your agents for code that did ``from litellm import completion``.
        """
        module = importlib.import_module(target)
        names = [n for n in ("completion", "acompletion") if hasattr(module, n)]
        if not names:
            raise AttributeError(f"{target} has neither completion nor acompletion to replace.")
        with ExitStack() as stack:
            for name in names:
                stack.enter_context(mock.patch.object(module, name, getattr(self, name)))
            yield self

    def _take(
        self, model: str | None, messages: Any, stream: bool, tools: Any, kwargs: dict[str, Any]
    ) -> tuple[FakeRequest, Script, int]:
        if messages is None or not isinstance(messages, list) or not messages:
            raise ValueError("completion() needs messages=[{'role': 'user', 'content': '...'}, ...].")
        request = FakeRequest(
            model=model,
            messages=copy.deepcopy(messages),
            tools=tool_definitions(tools),
            stream=bool(stream),
            kwargs=dict(kwargs),
        )
        with self._lock:
            self.requests.append(request)
            number = self._served
            if number >= len(self._script):
                raise FakeModelError(
                    f"The fake model ran out of replies: request {number + 1} arrived but the script has "
                    f"{len(self._script)}. Its last user message: {request.last_user_message!r}."
                )
            self._served += 1
            reply = self._script[number]
        return request, reply, number

    def _respond(self, request: FakeRequest, reply: Any, number: int) -> ModelResponse | FakeStream:
        if callable(reply) and not isinstance(reply, (FakeToolCall, FakeReply, BaseException)):
            reply = reply(request)
        if isinstance(reply, BaseException):
            raise reply
        reply = as_reply(reply)
        offered = set(request.tool_names)
        for call in reply.tool_calls:
            if call.name not in offered:
                raise FakeModelError(
                    f"The script calls tool {call.name!r}, but the request offered "
                    f"{sorted(offered) if offered else 'no tools'}."
                )
        pieces = self._pieces(reply.text)
        text = "".join(pieces)
        prompt = sum(count_tokens(message_text(message_field(m, "content"))) for m in request.messages)
        completion = count_tokens(text) + sum(count_tokens(c.name + " " + c.arguments_json) for c in reply.tool_calls)
        usage = Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
        if reply.usage:
            usage = Usage(**{**asdict(usage), **reply.usage})
            if "total_tokens" not in reply.usage:
                usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
        with self._lock:
            self.usage.prompt_tokens += usage.prompt_tokens
            self.usage.completion_tokens += usage.completion_tokens
            self.usage.total_tokens += usage.total_tokens
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        response_id = f"fakecmpl-{number + 1}"
        model_name = request.model or self.model
        created = int(time.time())
        calls = [
            ChatCompletionMessageToolCall(
                id=c.id or f"call_{number + 1}_{i}", function=Function(c.name, c.arguments_json)
            )
            for i, c in enumerate(reply.tool_calls)
        ]
        if not request.stream:
            message = Message(content=text if (text or not calls) else None, tool_calls=calls or None)
            return ModelResponse(
                id=response_id,
                model=model_name,
                created=created,
                choices=[Choices(message=message, finish_reason=finish)],
                usage=usage,
            )
        deltas: list[Delta] = [Delta(content=p) for p in pieces]
        for i, call in enumerate(calls):
            deltas.append(
                Delta(
                    tool_calls=[
                        ChatCompletionDeltaToolCall(
                            index=i,
                            id=call.id,
                            type="function",
                            function=Function(name=call.function.name, arguments=""),
                        )
                    ]
                )
            )
            for part in self._argument_pieces(call.function.arguments or ""):
                deltas.append(
                    Delta(tool_calls=[ChatCompletionDeltaToolCall(index=i, function=Function(arguments=part))])
                )
        if deltas:
            deltas[0].role = "assistant"
        chunks = [
            ModelResponseChunk(id=response_id, model=model_name, created=created, choices=[StreamingChoices(delta=d)])
            for d in deltas
        ]
        chunks.append(
            ModelResponseChunk(
                id=response_id,
                model=model_name,
                created=created,
                choices=[StreamingChoices(delta=Delta(role=None if deltas else "assistant"), finish_reason=finish)],
                usage=usage,
            )
        )
        if (request.kwargs.get("stream_options") or {}).get("include_usage"):
            # OpenAI sends usage in one more chunk without choices when asked to.
            chunks.append(
                ModelResponseChunk(id=response_id, model=model_name, created=created, choices=[], usage=usage)
            )
        return FakeStream(chunks, delay=self.chunk_delay)

    def _pieces(self, text: str | list[str]) -> list[str]:
        if isinstance(text, list):
            return [str(p) for p in text if p]
        if not text:
            return []
        if self.chunk_size:
            return [text[i : i + self.chunk_size] for i in range(0, len(text), self.chunk_size)]
        return _WORD_CHUNK_RE.findall(text)

    def _argument_pieces(self, arguments: str) -> list[str]:
        size = self.chunk_size or 8
        return [arguments[i : i + size] for i in range(0, len(arguments), size)] or []
