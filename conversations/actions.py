"""High-level actions for views and frontends."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, TypedDict

from django.http import HttpRequest
from pydantic import ValidationError

from .agent import ConversationAgent
from .exceptions import ContextValidationError
from .owners import ensure_anonymous_id, get_owner
from .registry import registry
from .service import ConversationService

if TYPE_CHECKING:
    from rest_framework.request import Request

__all__ = ["StartedConversation", "start_conversation"]


class StartedConversation(TypedDict):
    """What ``start_conversation`` returns (the seed's three keys first)."""

    session_id: str
    status: str
    agent_path: str
    #: The anonymous visitor's id (also stored in their Django session); None for users.
    anonymous_id: str | None
    title: str
    created_at: str


def start_conversation(
    agent_path: str,
    context_kwargs: dict[str, Any] | None = None,
    request: HttpRequest | Request | None = None,
    *,
    user: Any = None,
    title: str = "",
    metadata: dict[str, Any] | None = None,
) -> StartedConversation:
    """Start a conversation with the agent at ``agent_path``.

    The agent's ``create_context(request, **context_kwargs)`` builds the Context. The session
    belongs to the request's user; an anonymous visitor gets a high-entropy anonymous id, stored in
    their Django session and returned as ``anonymous_id`` so a stateless client can send it back.

    Without a request (the shell, a task, a management command), ``user=`` says who owns the
    conversation; ``create_context`` then gets a bare ``HttpRequest`` whose ``user`` is that user,
    so agents that read ``request.user`` work unchanged. Without either, the conversation has no
    owner (only Python code can reach it).

    Returns ``{"session_id", "status", "agent_path", "anonymous_id", "title", "created_at"}``, plain
    JSON-ready values.
    """
    if request is not None and not hasattr(request, "META"):
        # A stray positional argument (a user, a dict) would otherwise start an ownerless conversation.
        raise TypeError(
            "start_conversation(request=...) takes the visitor's HttpRequest (or DRF Request), "
            f"not {type(request).__name__}; "
            "pass None when there is no request, and user=... to say who owns the conversation."
        )
    if user is not None:
        if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
            raise TypeError(f"start_conversation(user=...) takes a saved user, not {user!r}.")
        if request is None:
            request = _request_for(user)
        elif getattr(get_owner(request).user, "pk", None) != user.pk:
            raise TypeError("start_conversation() got a request of another user than user=...: pass one of them.")
    agent_cls = registry.get(agent_path)
    if context_kwargs is not None and not isinstance(context_kwargs, dict):
        raise ContextValidationError(
            "context_kwargs must be a dict of keyword arguments for create_context, "
            f"not {type(context_kwargs).__name__}.",
            field="context_kwargs",
        )
    context = _build_context(agent_cls, request, context_kwargs or {})
    owner = get_owner(request)
    anonymous_id = ""
    if owner.user is None and request is not None:
        anonymous_id = ensure_anonymous_id(request)
    session = ConversationService.create_session(
        agent_path,
        user=owner.user,
        anonymous_id=anonymous_id or None,
        context=context,
        title=title,
        metadata=metadata,
    )
    return {
        "session_id": str(session.pk),
        "status": str(session.status),
        "agent_path": session.agent_path,
        "anonymous_id": anonymous_id or None,
        "title": session.title,
        "created_at": session.created_at.isoformat(),
    }


def _request_for(user: Any) -> HttpRequest:
    """A bare request standing for ``user`` when code without one starts a conversation: what
    ``create_context`` reads (``request.user``) is there; it has no session and no headers."""
    request = HttpRequest()
    request.user = user
    request.method = "POST"
    return request


def _build_context(
    agent_cls: type[ConversationAgent], request: HttpRequest | Request | None, kwargs: dict[str, Any]
) -> Any:
    bad_keys = [k for k in kwargs if not isinstance(k, str) or not k.isidentifier()]
    if bad_keys:
        raise ContextValidationError(
            f"context_kwargs keys must be valid keyword names, not {bad_keys[0]!r}.", field="context_kwargs"
        )
    try:
        # Checked before the call so that a caller's unexpected keyword is a clear error, while a
        # TypeError raised inside create_context stays the bug it is.
        # Bound to the class: the signature hides ``cls``, which a client could otherwise send.
        method = agent_cls.create_context
        function = getattr(method, "__func__", None)
        if function is not None:
            inspect.signature(function).bind(agent_cls, request=request, **kwargs)
        else:
            inspect.signature(method).bind(request=request, **kwargs)
    except TypeError as exc:
        raise ContextValidationError(
            f"{agent_cls.__name__}.create_context does not accept these context_kwargs: {exc}.",
            field="context_kwargs",
        ) from exc
    try:
        context = agent_cls.create_context(request=request, **kwargs)
    except ValidationError as exc:
        raise ContextValidationError(
            f"{agent_cls.__name__}.create_context could not build its Context: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)),
            errors=[
                {"field": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors(include_url=False)
            ],
        ) from exc
    if not isinstance(context, (agent_cls.Context, dict)):
        # None is a create_context that forgot its ``return``; another model would lose the
        # fields the two do not share.
        raise ContextValidationError(
            f"{agent_cls.__name__}.create_context must return a {agent_cls.Context.__name__} instance or a dict, "
            f"not {type(context).__name__}"
            + (" (did it forget to 'return' the Context?)." if context is None else "."),
            field="context_kwargs",
        )
    return agent_cls.validate_context(context)
