"""``@requires_approval``: a tool that runs only after the user approved the call.

::

    class ShopAgent(LLMAgent):
        @requires_approval(when=lambda agent, arguments: arguments["amount"] > 100)
        @with_context()
        def refund(self, order_id: str, amount: float, user_id: int) -> str:
            ...

When the model calls such a tool, the declared tool loop (``django_ai.conversations.llm``) records
the call as a tool step ``awaiting_approval`` and ends the turn without holding a worker; the user
approves or rejects it (``POST models/message/<step id>/approve/``) and the loop carries on in a
new task (docs/tools.md, "Approval before a tool runs").

The mark is an attribute on the function, so it works above or below ``@with_context()`` and on
plain methods; :func:`approval_rule` reads it back from a function, a bound method or the
``@with_context()`` wrapper.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, overload

__all__ = ["ApprovalRule", "approval_rule", "needs_approval", "requires_approval"]

#: ``when(agent, arguments) -> bool``: whether this call needs approval. ``arguments`` are the
#: call's validated visible arguments (never the injected Context values).
ApprovalRule = Callable[[Any, dict[str, Any]], bool]

_MARK = "__django_ai_requires_approval__"


def _always(agent: Any, arguments: dict[str, Any]) -> bool:
    return True


@overload
def requires_approval[F: Callable[..., Any]](func: F, /) -> F: ...
@overload
def requires_approval[F: Callable[..., Any]](*, when: ApprovalRule | None = None) -> Callable[[F], F]: ...


def requires_approval(func: Any = None, /, *, when: ApprovalRule | None = None) -> Any:
    """Mark a tool as needing the user's approval before each call runs.

    ``@requires_approval`` (or ``@requires_approval()``) asks for every call;
    ``@requires_approval(when=rule)`` only for the calls where ``rule(agent, arguments)`` is true
    (e.g. refunds over 100 EUR). The rule runs before the tool, in the turn; an exception in it is
    a tool error the model is told of. Mistakes fail when the class is defined, not at the first
    call: a rule that is not a function of two arguments, an ``async def`` rule, a rule passed
    without ``when=``, a bound method (``agent.refund``: mark the ``def``), anything that is not a
    function.
    """
    if when is not None:
        _check_rule(when)
    rule = when or _always

    def mark(f: Any) -> Any:
        if hasattr(f, "__self__") and hasattr(f, "__func__"):
            raise TypeError(
                f"@requires_approval marks a tool where it is defined, above or below its def, not a "
                f"bound method ({f!r})."
            )
        if not callable(f) and not hasattr(f, "__func__"):
            raise TypeError(f"@requires_approval decorates functions and methods, not {f!r}.")
        target = getattr(f, "__func__", f)  # the function in @with_context()'s descriptor or a staticmethod
        for obj in {id(f): f, id(target): target}.values():
            try:
                setattr(obj, _MARK, rule)
            except (AttributeError, TypeError) as exc:
                raise TypeError(f"@requires_approval decorates functions and methods, not {f!r}.") from exc
        return f

    if func is not None:
        if getattr(func, "__name__", None) == "<lambda>":
            raise TypeError(
                "requires_approval() was given a lambda as the tool: pass the rule by name, "
                "@requires_approval(when=lambda agent, arguments: ...)."
            )
        return mark(func)
    return mark


def _check_rule(when: Any) -> None:
    if not callable(when):
        raise TypeError(f"requires_approval(when=...) takes a function (agent, arguments) -> bool, not {when!r}.")
    if inspect.iscoroutinefunction(when) or inspect.iscoroutinefunction(type(when).__call__):
        raise TypeError(
            f"requires_approval(when=...): {getattr(when, '__qualname__', when)!r} is async: the rule is called, "
            "not awaited (a coroutine would count as true). Write it as a plain def."
        )
    try:
        signature = inspect.signature(when)
    except (TypeError, ValueError):
        return  # a builtin or C function without a readable signature: trusted
    try:
        signature.bind(None, {})
    except TypeError:
        raise TypeError(
            f"requires_approval(when=...) calls the rule as rule(agent, arguments); "
            f"{getattr(when, '__qualname__', when)!r}{signature} cannot take those two arguments."
        ) from None


def approval_rule(tool: Any) -> ApprovalRule | None:
    """The approval rule of a tool (a function, bound method or ``@with_context()`` method), or
    None when it runs without asking."""
    seen: set[int] = set()
    obj = tool
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        rule = getattr(obj, _MARK, None)
        if rule is not None:
            return rule
        obj = getattr(obj, "__func__", None) or getattr(obj, "__wrapped__", None)
    return None


def needs_approval(tool: Any, agent: Any, arguments: dict[str, Any]) -> bool:
    """Whether this call of ``tool`` (with its validated visible ``arguments``) waits for the user."""
    rule = approval_rule(tool)
    return bool(rule is not None and rule(agent, arguments))
