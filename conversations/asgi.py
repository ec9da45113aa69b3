"""ASGI: refuse request bodies over the app's limits before anything stores them.

Django's ASGI handler reads the whole request body into a temporary file (on disk past
``FILE_UPLOAD_MAX_MEMORY_SIZE``) before any middleware or view runs, so a view's 413 comes only
after the body was stored, whatever its size. Wrap the project's ASGI application::

    from django.core.asgi import get_asgi_application
    from django_ai.conversations.asgi import BodySizeLimitMiddleware

    application = BodySizeLimitMiddleware(get_asgi_application())

For each HTTP request the middleware resolves the path with the project's URLconf. When it names a
:class:`~django_ai.conversations.bridge.base.BridgeAPIView` (the bridge, ``files/``, ``realtime/``,
and a project's own subclasses), that view's ``get_max_body_size()`` is the limit:

- a ``Content-Length`` above it is answered at once; nothing of the body is read;
- a body without one (``Transfer-Encoding: chunked``) is counted as it arrives; at the first byte
  past the limit Django is told that the client went away (it drops the little it holds, at most
  the limit) and the client gets the answer.

The answer is the view's own 413 envelope (``get_body_too_large_error()``: ``request_too_large``,
``file_too_large`` for uploads), as the view itself gives under WSGI. Other paths, and the
websocket and lifespan scopes, pass through untouched. The decision is made per path, not per
method or header: what the view would check anyway.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.core.handlers.asgi import get_script_prefix
from django.urls import Resolver404, resolve

from .api.views import ASGI_LIMIT_SCOPE_KEY
from .api.views import BaseAPIView as BridgeAPIView
from .exceptions import ConversationError

__all__ = ["BodySizeLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodySizeLimitMiddleware:
    """ASGI middleware around Django's application: bodies over the resolved view's limit are
    answered with its 413 before Django stores them.

    Override :meth:`get_view` to find the limit another way (e.g. a URLconf that a middleware
    switches per request, which this one cannot see).
    """

    def __init__(self, app: Callable[..., Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        view = self.get_view(scope)
        limit = view.get_max_body_size() if view is not None else None
        if view is None or limit is None:
            await self.app(scope, receive, send)
            return
        # Tells the view that its limit already applied (else it warns that nothing did).
        scope = {**scope, ASGI_LIMIT_SCOPE_KEY: True}
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _answer(send, view.get_body_too_large_error())
            return

        received = 0
        over = False
        started = False

        async def receive_within_limit() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def watch_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, receive_within_limit, watch_send)
        if over and not started:
            await _answer(send, view.get_body_too_large_error())

    def get_view(self, scope: Scope) -> BridgeAPIView | None:
        """The view that will answer this request when it is one of the app's (a
        ``BridgeAPIView``), set up with the URL's arguments but without a request; else None."""
        path = scope.get("path") or "/"
        # The path as Django's ASGIRequest makes its path_info.
        prefix = get_script_prefix(scope).rstrip("/")
        if prefix and (path.startswith(prefix + "/") or path == prefix):
            path = path[len(prefix) :]
        try:
            match = resolve(path or "/")
        except Resolver404:
            return None
        view_class = getattr(match.func, "view_class", None)
        if not (isinstance(view_class, type) and issubclass(view_class, BridgeAPIView)):
            return None
        view = view_class(**getattr(match.func, "view_initkwargs", {}))
        view.args, view.kwargs = match.args, match.kwargs
        return view


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the view answers 400 for it
    return None


async def _answer(send: Send, error: ConversationError) -> None:
    body = json.dumps({"errors": [error.as_dict()]}, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
