"""One model call of the loop: stream its text to the reply, collect its tool calls, report its
usage (:func:`stream_completion`); and the model a declaration names, resolved to an
``acompletion`` function (:func:`completion_function`)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .. import telemetry
from ..constants import EventName
from ..context import ResponseStream, report_usage
from ..realtime import publish
from ..tools.calls import ToolCallCollector
from ..turns.state import current_turn
from .steps import new_call_id

__all__ = ["CompletionResult", "completion_function", "stream_completion"]

Completion = Callable[..., Awaitable[Any]]


@dataclass
class CompletionResult:
    """What one streamed model call gave: its text, its tool calls (dicts shaped like an assistant
    message's ``tool_calls``, each with an ``id``), its finish reason and usage (as reported)."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    #: The model that answered, as the response names it (None when it does not).
    model: str | None = None

    def as_message(self) -> dict[str, Any]:
        """The ``{"role": "assistant", ...}`` message to append to the model's messages."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message


def completion_function(model: Any) -> tuple[str | None, Completion]:
    """The model name to send and the ``acompletion`` function to call, for a declaration's ``model``.

    A str is a litellm model name (``"gpt-4o-mini"``, ``"anthropic/claude-..."``): litellm's
    ``acompletion`` (looked up on each call, so ``FakeModel.patch("litellm")`` reaches it). An
    object with ``acompletion`` (a :class:`~django_ai.conversations.testing.FakeModel`) answers
    itself; a bare async function is called as ``acompletion``.
    """
    if isinstance(model, str):
        return model, _litellm(model).acompletion
    acompletion = getattr(model, "acompletion", None)
    if callable(acompletion):
        name = getattr(model, "model", None)
        return (name if isinstance(name, str) else None), acompletion
    if callable(model):
        return None, model
    raise ImproperlyConfigured(
        f"An LLM agent's model must be a litellm model name (str), an object with acompletion() such as "
        f"FakeModel(...), or an async completion function; not {model!r}."
    )


def _litellm(model: str) -> ModuleType:
    try:
        # Here, not at the top: litellm is an optional extra, and importing it costs a second.
        import litellm
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"The model {model!r} is a litellm model name, but litellm is not installed: "
            "pip install 'django-ai-first[llm]' (or declare model = FakeModel(...) for tests)."
        ) from exc
    return litellm


@functools.lru_cache(maxsize=256)
def streams_usage(model: str) -> bool:
    """Whether litellm may ask this model's provider for usage in a stream (``stream_options``):
    OpenAI-style providers report streamed usage only when asked."""
    try:
        supported = _litellm(model).get_supported_openai_params(model=model)
    except Exception:  # noqa: BLE001 - an unknown model or provider: do not ask
        return False
    return bool(supported) and "stream_options" in supported


async def _chunks(response: Any) -> AsyncIterator[Any]:
    """The chunks of a streamed reply; a whole reply (an ``acompletion`` that does not stream) as
    one chunk, so any completion function fits the loop."""
    if hasattr(response, "__aiter__"):
        async for chunk in response:
            yield chunk
    elif _get(response, "choices") is not None:
        choices = _get(response, "choices") or [{}]
        message = _get(choices[0], "message") or {}
        delta = {"content": _get(message, "content"), "tool_calls": _get(message, "tool_calls")}
        yield {
            "choices": [{"delta": delta, "finish_reason": _get(choices[0], "finish_reason")}],
            "usage": _get(response, "usage"),
            "model": _get(response, "model"),
        }
    elif hasattr(response, "__iter__"):
        for chunk in response:
            yield chunk
    else:
        raise TypeError(
            f"The completion function returned {type(response).__name__}: expected a stream of chunks "
            "(as litellm.acompletion(..., stream=True) returns) or a chat completion response."
        )


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _usage_numbers(usage: Any) -> dict[str, Any]:
    if usage is None:
        return {}
    numbers = {}
    for key in ("prompt_tokens", "completion_tokens"):
        value = _get(usage, key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[key] = value
    return numbers


async def stream_completion(
    model: Any,
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    stream: ResponseStream | None = None,
    round: int = 0,
    **kwargs: Any,
) -> CompletionResult:
    """Call the model once, streaming: its text goes to ``stream`` (which opens with the first
    text, so tool calls made before any text show above the answer), its tool calls are
    collected, and its usage is added to the turn (``report_usage``, under the model's name).

    ``model`` is what :func:`completion_function` takes; ``tools`` are tool definitions
    (``tool_schemas(...)``); ``kwargs`` go to ``acompletion`` (``temperature``...); for a litellm
    model whose provider takes ``stream_options``, ``{"include_usage": True}`` is added unless
    ``kwargs`` say otherwise, so the stream reports its usage. Inside a turn,
    ``tool_call_start`` is sent when a call first shows in the stream (``round`` is its round),
    and the turn's cancel is checked between chunks (``TurnCancelled``).

    The call is the span ``chat <model>`` (OpenTelemetry's GenAI conventions: the model asked and
    the one that answered, the tokens, the finish reason; never the messages or the text).
    """
    name, acompletion = completion_function(model)
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": name, "django_ai.llm.round": round}
    with telemetry.span(f"chat {name}" if name else "chat", attributes) as span:
        result = await _stream_completion(name, acompletion, model, messages, tools, stream, round, kwargs)
        span.set(
            **{
                "gen_ai.response.model": result.model,
                "gen_ai.usage.input_tokens": result.usage.get("prompt_tokens"),
                "gen_ai.usage.output_tokens": result.usage.get("completion_tokens"),
                "gen_ai.response.finish_reasons": [result.finish_reason] if result.finish_reason else None,
                "django_ai.llm.tool_calls": len(result.tool_calls),
            }
        )
        return result


async def _stream_completion(
    name: str | None,
    acompletion: Completion,
    model: Any,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    stream: ResponseStream | None,
    round: int,
    kwargs: dict[str, Any],
) -> CompletionResult:
    state = current_turn.get()
    if state is not None:
        state.raise_if_cancelled()
    request: dict[str, Any] = {"model": name, "messages": messages, "stream": True, **kwargs}
    if isinstance(model, str) and "stream_options" not in kwargs and streams_usage(model):
        request["stream_options"] = {"include_usage": True}
    if tools:
        request["tools"] = tools
    response = await acompletion(**request)
    collector = ToolCallCollector()
    announced: set[int] = set()
    text: list[str] = []
    result = CompletionResult()
    usage: Any = None
    async for chunk in _chunks(response):
        if state is not None:
            state.raise_if_cancelled()
        usage = _get(chunk, "usage") or usage
        answered_by = _get(chunk, "model")
        result.model = answered_by if isinstance(answered_by, str) and answered_by else result.model
        choices = _get(chunk, "choices") or ()
        if not choices:
            continue
        choice = choices[0]
        result.finish_reason = _get(choice, "finish_reason") or result.finish_reason
        delta = _get(choice, "delta")
        if delta is None:
            continue
        content = _get(delta, "content")
        if content:
            text.append(content)
            if stream is not None:
                stream.write(content)
        if _get(delta, "tool_calls"):
            collector.add(delta)
            for index, call in enumerate(collector.calls):
                if index in announced or not call["function"]["name"]:
                    continue
                announced.add(index)
                call["id"] = call["id"] or new_call_id()
                if state is not None:
                    publish(
                        EventName.TOOL_CALL_START,
                        session_id=state.session.pk,
                        reply_to=state.user_message.pk,
                        call_id=call["id"],
                        name=call["function"]["name"],
                        round=round,
                        index=index,
                    )
    for call in collector.calls:
        call["id"] = call["id"] or new_call_id()
    result.text = "".join(text)
    result.tool_calls = collector.calls
    result.usage = _usage_numbers(usage)
    if state is not None and result.usage:
        report_usage(**result.usage, model=name)
    return result
