"""The stream loop of the AI SDK endpoints: events of the conversation's channel (the Local
backend's in-process broker) or, with any other backend, the saved rows read every
``poll_interval``, through a :class:`~.translate.ReplyTranslator`, written out as Server-Sent
Events until the reply ends.

A client that leaves before the end (the AI SDK's ``stop()`` aborts the request; a closed tab or a
reload closes it too) stops the reply: once no stream of that reply is left, its turn is cancelled
after ``grace`` seconds, unless a resume request (``GET chat/<id>/stream/``) re-attaches first. So
a page reload that resumes keeps the reply going, and a stop ends it a moment later.

WSGI servers learn that the client left when a write fails, so an idle stream sends a heartbeat
comment every ``heartbeat`` seconds; ASGI servers cancel the response as soon as the client
disconnects. Either way the cancel runs on a timer thread, never in the server's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from ..realtime.local import StoredEvent, Subscription
from .chunks import DONE_FRAME, HEARTBEAT_FRAME, Chunk, frames
from .rows import cancel_reply, read_reply
from .translate import ReplyTranslator

__all__ = ["ReplyStream", "reply_watchers"]

logger = logging.getLogger("django_ai.conversations.ai_sdk")


class ReplyWatchers:
    """How many streams of each reply are open in this process, and the pending cancel of a
    reply none watches any more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._timers: dict[str, threading.Timer] = {}

    def attach(self, user_message_id: str) -> None:
        with self._lock:
            self._open[user_message_id] = self._open.get(user_message_id, 0) + 1
            timer = self._timers.pop(user_message_id, None)
        if timer is not None:
            timer.cancel()

    def detach(self, user_message_id: str, *, left: bool, grace: float) -> None:
        """One stream ended; ``left``: its client went away before the reply ended, so the
        reply is cancelled in ``grace`` seconds if by then no stream watches it."""
        with self._lock:
            count = self._open.get(user_message_id, 1) - 1
            if count > 0:
                self._open[user_message_id] = count
                return
            self._open.pop(user_message_id, None)
            if not left:
                return
            timer = threading.Timer(grace, self._cancel, args=(user_message_id,))
            timer.daemon = True
            old = self._timers.get(user_message_id)
            self._timers[user_message_id] = timer
        if old is not None:
            old.cancel()
        timer.start()

    def watching(self, user_message_id: str) -> int:
        with self._lock:
            return self._open.get(user_message_id, 0)

    def cancel_pending(self, user_message_id: str) -> bool:
        """Whether a cancel of this reply is waiting for its grace period to pass."""
        with self._lock:
            return user_message_id in self._timers

    def _cancel(self, user_message_id: str) -> None:
        with self._lock:
            timer = self._timers.get(user_message_id)
            if timer is None or timer is not threading.current_thread():
                return
            del self._timers[user_message_id]
        try:
            if cancel_reply(user_message_id):
                logger.info("The AI SDK client of message %s left; its reply was cancelled.", user_message_id)
        except Exception:
            logger.exception("Cancelling the reply to message %s failed", user_message_id)
        finally:
            close_old_connections()


#: The process's watchers (streams are served by the process whose broker they read).
reply_watchers = ReplyWatchers()


def _payload(item: StoredEvent) -> dict[str, Any]:
    # The broker keeps each event as its rendered frame: "id: ..\nevent: ..\ndata: <json>\n\n".
    data = item.frame.partition("\ndata: ")[2]
    try:
        payload = json.loads(data)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


class _Release:
    """What a stream holds until it ends (its broker subscription, its place among the reply's
    watchers), given back once: by :meth:`ReplyStream.close`, or when a stream never closed is
    garbage-collected. Holds no reference to the stream."""

    def __init__(self, user_message_id: str, subscription: Subscription | None, grace: float):
        self.user_message_id = user_message_id
        self.subscription = subscription
        self.grace = grace
        self._lock = threading.Lock()
        self._done = False

    def unsubscribe(self) -> None:
        with self._lock:
            subscription, self.subscription = self.subscription, None
        if subscription is not None:
            subscription.broker.unsubscribe(subscription)

    def __call__(self, *, left: bool) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self.unsubscribe()
        reply_watchers.detach(self.user_message_id, left=left, grace=self.grace)


@dataclass
class ReplyStream:
    """The body of a UI message stream response for one reply.

    ``subscription``: the conversation's channel on the Local broker (None: poll the rows);
    ``replay``: events the broker held from before the stream joined (with ``known_widgets``,
    the widgets of this reply, as only those events may show them); ``initial``: chunks to send
    first (a resume's saved reply).
    """

    translator: ReplyTranslator
    subscription: Subscription | None
    initial: list[Chunk]
    heartbeat: float
    poll_interval: float
    grace: float
    replay: list[StoredEvent] | None = None
    known_widgets: frozenset[str] | None = None
    _completed: bool = False
    _closed: bool = False
    _release: _Release = field(init=False, repr=False)

    def __post_init__(self) -> None:
        reply_watchers.attach(self.translator.user_message_id)
        self._release = _Release(self.translator.user_message_id, self.subscription, self.grace)
        # A response Django drops without closing it (an ASGI client that left while the view
        # still ran) gives everything back once it is garbage, as if its client had left.
        weakref.finalize(self, self._release, left=True).atexit = False

    # One step of the loop, shared by both servers' loops: what to send now, and whether the
    # rows must be read before the next step.

    def _events(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        if self.replay is not None:
            replay, self.replay = self.replay, None
            for item in replay:
                chunks += self.translator.feed(item.event, _payload(item), known_widgets=self.known_widgets)
        if self.subscription is not None:
            for item in self.subscription.drain():
                chunks += self.translator.feed(item.event, _payload(item))
            if self.subscription.closed:
                # Overflowed, or the broker closed: read the rows from now on.
                self._unsubscribe()
                self.translator.needs_rows = True
        return chunks

    def _needs_rows(self) -> bool:
        return self.translator.needs_rows or self.translator.ended_status is not None

    def _apply_rows(self) -> list[Chunk]:
        snapshot = read_reply(self.translator.user_message_id)
        chunks = self.translator.apply_snapshot(snapshot)
        if self.translator.ended_status is not None:
            chunks += self.translator.finish(snapshot)
        return chunks

    def _unsubscribe(self) -> None:
        self.subscription = None
        self._release.unsubscribe()

    def __iter__(self) -> Iterator[str]:
        """The stream for thread-per-request servers (WSGI, runserver)."""
        try:
            chunks = [*self.initial, *self._events()]
            # The first write sends the headers at once: the client's request resolves now.
            yield frames(chunks) if chunks else HEARTBEAT_FRAME
            idle_since = time.monotonic()
            while not self.translator.finished:
                chunks = self._events()
                if self._needs_rows():
                    chunks += self._apply_rows()
                if chunks:
                    yield frames(chunks)
                    idle_since = time.monotonic()
                if self.translator.finished:
                    break
                if self.subscription is None:
                    time.sleep(self.poll_interval)
                    chunks = self._apply_rows()
                    if chunks:
                        yield frames(chunks)
                        idle_since = time.monotonic()
                else:
                    self.subscription.wait(self.heartbeat)
                if time.monotonic() - idle_since >= self.heartbeat:
                    # Idle: a heartbeat (a failed write tells that the client left), and a look at
                    # the rows in case the end was missed.
                    yield HEARTBEAT_FRAME
                    idle_since = time.monotonic()
                    self.translator.needs_rows = True
            self._completed = True
            yield DONE_FRAME
        finally:
            self.close()

    async def __aiter__(self) -> AsyncIterator[str]:
        """The same stream for ASGI servers: waits on the event loop; the rows are read on the
        request's own thread (Django's ``ThreadSensitiveContext``), where the view ran and where
        the response's close (``request_finished``) closes the database connection: a thread of
        the loop's default executor would keep its connection open for the life of the process."""
        read = sync_to_async(self._apply_rows, thread_sensitive=True)
        try:
            chunks = [*self.initial, *self._events()]
            yield frames(chunks) if chunks else HEARTBEAT_FRAME
            idle_since = time.monotonic()
            while not self.translator.finished:
                chunks = self._events()
                if self._needs_rows():
                    chunks += await read()
                if chunks:
                    yield frames(chunks)
                    idle_since = time.monotonic()
                if self.translator.finished:
                    break
                if self.subscription is None:
                    await asyncio.sleep(self.poll_interval)
                    chunks = await read()
                    if chunks:
                        yield frames(chunks)
                        idle_since = time.monotonic()
                else:
                    await self.subscription.wait_async(self.heartbeat)
                if time.monotonic() - idle_since >= self.heartbeat:
                    yield HEARTBEAT_FRAME
                    idle_since = time.monotonic()
                    self.translator.needs_rows = True
            self._completed = True
            yield DONE_FRAME
        finally:
            self.close()

    def close(self) -> None:
        """End the stream (the response closes it, whether it ended or its client left);
        calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self.subscription = None
        self._release(left=not self._completed)
