"""Tool schemas: the OpenAI-style definition of a function, built from its signature and docstring.

Parameter types come from the annotations through pydantic (a model of the parameters, built once
per function and kept in :func:`spec_of`'s cache), the descriptions from the docstring
(:mod:`..internal.docstrings`). :mod:`.dispatch` validates a model's arguments with the same model.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import typing
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import GenerateJsonSchema

from ..internal.docstrings import param_descriptions, summary
from .errors import ToolDefinitionError

__all__ = ["NAME_RE", "named_tools", "spec_of", "tool_schema", "tool_schemas"]

_P = inspect.Parameter
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class _NoTitles(GenerateJsonSchema):
    # "title": "Product Id" next to every property only costs tokens; descriptions carry meaning.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


@dataclass(frozen=True)
class ToolSpec:
    """What is known of a function offered as a tool: built once (:func:`spec_of`), used by the
    schema and by dispatch."""

    name: str
    description: str
    model: type[BaseModel]
    # (parameter name, internal field name, kind) in signature order
    params: tuple[tuple[str, str, Any], ...]
    parameters_schema: dict[str, Any]


_specs: weakref.WeakKeyDictionary[Any, ToolSpec] = weakref.WeakKeyDictionary()
_bound_specs: weakref.WeakKeyDictionary[Any, ToolSpec] = weakref.WeakKeyDictionary()
_specs_lock = threading.Lock()


def spec_of(func: Callable[..., Any]) -> ToolSpec:
    if isinstance(func, (staticmethod, classmethod)):
        func = func.__func__
    # A bound method, or what @with_context() gives for one (a BoundTool): cached by its function.
    bound = inspect.ismethod(func) or (hasattr(func, "__self__") and hasattr(func, "__func__"))
    cache, key = (_bound_specs, getattr(func, "__func__", func)) if bound else (_specs, func)
    try:
        found = cache.get(key)
    except TypeError:  # not weak-referenceable: build every time
        return _build_spec(func)
    if found is None:
        found = _build_spec(func)
        with _specs_lock:
            cache[key] = found
    return found


def _build_spec(func: Callable[..., Any]) -> ToolSpec:
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
    param_docs = param_descriptions(doc)
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
        model = create_model(
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
    return ToolSpec(
        name=name,
        description=summary(doc),
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


def tool_schema(func: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> dict[str, Any]:
    """The OpenAI-style tool definition of ``func`` (a function or a bound method).

    ``{"type": "function", "function": {"name", "description", "parameters"}}`` where
    ``parameters`` is a JSON Schema object. ``name``/``description`` override what is read from
    the function (the name must still be 1-64 letters, digits, '_' or '-').
    """
    spec = spec_of(func)
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
    return [tool_schema(func, name=tool_name) for tool_name, func in named_tools(funcs).items()]


def named_tools(
    funcs: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]],
) -> dict[str, Callable[..., Any]]:
    if isinstance(funcs, Mapping):
        return dict(funcs)
    if callable(funcs):
        raise ToolDefinitionError("Pass a list of tools, e.g. [self.check_eligibility], not a single function.")
    named: dict[str, Callable[..., Any]] = {}
    for func in funcs:
        tool_name = spec_of(func).name
        # Equal, not identical: two lookups of one method (self.search twice) are the same tool.
        if tool_name in named and named[tool_name] != func:
            raise ToolDefinitionError(
                f"Two tools are named {tool_name!r}; give one another name with a mapping {{name: func}}."
            )
        named[tool_name] = func
    return named
