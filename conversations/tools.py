"""Tool schemas for LLM function calling, and dispatch of the model's tool calls.

::

    tools = [self.check_eligibility, self.search_products]
    response = litellm.completion(model=..., messages=messages, tools=tool_schemas(tools))
    for call in response.choices[0].message.tool_calls or []:
        try:
            done = dispatch_tool_call(tools, call)
        except ToolCallError as exc:
            messages.append(exc.as_message())  # tell the model what was wrong; it may retry
        else:
            messages.append(done.as_message())

The schema is built from what a caller sees: for ``@with_context()`` methods the injected
parameters are not in it, and a model that sends them anyway gets ``invalid_tool_arguments``.
Parameter types come from the annotations (``Optional``, ``list[str]``, ``Literal``, pydantic
models, ``Annotated[..., Field(description=...)]``), the description from the docstring's first
paragraph, and parameter descriptions from its "Args:" (Google), NumPy or Sphinx entries.
Arguments are validated with pydantic before the tool runs, so the tool receives typed values
(a pydantic model parameter receives a model instance).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
import typing
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.json_schema import GenerateJsonSchema

from .exceptions import ConversationError

__all__ = [
    "ToolCall",
    "ToolCallCollector",
    "ToolCallError",
    "ToolDefinitionError",
    "adispatch_tool_call",
    "dispatch_tool_call",
    "tool_schema",
    "tool_schemas",
]

_P = inspect.Parameter
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolDefinitionError(ConversationError, TypeError):
    """A function cannot be offered as a tool (bad name, ``*args``, unresolvable annotation...)."""

    status_code = 500
    default_code = "invalid_tool_definition"
    default_detail = "This function cannot be used as a tool."


class ToolCallError(ConversationError, ValueError):
    """A tool call from the model cannot be run: the model's mistake, worth telling it.

    ``code`` is ``unknown_tool`` (no tool of that name), ``invalid_tool_arguments`` (not JSON, not
    an object, or not valid for the parameters; ``errors`` lists each problem) or
    ``invalid_tool_call`` (the call has no name). :meth:`as_message` turns it into the ``tool``
    message to send back so the model can correct itself.
    """

    default_code = "invalid_tool_call"
    default_detail = "The tool call is not valid."

    def __init__(
        self,
        message: str | None = None,
        *,
        tool_name: str | None = None,
        call_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ):
        self.tool_name = tool_name
        self.call_id = call_id
        self.errors = errors or []
        super().__init__(message, **kwargs)

    def as_message(self) -> dict[str, Any]:
        """The ``{"role": "tool", ...}`` message reporting this error to the model."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            error["errors"] = self.errors
        message: dict[str, Any] = {"role": "tool", "tool_call_id": self.call_id, "content": json.dumps({"error": error})}
        if self.tool_name:
            message["name"] = self.tool_name
        return message


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


class _NoTitles(GenerateJsonSchema):
    # "title": "Product Id" next to every property only costs tokens; descriptions carry meaning.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


@dataclass(frozen=True)
class _Spec:
    name: str
    description: str
    model: type[BaseModel]
    # (parameter name, internal field name, kind) in signature order
    params: tuple[tuple[str, str, Any], ...]
    parameters_schema: dict[str, Any]


_specs: weakref.WeakKeyDictionary[Any, _Spec] = weakref.WeakKeyDictionary()
_bound_specs: weakref.WeakKeyDictionary[Any, _Spec] = weakref.WeakKeyDictionary()
_specs_lock = threading.Lock()


def _spec(func: Callable[..., Any]) -> _Spec:
    if isinstance(func, (staticmethod, classmethod)):
        func = func.__func__
    bound = inspect.ismethod(func)
    cache, key = (_bound_specs, func.__func__) if bound else (_specs, func)
    try:
        found = cache.get(key)
    except TypeError:  # not weak-referenceable: build every time
        return _build_spec(func)
    if found is None:
        found = _build_spec(func)
        with _specs_lock:
            cache[key] = found
    return found


def _build_spec(func: Callable[..., Any]) -> _Spec:
    if not callable(func):
        raise ToolDefinitionError(f"A tool must be a function or method, not {func!r}.")
    name = getattr(func, "__name__", None) or ""
    label = getattr(func, "__qualname__", name) or repr(func)
    if not NAME_RE.match(name):
        raise ToolDefinitionError(
            f"{label!r} cannot be a tool: its name must be 1-64 letters, digits, '_' or '-' "
            "(model providers reject other names). Wrap it in a def with such a name."
        )
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ToolDefinitionError(f"{label} cannot be a tool: its signature cannot be read ({exc}).") from exc
    params = list(sig.parameters.values())
    if inspect.isfunction(func) and params and params[0].name in ("self", "cls"):
        raise ToolDefinitionError(
            f"{label} takes {params[0].name}: pass the bound method (self.{name}) as the tool, "
            f"not the function from the class."
        )
    hints = _type_hints(func, label)
    doc = inspect.getdoc(func) or ""
    param_docs = _param_docs(doc)
    fields: dict[str, Any] = {}
    layout: list[tuple[str, str, Any]] = []
    for index, p in enumerate(params):
        if p.kind == _P.VAR_POSITIONAL:
            raise ToolDefinitionError(
                f"{label} cannot be a tool: *{p.name} cannot be described to a model. Use a "
                f"list parameter ({p.name}: list[...]) instead."
            )
        if p.kind == _P.VAR_KEYWORD:
            continue  # the model sends only the declared parameters
        annotation = hints.get(p.name, p.annotation)
        if annotation is _P.empty or isinstance(annotation, str):
            annotation = Any
        internal = f"p{index}"
        extra: dict[str, Any] = {"alias": p.name}
        if p.name in param_docs:
            extra["description"] = param_docs[p.name]
        # Our Field first: the parameter's own Annotated[..., Field(...)] metadata overrides it.
        if typing.get_origin(annotation) is Annotated:
            base, *metadata = typing.get_args(annotation)
        else:
            base, metadata = annotation, []
        annotated = Annotated[(base, Field(**extra), *metadata)]  # type: ignore[valid-type]
        default = ... if p.default is _P.empty else p.default
        fields[internal] = (annotated, default)
        layout.append((p.name, internal, p.kind))
    try:
        model = create_model(  # type: ignore[call-overload]
            f"{name}_arguments",
            __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False),
            **fields,
        )
        schema = model.model_json_schema(schema_generator=_NoTitles)
    except (TypeError, ValueError, pydantic_core.SchemaError) as exc:
        raise ToolDefinitionError(f"{label} cannot be a tool: its parameters have no JSON schema ({exc}).") from exc
    except Exception as exc:  # pydantic's PydanticSchemaGenerationError and friends
        if type(exc).__module__.startswith("pydantic"):
            raise ToolDefinitionError(f"{label} cannot be a tool: {exc}") from exc
        raise
    schema.pop("title", None)
    schema["additionalProperties"] = False
    schema.setdefault("properties", {})
    return _Spec(
        name=name,
        description=_description(doc),
        model=model,
        params=tuple(layout),
        parameters_schema=schema,
    )


def _type_hints(func: Callable[..., Any], label: str) -> dict[str, Any]:
    target = getattr(func, "__func__", func)
    try:
        return typing.get_type_hints(target, include_extras=True)
    except NameError as exc:
        raise ToolDefinitionError(
            f"{label} cannot be a tool: an annotation names something that is not defined at module "
            f"level ({exc}). Import it in the module (not only under TYPE_CHECKING)."
        ) from exc
    except TypeError:
        return {}


def _description(doc: str) -> str:
    paragraph = []
    for line in doc.splitlines():
        if not line.strip():
            if paragraph:
                break
            continue
        if _is_section_header(line):
            break
        paragraph.append(line.strip())
    return " ".join(paragraph)


_GOOGLE_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments)\s*:\s*$")
_ANY_GOOGLE_HEADER = re.compile(r"^\s*[A-Z][A-Za-z ]{1,30}:\s*$")
_SPHINX_PARAM = re.compile(r"^\s*:(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?\*{0,2}(\w+)\s*:\s*(.*)$")


def _is_section_header(line: str) -> bool:
    return bool(_ANY_GOOGLE_HEADER.match(line) or line.strip().startswith(":"))


def _param_docs(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google "Args:", a NumPy "Parameters" or Sphinx ":param:" docstring."""
    lines = doc.splitlines()
    docs: dict[str, list[str]] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if _GOOGLE_HEADER.match(line):
            header_indent = _indent(line)
            entry_indent: int | None = None
            current: str | None = None
            i += 1
            while i < len(lines):
                text = lines[i]
                if text.strip():
                    ind = _indent(text)
                    if ind <= header_indent:
                        break
                    if entry_indent is None:
                        entry_indent = ind
                    if ind == entry_indent:
                        m = re.match(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", text.strip())
                        current = m.group(1) if m else None
                        if current:
                            docs[current] = [m.group(2)] if m.group(2) else []
                    elif current:
                        docs[current].append(text.strip())
                i += 1
            continue
        if line.strip() in ("Parameters", "Other Parameters") and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            header_indent = _indent(line)
            current = None
            i += 2
            while i < len(lines):
                text = lines[i]
                if text.strip():
                    ind = _indent(text)
                    if ind < header_indent or (
                        ind == header_indent and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}
                    ):
                        break
                    if ind == header_indent:
                        current = re.split(r"\s*:", text.strip().lstrip("*"), maxsplit=1)[0].strip()
                        docs[current] = []
                    elif current:
                        docs[current].append(text.strip())
                i += 1
            continue
        m = _SPHINX_PARAM.match(line)
        if m:
            name, first = m.group(1), m.group(2)
            docs[name] = [first] if first else []
            ind = _indent(line)
            i += 1
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) > ind and not lines[i].strip().startswith(":"):
                docs[name].append(lines[i].strip())
                i += 1
            continue
        i += 1
    return {k: " ".join(v) for k, v in docs.items() if v}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def tool_schema(func: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> dict[str, Any]:
    """The OpenAI-style tool definition of ``func`` (a function or a bound method).

    ``{"type": "function", "function": {"name", "description", "parameters"}}`` where
    ``parameters`` is a JSON Schema object. ``name``/``description`` override what is read from
    the function (the name must still be 1-64 letters, digits, '_' or '-').
    """
    spec = _spec(func)
    tool_name = spec.name if name is None else name
    if not NAME_RE.match(tool_name):
        raise ToolDefinitionError(f"Tool name {tool_name!r} must be 1-64 letters, digits, '_' or '-'.")
    text = spec.description if description is None else description
    function: dict[str, Any] = {"name": tool_name}
    if text:
        function["description"] = text
    function["parameters"] = json.loads(json.dumps(spec.parameters_schema))  # a copy callers may edit
    return {"type": "function", "function": function}


def tool_schemas(funcs: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]]) -> list[dict[str, Any]]:
    """Tool definitions for several functions (the ``tools=`` of a chat completion call).

    A mapping ``{name: func}`` offers each function under its key.
    """
    return [tool_schema(func, name=tool_name) for tool_name, func in _named(funcs).items()]


def _named(funcs: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    if isinstance(funcs, Mapping):
        return dict(funcs)
    if callable(funcs):
        raise ToolDefinitionError("Pass a list of tools, e.g. [self.check_eligibility], not a single function.")
    named: dict[str, Callable[..., Any]] = {}
    for func in funcs:
        tool_name = _spec(func).name
        if tool_name in named and named[tool_name] is not func:
            raise ToolDefinitionError(
                f"Two tools are named {tool_name!r}; give one another name with a mapping {{name: func}}."
            )
        named[tool_name] = func
    return named


@dataclass(frozen=True)
class _Request:
    name: str
    arguments: dict[str, Any]
    call_id: str | None


def _read_call(call: Any, arguments: Any, call_id: str | None) -> _Request:
    """Accept a name plus arguments, or a tool call as the model returned it (object or dict)."""
    if isinstance(call, str):
        name = call
    else:
        if arguments is not None:
            raise TypeError("Pass either a tool call object, or a tool name with arguments, not both.")
        if isinstance(call, Mapping):
            function = call.get("function", call)
            call_id = call_id or call.get("id")
            name = function.get("name") if isinstance(function, Mapping) else getattr(function, "name", None)
            arguments = function.get("arguments") if isinstance(function, Mapping) else getattr(function, "arguments", None)
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


def _prepare(tools: Any, call: Any, arguments: Any, call_id: str | None) -> tuple[Callable[..., Any], _Request, list[Any], dict[str, Any], dict[str, Any]]:
    request = _read_call(call, arguments, call_id)
    named = _named(tools)
    func = named.get(request.name)
    if func is None:
        known = ", ".join(sorted(named)) or "none"
        raise ToolCallError(
            f"There is no tool named {request.name!r} (available: {known}).",
            code="unknown_tool",
            tool_name=request.name,
            call_id=request.call_id,
        )
    spec = _spec(func)
    try:
        validated = spec.model.model_validate(request.arguments)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or None, "message": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
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
        from asgiref.sync import async_to_sync

        result = async_to_sync(func)(*args, **kwargs)
    else:
        result = func(*args, **kwargs)
    return ToolCall(name=request.name, arguments=values, result=result, id=request.call_id, raw_arguments=request.arguments)


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
    if _is_async(func):
        result = await func(*args, **kwargs)
    else:
        result = await _run_sync(func, args, kwargs)
    return ToolCall(name=request.name, arguments=values, result=result, id=request.call_id, raw_arguments=request.arguments)


async def _run_sync(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    from .turns.state import current_turn

    state = current_turn.get()
    if state is not None and threading.current_thread() is not state.owner_thread:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, state.call_db, lambda: func(*args, **kwargs))
    from asgiref.sync import sync_to_async

    return await sync_to_async(func, thread_sensitive=True)(*args, **kwargs)


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None))
