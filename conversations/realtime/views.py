"""HTTP endpoints of the realtime layer.

- ``POST realtime/auth/``: Pusher private-channel authorisation (``socket_id`` + ``channel_name``,
  form-encoded as pusher-js sends it, or JSON).
- ``GET realtime/events/?channel=...``: Server-Sent Events from the Local backend, at most its
  option ``MAX_STREAMS_PER_VISITOR`` open at once per visitor (and
  ``MAX_ANONYMOUS_STREAMS_PER_ADDRESS`` for anonymous visitors per client address): 429
  ``too_many_streams`` beyond.
- ``GET realtime/config/``: which backend runs and how a client reaches it.

Permission checks live in :mod:`.auth`; these views only parse, call them and answer. Errors use the
app's envelope ``{"errors": [{"code", "message", "field"?}]}`` (:mod:`django_ai.conversations.api`).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from asgiref.sync import SyncToAsync
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.urls import NoReverseMatch, reverse
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from .. import telemetry
from ..api.parsing import StrictJSONParser
from ..api.throttling import client_address
from ..api.views import BaseAPIView
from ..constants import OWNER_CHANNEL_PREFIX, SESSION_CHANNEL_PREFIX, ErrorCode
from ..exceptions import InvalidRealtimeRequest, RealtimeNotAvailable
from ..owners import get_owner
from . import get_backend
from .auth import authorize_channel, requester_owner_channel
from .channels import anonymous_digest
from .local import LocalBackend, Subscription, sse_frames, sse_frames_async

__all__ = ["EventStreamResponse", "RealtimeAuthView", "RealtimeConfigView", "RealtimeEventsView"]

SOCKET_ID = re.compile(r"\A[0-9]{1,20}\.[0-9]{1,20}\Z")
#: Channels one Server-Sent Events stream may read.
MAX_STREAM_CHANNELS = 10


class RealtimeView(BaseAPIView):
    """Base of the realtime views: the app's error envelope, body limit and CSRF rules
    (:class:`~django_ai.conversations.api.views.BaseAPIView`); channel checks are done by
    :func:`~.auth.authorize_channel`. Override :meth:`get_backend` to serve another backend than
    the configured one."""

    def get_backend(self) -> Any:
        return get_backend()


class RealtimeAuthView(RealtimeView):
    """Pusher private-channel auth: ``{"auth": "<key>:<signature>"}`` for a channel the request may
    read. With a backend that needs no signature it confirms the channel instead."""

    # pusher-js posts a urlencoded form; FormData (multipart) and JSON work too.
    parser_classes = [FormParser, MultiPartParser, StrictJSONParser]

    def post(self, request: Request) -> HttpResponseBase:
        data = request.data
        if not hasattr(data, "get"):
            raise InvalidRealtimeRequest("Send socket_id and channel_name as form fields or a JSON object.")
        socket_id = data.get("socket_id")
        channel_name = data.get("channel_name")
        if not isinstance(channel_name, str) or not channel_name:
            raise InvalidRealtimeRequest("channel_name is required.", code=ErrorCode.REQUIRED, field="channel_name")
        if not isinstance(socket_id, str) or not SOCKET_ID.match(socket_id):
            raise InvalidRealtimeRequest(
                "socket_id must be the Pusher connection's socket id, e.g. '1234.5678'.",
                code=ErrorCode.INVALID_SOCKET_ID,
                field="socket_id",
            )
        authorize_channel(request, channel_name)
        return JsonResponse(self.get_backend().authenticate(channel_name=channel_name, socket_id=socket_id))


class RealtimeEventsView(RealtimeView):
    """Server-Sent Events for one or more channels (``?channel=a&channel=b``), each checked like
    ``realtime/auth/``. Honours ``Last-Event-ID`` (header, or ``last_event_id`` in the query) while
    the broker still holds the events after it."""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[Any, str]:
        # The stream is written by this view itself; DRF only renders errors, always as JSON
        # (an EventSource asks for text/event-stream, which no DRF renderer offers).
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    def get(self, request: Request) -> HttpResponseBase:
        backend = self.get_backend()
        if not isinstance(backend, LocalBackend):
            raise RealtimeNotAvailable(
                f"The realtime backend is {backend.name!r}: subscribe as realtime/config/ describes."
            )
        channels = list(dict.fromkeys(request.query_params.getlist("channel")))
        if not channels:
            raise InvalidRealtimeRequest(
                "Give at least one channel: ?channel=<name>.", code=ErrorCode.REQUIRED, field="channel"
            )
        if len(channels) > MAX_STREAM_CHANNELS:
            raise InvalidRealtimeRequest(
                f"One stream reads at most {MAX_STREAM_CHANNELS} channels.",
                code=ErrorCode.TOO_MANY_CHANNELS,
                field="channel",
            )
        for channel in channels:
            authorize_channel(request, channel)
        last_event_id = request.META.get("HTTP_LAST_EVENT_ID") or request.query_params.get("last_event_id")
        subscription = backend.broker.subscribe(
            channels, last_event_id=last_event_id, limits=self.get_stream_limits(request)
        )
        if _is_asgi(request):
            content: Any = _without_request_thread(sse_frames_async(subscription, heartbeat=backend.heartbeat))
        else:
            content = sse_frames(subscription, heartbeat=backend.heartbeat)
        # The stream may stay open for hours: give the database connection back now rather than
        # holding it idle (it is reopened if this thread needs it again). Under ASGI too: Django
        # closes a request's connections when its response is closed, at the stream's end, which
        # held one idle connection per open stream (PostgreSQL's max_connections is 100 by default).
        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:
                connection.close()
        response = EventStreamResponse(content, subscription=subscription)
        response["Cache-Control"] = "no-cache, no-transform"
        response["X-Accel-Buffering"] = "no"
        return response

    def get_stream_limits(self, request: Request) -> dict[str, int | None]:
        """The holders this stream counts under, each with the most open streams it may have
        (None: no limit): the visitor (the Local backend's ``MAX_STREAMS_PER_VISITOR`` option)
        and, for anonymous visitors, which any client can mint, their client address
        (``MAX_ANONYMOUS_STREAMS_PER_ADDRESS``). Override to cap differently (e.g. per plan);
        keys are ``"<kind>:<id>"``, the kind is named in the 429's message."""
        owner = get_owner(request)
        per_visitor, per_address = self.get_backend().stream_limits()
        if owner.user is not None:
            return {f"visitor:user-{owner.user.pk}": per_visitor}
        limits = {f"address:{client_address(request)}": per_address}
        if owner.anonymous_id:
            limits[f"visitor:anon-{anonymous_digest(owner.anonymous_id)}"] = per_visitor
        return limits


class EventStreamResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response that ends its subscription when the server closes it (or
    drops it unclosed), so the stream's place under its holders is freed even if the stream never
    started. The
    ``django_ai.sse.clients`` metric counts it from here until then."""

    def __init__(self, content: Any, *, subscription: Subscription):
        super().__init__(content, content_type="text/event-stream; charset=utf-8")
        self.subscription = subscription
        telemetry.sse_clients_changed(+1)
        # A response collected unclosed ends its stream too: under ASGI, a client that leaves
        # while the view runs makes Django drop the view's response without closing it.
        self._dropped = weakref.finalize(self, _end_dropped_stream, subscription)
        self._dropped.atexit = False

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._dropped.detach() is not None:  # the first close
                _end_stream(self.subscription)


def _end_stream(subscription: Subscription) -> None:
    subscription.broker.unsubscribe(subscription)
    telemetry.sse_clients_changed(-1)


def _end_dropped_stream(subscription: Subscription) -> None:
    # On a thread of its own: the garbage collector may run this while this thread holds the
    # broker's lock (or the metrics SDK's), which unsubscribe would wait for forever.
    threading.Thread(target=_end_stream, args=(subscription,), name="django-ai-sse-dropped", daemon=True).start()


class RealtimeConfigView(RealtimeView):
    """What a client needs to subscribe: the backend, its public connection details, the
    endpoints and the requester's owner channel. Also sets the CSRF cookie that
    ``realtime/auth/`` needs for logged-in users."""

    def get(self, request: Request) -> HttpResponseBase:
        backend = self.get_backend()
        get_token(request)
        config: dict[str, Any] = {
            "backend": backend.name,
            **backend.client_config(request),
            "auth_endpoint": _url(request, "realtime-auth"),
            "events_endpoint": _url(request, "realtime-events") if isinstance(backend, LocalBackend) else None,
            "session_channel_prefix": SESSION_CHANNEL_PREFIX,
            "owner_channel_prefix": OWNER_CHANNEL_PREFIX,
            "owner_channel": requester_owner_channel(request),
        }
        return JsonResponse(config)


def _url(request: Request, name: str) -> str | None:
    namespace = getattr(request.resolver_match, "namespace", "") or ""
    try:
        return reverse(f"{namespace}:{name}" if namespace else name)
    except NoReverseMatch:
        return None


async def _without_request_thread(frames: AsyncGenerator[str]) -> AsyncGenerator[str]:
    """``frames``, after letting the request's thread go.

    Under ASGI, Django runs a request's sync code (this view, sync middleware) on a thread of the
    request's own (asgiref's ``ThreadSensitiveContext``: one single-thread executor per request),
    and that thread lives until the response is closed: one idle thread per open stream, 2,000
    threads for 2,000 clients. Once the stream starts, the view and the middleware are done with
    it: its executor is shut down here (its thread ends; ``shutdown(wait=False)``, the event loop
    does not wait for it). Sync code the request still runs afterwards (the response's
    ``close()``) gets a fresh thread of its own, which Django ends with the request as before.
    An executor given to the context by its creator (asgiref's ``executor=``) is theirs and
    stays.
    """
    _release_request_thread()
    async with aclosing(frames):
        async for frame in frames:
            yield frame


def _release_request_thread() -> None:
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None or getattr(context, "_executor", None) is not None:
        return
    executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)


def _is_asgi(request: Request) -> bool:
    return isinstance(request._request, ASGIRequest)
