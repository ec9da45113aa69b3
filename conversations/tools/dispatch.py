"""Running the tool a model asked for: its arguments read, validated against the tool's
parameters (:mod:`.schema`), and the tool called, sync or async."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from pydantic import ValidationError

from .. import telemetry
from ..conf import ai_settings
from .calls import ToolCall
from .errors import ToolCallError
from .schema import named_tools, spec_of

__all__ = [
    "PreparedToolCall",
    "adispatch_tool_call",
    "dispatch_tool_call",
    "prepare_tool_call",
    "tool_span_attributes",
]

_P = inspect.Parameter


@dataclass(frozen=True)
class _Request:
    name: str
    arguments: dict[str, Any]
    call_id: str | None


def _read_call(call: Any, arguments: Any, call_id: str | None) -> _Request:
    """Accept a name plus arguments, or a tool call as the model returned it (object or dict)."""
    name: Any
    if isinstance(call, str):
        name = call
    else:
        if arguments is not None:
            raise TypeError("Pass either a tool call object, or a tool name with arguments, not both.")
        if isinstance(call, Mapping):
            function = call.get("function", call)
            call_id = call_id or call.get("id")
            name = function.get("name") if isinstance(function, Mapping) else getattr(function, "name", None)
            arguments = (
                function.get("arguments") if isinstance(function, Mapping) else getattr(function, "arguments", None)
            )
        else:
            function = getattr(call, "function", call)
            call_id = call_id or getattr(call, "id", None)
            name = getattr(function, "name", None)
            arguments = getattr(function, "arguments", None)
        if not isinstance(name, str) or not name:
            raise ToolCallError("The tool call has no function name.", call_id=call_id)
    return _Request(name=name, arguments=_parse_arguments(name, arguments, call_id), call_id=call_id)


def _parse_arguments(name: str, arguments: Any, call_id: str | None) -> dict[str, Any]:
    if arguments is None:
        return {}
    if isinstance(arguments, (bytes, bytearray)):
        arguments = arguments.decode("utf-8", errors="replace")
    if isinstance(arguments, str):
        if not arguments.strip():
            return {}
        try:
            arguments = json.loads(arguments)
        except ValueError as exc:
            raise ToolCallError(
                f"The arguments for tool {name!r} are not valid JSON ({exc}). Send a JSON object.",
                code="invalid_tool_arguments",
                tool_name=name,
                call_id=call_id,
            ) from None
    if not isinstance(arguments, Mapping):
        raise ToolCallError(
            f"The arguments for tool {name!r} must be a JSON object, not {type(arguments).__name__}.",
            code="invalid_tool_arguments",
            tool_name=name,
            call_id=call_id,
        )
    return dict(arguments)


def _prepare(
    tools: Any, call: Any, arguments: Any, call_id: str | None
) -> tuple[Callable[..., Any], _Request, list[Any], dict[str, Any], dict[str, Any]]:
    request = _read_call(call, arguments, call_id)
    named = named_tools(tools)
    func = named.get(request.name)
    if func is None:
        known = ", ".join(sorted(named)) or "none"
        raise ToolCallError(
            f"There is no tool named {request.name!r} (available: {known}).",
            code="unknown_tool",
            tool_name=request.name,
            call_id=request.call_id,
        )
    spec = spec_of(func)
    try:
        validated = spec.model.model_validate(request.arguments)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or None, "message": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else str(e["message"]) for e in errors)
        raise ToolCallError(
            f"Invalid arguments for tool {request.name!r}: {summary}.",
            code="invalid_tool_arguments",
            field=errors[0]["field"] if errors else None,
            tool_name=request.name,
            call_id=request.call_id,
            errors=errors,
        ) from None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for param, internal, kind in spec.params:
        value = getattr(validated, internal)
        values[param] = value
        if kind == _P.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[param] = value
    return func, request, args, kwargs, values


@dataclass(frozen=True)
class PreparedToolCall:
    """A tool call read and validated but not run: from :func:`prepare_tool_call`.

    For loops that decide something between validation and the call (ask for approval, record the
    step): ``arguments`` are the validated visible arguments by parameter name, ``raw_arguments``
    what the model sent; ``call()`` runs the tool (a coroutine for an ``async def`` tool) and
    ``done(result)`` wraps its result as :func:`dispatch_tool_call` does.
    """

    name: str
    call_id: str | None
    func: Callable[..., Any]
    arguments: dict[str, Any]
    raw_arguments: dict[str, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @property
    def is_async(self) -> bool:
        return _is_async(self.func)

    def call(self) -> Any:
        return self.func(*self.args, **self.kwargs)

    def done(self, result: Any) -> ToolCall:
        return ToolCall(
            name=self.name, arguments=self.arguments, result=result, id=self.call_id, raw_arguments=self.raw_arguments
        )


def prepare_tool_call(
    tools: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]],
    call: Any,
    arguments: str | Mapping[str, Any] | None = None,
    *,
    call_id: str | None = None,
) -> PreparedToolCall:
    """Read and validate a tool call as :func:`dispatch_tool_call` does, without running it.

    Raises :class:`ToolCallError` for an unknown tool or bad arguments.
    """
    func, request, args, kwargs, values = _prepare(tools, call, arguments, call_id)
    return PreparedToolCall(
        name=request.name,
        call_id=request.call_id,
        func=func,
        arguments=values,
        raw_arguments=request.arguments,
        args=tuple(args),
        kwargs=kwargs,
    )


def dispatch_tool_call(
    tools: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]],
    call: Any,
    arguments: str | Mapping[str, Any] | None = None,
    *,
    call_id: str | None = None,
) -> ToolCall:
    """Run the tool the model asked for and return a :class:`ToolCall`.

    ``call`` is the tool's name (then ``arguments`` is the JSON string or dict the model sent) or
    a tool call as the model returned it (``response.choices[0].message.tool_calls[i]``, an object
    or a dict). Raises :class:`ToolCallError` for an unknown tool or bad arguments, before the tool
    runs; exceptions raised by the tool itself propagate unchanged. An ``async def`` tool is run to
    completion here; from async code use :func:`adispatch_tool_call`.
    """
    func, request, args, kwargs, values = _prepare(tools, call, arguments, call_id)
    if _is_async(func):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                f"Tool {request.name!r} is async and an event loop runs in this thread: "
                "use 'await adispatch_tool_call(...)'."
            )
    with telemetry.span(f"execute_tool {request.name}", _attributes(request.name, request.call_id, request.arguments)):
        result = async_to_sync(func)(*args, **kwargs) if _is_async(func) else func(*args, **kwargs)
    return ToolCall(
        name=request.name, arguments=values, result=result, id=request.call_id, raw_arguments=request.arguments
    )


async def adispatch_tool_call(
    tools: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]],
    call: Any,
    arguments: str | Mapping[str, Any] | None = None,
    *,
    call_id: str | None = None,
) -> ToolCall:
    """:func:`dispatch_tool_call` for async code (an ``async def get_response``).

    ``async def`` tools are awaited. Plain ``def`` tools run off the event loop: inside an agent's
    turn on the turn's own thread (which owns the database connection, so they may use the ORM),
    elsewhere through ``sync_to_async``.
    """
    func, request, args, kwargs, values = _prepare(tools, call, arguments, call_id)
    with telemetry.span(f"execute_tool {request.name}", _attributes(request.name, request.call_id, request.arguments)):
        if _is_async(func):
            result = await func(*args, **kwargs)
        else:
            result = await _run_sync(func, args, kwargs)
    return ToolCall(
        name=request.name, arguments=values, result=result, id=request.call_id, raw_arguments=request.arguments
    )


async def _run_sync(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    # Imported here: turns.state imports the models, and tools must import before the app registry
    # is ready (an agent module that declares its tools is imported while apps load).
    from ..turns.state import current_turn

    state = current_turn.get()
    if state is not None and threading.current_thread() is not state.owner_thread:
        loop = asyncio.get_running_loop()
        # The caller's context goes with the call (run_in_executor does not carry it): what the
        # tool does is within its execute_tool span, as a sync tool of the model loop is.
        context = contextvars.copy_context()
        return await loop.run_in_executor(None, state.call_db, lambda: context.run(func, *args, **kwargs))
    return await sync_to_async(func, thread_sensitive=True)(*args, **kwargs)


def tool_span_attributes(prepared: PreparedToolCall) -> dict[str, Any]:
    """The attributes of a tool call's span (``execute_tool <name>``): OpenTelemetry's GenAI
    names; the arguments the model sent (never values injected from the Context) only with
    ``TELEMETRY_TOOL_ARGUMENTS``."""
    return _attributes(prepared.name, prepared.call_id, prepared.raw_arguments)


def _attributes(name: str, call_id: str | None, raw_arguments: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.id": call_id,
    }
    if ai_settings.TELEMETRY_TOOL_ARGUMENTS:
        attributes["gen_ai.tool.call.arguments"] = json.dumps(raw_arguments, default=str, ensure_ascii=False)
    return attributes


def _is_async(func: Callable[..., Any]) -> bool:
    # An instance whose __call__ is async is an async tool too.
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)
