"""``@with_context()``: fill a method's parameters from the agent's Context at call time.

::

    class SalesAgent(ConversationAgent):
        class Context(BaseModel):
            user_id: int
            account_tier: str

        @with_context()
        def check_eligibility(self, product_id: str, user_id: int, account_tier: str):
            ...

    self.check_eligibility(product_id="pro-features")  # user_id, account_tier come from self.context

Parameters whose names are fields of the class's ``Context`` are *context parameters*: their values
are read from ``self.context`` on every call (so they follow changes made during the turn), and they
are hidden from everything an LLM library reads: ``inspect.signature``, ``__annotations__`` and the
"Args:" entries of the docstring. The model only ever sees (and can only ever supply) the others.

Decisions recorded here:

- A caller may not pass a context parameter: doing so raises :class:`ContextInjectionError`. The
  values come from the conversation, never from the model (a model that "supplies" ``user_id`` must
  not reach another user's data). Tests that need other values set them on ``self.context`` or call
  the undecorated function, ``SalesAgent.check_eligibility.__wrapped__(agent, "p", 1, "premium")``.
- Which parameters are injected is decided per class, from ``cls.Context.model_fields``, when the
  class is created (or, for a mixin without its own Context, when the method is first looked up on
  a concrete class). Subclasses that redeclare Context get their own resolution.
- A decorated method with no parameter matching a Context field is a declaration error, reported
  when the class is created: it usually means a typo.
- On an instance the method is a :class:`BoundTool`: the bound method and, as a ``dict``, its own
  tool definition, so ``litellm.completion(..., tools=[self.method])`` sends what a provider
  expects (litellm silently drops tools that are not dicts). A new one per lookup, as Python makes
  a new bound method per lookup; the cost is a copy of the cached schema (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import inspect
import threading
import types
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, overload

from pydantic import BaseModel

from .exceptions import ConversationError
from .internal.docstrings import without_params
from .tools.schema import spec_of

__all__ = ["BoundTool", "ContextInjectionError", "context_parameters", "with_context"]


_P = inspect.Parameter


class ContextInjectionError(ConversationError, TypeError):
    """``@with_context()`` cannot inject: the method or the call does not fit the Context.

    ``code`` says which problem: ``context_parameter_given`` (a caller passed a value for an
    injected parameter), ``context_field_missing`` (``self.context`` has no such attribute at call
    time), ``unknown_context_field`` (``only=``/``exclude=`` name something that is not a parameter
    or not a Context field), ``no_context_parameters`` (nothing to inject), ``not_a_method``.
    """

    status_code = 500
    default_code = "context_injection"
    default_detail = "Context injection failed."


@dataclass(frozen=True)
class _Plan:
    """How one decorated function is called on instances of one class."""

    injected: tuple[str, ...]
    visible: inspect.Signature  # without self
    original: inspect.Signature  # without self
    wrapper: Callable[..., Any]  # the function the class exposes (takes self)
    definition: _Definition  # the method's tool definition, read on the first instance lookup


class _Definition:
    """A decorated method's tool definition on one class, read on the first instance lookup:
    (name, description, parameters schema), or None when the method cannot be described to a model."""

    __slots__ = ("parts", "read")

    def __init__(self) -> None:
        self.read = False
        self.parts: tuple[str, str, dict[str, Any]] | None = None

    def get(self, wrapper: Callable[..., Any], instance: object) -> tuple[str, str, dict[str, Any]] | None:
        if not self.read:
            try:
                spec = spec_of(types.MethodType(wrapper, instance))
            except Exception:  # noqa: BLE001 - not a tool, still a method: tool_schema() says why when offered
                # (a parameter type without a JSON schema, an annotation naming an undefined type...)
                self.parts = None
            else:
                self.parts = (spec.name, spec.description, spec.parameters_schema)
            self.read = True
        return self.parts


class _FromFunction(str):
    # A BoundTool's __doc__ and __module__ are its function's, as a bound method's are. The class
    # keeps its own: Python reads a class's __module__ (and __doc__) from its __dict__, so the
    # descriptor is that string.
    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return str(self)
        return getattr(instance.__func__, self.attribute)  # type: ignore[attr-defined]


class BoundTool(dict[str, Any]):
    __doc__ = _FromFunction(
        """What ``agent.tool`` is for a ``@with_context()`` method: a bound method that is also its own
    tool definition.

    As a ``dict`` it is ``{"type": "function", "function": {"name", "description", "parameters"}}``
    exactly as :func:`~django_ai.conversations.tools.tool_schema` builds it (injected parameters
    left out), so ``litellm.completion(..., tools=[self.get_user_data])`` and the ``openai`` client
    send the definition a provider expects. As a method it is what a bound method is: callable with
    the visible parameters, awaitable when ``async def``, with ``__self__``, ``__func__``,
    ``__name__``, ``__doc__``, ``__wrapped__`` and the visible ``inspect.signature``; two lookups of
    the same method on the same agent compare equal and hash alike (and a plain ``dict`` compares
    with it as with its definition).

    Each lookup makes a new one, so changing its dict changes no other. Copying it (``copy``,
    ``deepcopy``, ``pickle``) gives the definition as a plain ``dict``. A method whose parameters
    have no JSON schema stays a plain bound method (:func:`tool_schema` says why when it is offered).
    Made by ``@with_context()`` on attribute lookup, not meant to be built or subclassed.
    """
    )
    __module__ = _FromFunction(__module__)
    __slots__ = ("__func__", "__self__", "__signature__", "__weakref__")
    # No annotations in this body: they would make a class __annotations__ that hides the function's.

    def __init__(
        self,
        func: Callable[..., Any],
        instance: object,
        signature: inspect.Signature,
        parts: tuple[str, str, dict[str, Any]],
    ) -> None:
        name, description, parameters = parts
        function: dict[str, Any] = {"name": name}
        if description:
            function["description"] = description
        function["parameters"] = _json_copy(parameters)
        super().__init__(type="function", function=function)
        self.__func__ = func
        self.__self__ = instance
        self.__signature__ = signature

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(self.__self__, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # What a bound method does: other attributes are the function's (__name__, __wrapped__,
        # __code__ so inspect.iscoroutinefunction and isasyncgenfunction answer as for a method).
        return getattr(_FUNC_SLOT.__get__(self), name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BoundTool):
            return self.__self__ is other.__self__ and self.__func__ == other.__func__
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:  # type: ignore[override]
        return hash((id(self.__self__), self.__func__))

    def __repr__(self) -> str:
        return f"<bound method {type(self.__self__).__name__}.{self.__func__.__name__} of {self.__self__!r}>"

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (dict, (dict(self),))


_FUNC_SLOT: Any = BoundTool.__dict__["__func__"]


def _json_copy(value: Any) -> Any:
    if type(value) is dict:
        return {key: _json_copy(item) for key, item in value.items()}
    if type(value) is list:
        return [_json_copy(item) for item in value]
    return value


class ContextInjected:
    """The descriptor ``@with_context()`` puts on the class.

    Looking it up on a class gives a plain function (``Agent.tool``) and on an instance a bound
    method (``agent.tool``), both showing only the parameters a caller supplies. Not meant to be
    subclassed; use ``with_context()``.
    """

    def __init__(self, func: Callable[..., Any], *, only: frozenset[str] | None, exclude: frozenset[str]):
        self.__func__ = func
        self.only = only
        self.exclude = exclude
        functools.update_wrapper(self, func)
        self._plans: weakref.WeakKeyDictionary[type, _Plan] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._name = func.__name__
        params = list(inspect.signature(func).parameters.values())
        if not params or params[0].kind not in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD):
            raise ContextInjectionError(
                f"@with_context() decorates methods: {func.__qualname__} must take self as its first parameter.",
                code="not_a_method",
            )
        names = {p.name for p in params[1:]}
        for option, chosen in (("only", only or ()), ("exclude", exclude)):
            unknown = sorted(set(chosen) - names)
            if unknown:
                raise ContextInjectionError(
                    f"@with_context({option}=...) names {', '.join(unknown)}, which "
                    f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'} of "
                    f"{func.__qualname__}{inspect.signature(func)}.",
                    code="unknown_context_field",
                )

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        # Resolve now, so a mistake fails when the class is created; a mixin without its own
        # Context is resolved on the concrete class when the method is first looked up.
        if "Context" in owner.__dict__:
            self._plan(owner)

    @overload
    def __get__(self, instance: None, owner: type) -> Callable[..., Any]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> Callable[..., Any]: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> Callable[..., Any]:
        if owner is None:
            owner = type(instance)
        plan = self._plan(owner)
        if instance is None:
            return plan.wrapper
        parts = plan.definition.get(plan.wrapper, instance)
        if parts is None:
            return types.MethodType(plan.wrapper, instance)
        return BoundTool(plan.wrapper, instance, plan.visible, parts)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ContextInjectionError(
            f"{self.__func__.__qualname__} is decorated with @with_context() but was called outside a "
            "class: define it as a method of a class with a pydantic Context (e.g. a ConversationAgent).",
            code="not_a_method",
        )

    def injected_for(self, owner: type) -> tuple[str, ...]:
        """The names injected from the Context when the method is used on ``owner``."""
        return self._plan(owner).injected

    def _plan(self, owner: type) -> _Plan:
        plan = self._plans.get(owner)
        if plan is None:
            with self._lock:
                plan = self._plans.get(owner)
                if plan is None:
                    plan = self._build_plan(owner)
                    self._plans[owner] = plan
        return plan

    def _build_plan(self, owner: type) -> _Plan:
        func = self.__func__
        label = f"{owner.__name__}.{self._name}"
        context_cls = getattr(owner, "Context", None)
        if not (isinstance(context_cls, type) and issubclass(context_cls, BaseModel)):
            raise ContextInjectionError(
                f"{label} uses @with_context() but {owner.__name__} has no pydantic Context: declare "
                "'class Context(BaseModel): ...' on the class (see ConversationAgent).",
                code="not_a_method",
            )
        fields = frozenset(context_cls.model_fields)
        try:
            # Resolved annotations (from __future__ import annotations makes them strings) for
            # libraries that read Parameter.annotation; names that only exist for type checkers
            # keep the string.
            full = inspect.signature(func, eval_str=True)
        except Exception:  # noqa: BLE001 - any failure to evaluate leaves the strings as written
            full = inspect.signature(func)
        params = list(full.parameters.values())
        self_param, rest = params[0], params[1:]
        if self.only is not None:
            missing = sorted(self.only - fields)
            if missing:
                raise ContextInjectionError(
                    f"{label}: @with_context(only=...) names {', '.join(missing)}, not "
                    f"field(s) of {owner.__name__}.Context ({', '.join(sorted(fields)) or 'no fields'}). "
                    "Add the field to Context or remove the name.",
                    code="unknown_context_field",
                )
            candidates = self.only
        else:
            candidates = fields
        injected = tuple(
            p.name
            for p in rest
            if p.name in candidates and p.name not in self.exclude and p.kind not in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD)
        )
        if not injected:
            raise ContextInjectionError(
                f"{label} uses @with_context() but none of its parameters "
                f"({', '.join(p.name for p in rest) or 'none'}) is a field of {owner.__name__}.Context "
                f"({', '.join(sorted(fields)) or 'no fields'}). Name the parameters like the Context "
                "fields they should receive, or remove the decorator.",
                code="no_context_parameters",
            )
        visible_params = [p for p in rest if p.name not in injected]
        # A subsequence of a valid parameter list is valid: hiding parameters cannot break it.
        visible = full.replace(parameters=visible_params)
        original = full.replace(parameters=rest)
        wrapper = _make_wrapper(func, owner, injected, visible, original)
        shown = [self_param, *visible_params]
        wrapper.__signature__ = full.replace(parameters=shown)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {k: v for k, v in getattr(func, "__annotations__", {}).items() if k not in injected}
        wrapper.__doc__ = without_params(func.__doc__, injected)
        wrapper.__name__ = self._name
        wrapper.__django_ai_injected__ = injected  # type: ignore[attr-defined]
        return _Plan(injected=injected, visible=visible, original=original, wrapper=wrapper, definition=_Definition())


def _make_wrapper(
    func: Callable[..., Any],
    owner: type,
    injected: tuple[str, ...],
    visible: inspect.Signature,
    original: inspect.Signature,
) -> Callable[..., Any]:
    qualname = f"{owner.__name__}.{func.__name__}"
    injected_set = frozenset(injected)
    params = list(original.parameters.values())

    # Most methods have only plain and keyword-only parameters: then everything is passed by
    # name and Python itself reports missing or unexpected arguments, which avoids the cost of
    # Signature.bind() on every call (see tests/bench/bench_tools.py).
    simple = all(p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY, _P.VAR_KEYWORD) for p in params)
    positional_names = tuple(p.name for p in visible.parameters.values() if p.kind == _P.POSITIONAL_OR_KEYWORD)

    def refuse(given: set[str] | frozenset[str]) -> ContextInjectionError:
        return ContextInjectionError(
            f"{qualname}() got a value for {', '.join(sorted(given))}, which "
            f"{'is' if len(given) == 1 else 'are'} injected from the context. Set it on "
            "self.context instead (or call the undecorated function via __wrapped__ in tests).",
            code="context_parameter_given",
        )

    def inject(self: Any, values: dict[str, Any]) -> None:
        context = getattr(self, "context", None)
        for name in injected:
            try:
                values[name] = getattr(context, name)
            except AttributeError:
                raise ContextInjectionError(
                    f"{qualname}() needs {name!r} from the context, but {type(self).__name__}.context "
                    f"({type(context).__name__}) has no such attribute.",
                    code="context_field_missing",
                ) from None

    def prepare(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if not injected_set.isdisjoint(kwargs):
            raise refuse(injected_set.intersection(kwargs))
        if simple:
            if args:
                if len(args) > len(positional_names):
                    raise TypeError(
                        f"{qualname}(): too many positional arguments ({len(args)} given, "
                        f"at most {len(positional_names)})"
                    )
                for name, value in zip(positional_names, args, strict=False):
                    if name in kwargs:
                        raise TypeError(f"{qualname}(): multiple values for argument {name!r}")
                    kwargs[name] = value
            inject(self, kwargs)
            return (), kwargs
        try:
            bound = visible.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{qualname}(): {exc}") from None
        values = dict(bound.arguments)
        inject(self, values)
        return _arrange(params, values)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            call_args, call_kwargs = prepare(self, args, kwargs)
            return await func(self, *call_args, **call_kwargs)

        return async_wrapper

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def agen_wrapper(self: Any, /, *args: Any, **kwargs: Any) -> Any:
            call_args, call_kwargs = prepare(self, args, kwargs)
            async for item in func(self, *call_args, **call_kwargs):
                yield item

        return agen_wrapper

    @functools.wraps(func)
    def wrapper(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        call_args, call_kwargs = prepare(self, args, kwargs)
        return func(self, *call_args, **call_kwargs)

    return wrapper


def _arrange(params: list[inspect.Parameter], values: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for the original function from name -> value."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    positional = True
    for p in params:
        if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD):
            if p.name not in values:
                positional = False  # left to its default; later ones go by name
            elif positional or p.kind == _P.POSITIONAL_ONLY:
                args.append(values[p.name])
            else:
                kwargs[p.name] = values[p.name]
        elif p.kind == _P.VAR_POSITIONAL:
            if values.get(p.name):
                args.extend(values[p.name])
        elif p.kind == _P.KEYWORD_ONLY:
            if p.name in values:
                kwargs[p.name] = values[p.name]
        else:
            kwargs.update(values.get(p.name, {}))
    return args, kwargs


@overload
def with_context[F: Callable[..., Any]](func: F, /) -> F: ...
@overload
def with_context[F: Callable[..., Any]](
    *, only: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> Callable[[F], F]: ...


def with_context(
    func: Callable[..., Any] | None = None,
    /,
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> Any:
    """Inject Context fields into a method's parameters of the same name.

    ``only=("user_id",)`` injects just those names (each must be a Context field); ``exclude=``
    keeps parameters the model must supply even though a Context field has the same name. Works on
    ``def`` and ``async def`` methods (and generators); use it as ``@with_context()`` (or bare
    ``@with_context``) directly above the ``def``.
    """
    if isinstance(only, str) or isinstance(exclude, str):
        raise TypeError("with_context(only=..., exclude=...) take a list of parameter names, not a string.")
    only_set = frozenset(only) if only is not None else None
    exclude_set = frozenset(exclude)
    if only_set is not None and only_set & exclude_set:
        raise TypeError(f"with_context(): {', '.join(sorted(only_set & exclude_set))} is both in only= and exclude=.")

    def decorate(f: Callable[..., Any]) -> Any:
        if isinstance(f, (staticmethod, classmethod)):
            raise ContextInjectionError(
                "@with_context() reads self.context, so it decorates instance methods, not "
                f"{type(f).__name__}s. Remove @{type(f).__name__}.",
                code="not_a_method",
            )
        if not inspect.isfunction(f):
            raise ContextInjectionError(
                f"@with_context() decorates functions defined with def or async def, not {f!r}.",
                code="not_a_method",
            )
        return ContextInjected(f, only=only_set, exclude=exclude_set)

    if func is not None:
        return decorate(func)
    return decorate


def context_parameters(method: Callable[..., Any]) -> tuple[str, ...]:
    """The parameter names ``@with_context()`` injects into ``method`` (empty when not decorated)."""
    return tuple(getattr(getattr(method, "__func__", method), "__django_ai_injected__", ()))
