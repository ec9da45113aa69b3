"""The Local backend: an in-process broker read through Server-Sent Events (``realtime/events/``).

The embedded default when Pusher is not configured. It needs no other server, works under
``runserver`` (threaded WSGI: one thread per open stream) and under ASGI servers such as uvicorn
(async streaming: no thread per stream). Events reach clients connected to the same process, so it
fits one-process deployments (the demo, small sites, development); with several web processes or a
separate task worker use the Pusher backend (hosted Pusher, or soketi).

The broker keeps the last ``HISTORY_SIZE`` events of each channel, so a client that reconnects
with ``Last-Event-ID`` gets what it missed while the broker still holds it. It also counts open
subscriptions per holder (a visitor, a client address) so the events view can cap them
(``MAX_STREAMS_PER_VISITOR``): under WSGI every open stream holds a thread.

Options (``DJANGO_AI["REALTIME"]["OPTIONS"]``; the old flat keys in brackets still work):
``HEARTBEAT_INTERVAL`` (``SSE_HEARTBEAT_INTERVAL``, 15.0 s between heartbeat comments on an idle
stream), ``HISTORY_SIZE`` (``SSE_HISTORY_SIZE``, 200 events per channel), ``HISTORY_CHANNELS``
(``SSE_HISTORY_CHANNELS``, 1000 channels with history), ``CLIENT_QUEUE_SIZE``
(``SSE_CLIENT_QUEUE_SIZE``, 1000 events a slow reader may lag), ``MAX_STREAMS_PER_VISITOR`` (10) and
``MAX_ANONYMOUS_STREAMS_PER_ADDRESS`` (100; ``SSE_`` before both; None: no limit), and the sender's
``COALESCE_WINDOW`` (``STREAM_COALESCE_WINDOW``, 0.05 s) and ``MAX_PENDING``
(``REALTIME_MAX_PENDING``, 10000).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..exceptions import TooManyStreams
from .coalescer import OutgoingEvent, encode
from .sender import EventSender, QueuedBackend

if TYPE_CHECKING:
    from rest_framework.request import Request


__all__ = ["Broker", "LocalBackend", "StoredEvent", "Subscription", "TooManyStreams"]

logger = logging.getLogger("django_ai.conversations.realtime")


@dataclass(frozen=True)
class StoredEvent:
    """One published event with its Server-Sent Events frame, rendered once for all readers."""

    seq: int
    channel: str
    event: str
    frame: str


class Subscription:
    """One reader's queue of events for a set of channels.

    Read it from a thread with :meth:`wait` or from an event loop with :meth:`wait_async`, then
    :meth:`drain`. A reader that falls ``max_queue`` events behind is closed (``overflowed``): its
    client reconnects with ``Last-Event-ID`` and gets the rest from the history.
    """

    def __init__(self, broker: Broker, channels: tuple[str, ...], *, max_queue: int):
        self.broker = broker
        self.channels = channels
        self.max_queue = max_queue
        self.closed = False
        self.overflowed = False
        self._items: deque[StoredEvent] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_ready: asyncio.Event | None = None
        # A wake-up of the reader's loop is on its way: the next pushes need not send another
        # (each call_soon_threadsafe writes to the loop's self-pipe).
        self._waking = False

    def push(self, item: StoredEvent) -> None:
        with self._lock:
            if self.closed:
                return
            if len(self._items) >= self.max_queue:
                self.overflowed = True
                self.closed = True
            else:
                self._items.append(item)
            self._notify()

    def preload(self, items: list[StoredEvent]) -> None:
        """Queue replayed history (already bounded by the history size, so not by ``max_queue``)."""
        with self._lock:
            self._items.extend(items)
            self._notify()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._notify()

    def _notify(self) -> None:
        self._ready.set()
        if self._loop is not None and not self._waking:
            self._waking = True
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the reader's loop is gone: nothing to wake
                pass

    def _wake(self) -> None:
        # Cleared before the event is set: a push that still saw it set appended its item first,
        # so the reader woken here drains it.
        self._waking = False
        if self._async_ready is not None:
            self._async_ready.set()

    def drain(self) -> list[StoredEvent]:
        """The events queued since the last call."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._ready.clear()
            return items

    def wait(self, timeout: float | None) -> bool:
        """Block until there is something to drain (or the subscription closed); False on timeout."""
        return self._ready.wait(timeout)

    async def wait_async(self, timeout: float | None) -> bool:  # noqa: ASYNC109 - wait()'s twin, same argument
        if self._async_ready is None:
            self._loop = asyncio.get_running_loop()
            self._async_ready = asyncio.Event()
        with self._lock:
            if self._items or self.closed:
                return True
            self._async_ready.clear()
        try:
            await asyncio.wait_for(self._async_ready.wait(), timeout)
        except TimeoutError:
            return False
        return True


class Broker:
    """Channels, their readers and a bounded history, for one process."""

    def __init__(self, *, history_size: int = 200, history_channels: int = 1000, client_queue_size: int = 1000):
        self.history_size = history_size
        self.history_channels = history_channels
        self.client_queue_size = client_queue_size
        # Event ids are "<epoch>-<n>": an id from another process or an earlier run is not resumed.
        self.epoch = secrets.token_hex(4)
        self._seq = 0
        self._lock = threading.Lock()
        self._history: OrderedDict[str, deque[StoredEvent]] = OrderedDict()
        self._subscribers: dict[str, set[Subscription]] = {}
        # Open subscriptions per holder key, and the keys each subscription counts under.
        self._held: dict[str, int] = {}
        self._holders: dict[Subscription, tuple[str, ...]] = {}
        self.closed = False

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def publish(self, channel: str, event: str, payload: dict[str, Any]) -> StoredEvent:
        with self._lock:
            self._seq += 1
            data = encode({**payload, "channel": channel})
            item = StoredEvent(
                self._seq, channel, event, f"id: {self.event_id(self._seq)}\nevent: {event}\ndata: {data}\n\n"
            )
            if self.history_size > 0:
                history = self._history.get(channel)
                if history is None:
                    history = self._history[channel] = deque(maxlen=self.history_size)
                    while len(self._history) > self.history_channels:
                        self._history.popitem(last=False)
                else:
                    self._history.move_to_end(channel)
                history.append(item)
            for subscription in self._subscribers.get(channel, ()):
                subscription.push(item)
            return item

    def subscribe(
        self,
        channels: Iterable[str],
        *,
        last_event_id: str | None = None,
        limits: Mapping[str, int | None] | None = None,
    ) -> Subscription:
        """Start reading ``channels``; with ``last_event_id``, first the held events after it.

        ``limits`` maps holder keys (``"<kind>:<id>"``, e.g. ``"visitor:user-5"``) to the most
        open subscriptions each may have (None: no limit); the new one counts under every key
        until :meth:`unsubscribe`. :class:`TooManyStreams` when one of them is full; nothing is
        counted then.
        """
        channels = tuple(dict.fromkeys(channels))
        subscription = Subscription(self, channels, max_queue=self.client_queue_size)
        after = self._parse_event_id(last_event_id)
        limits = dict(limits or {})
        with self._lock:
            if self.closed:
                subscription.close()
                return subscription
            for key, most in limits.items():
                if most is not None and self._held.get(key, 0) >= most:
                    kind = key.partition(":")[0]
                    raise TooManyStreams(
                        f"At most {most} event streams may be open at once per {kind}; close one, or read "
                        "several channels on one stream (?channel=a&channel=b)."
                    )
            for key in limits:
                self._held[key] = self._held.get(key, 0) + 1
            if limits:
                self._holders[subscription] = tuple(limits)
            if after is not None:
                missed = sorted(
                    (item for channel in channels for item in self._history.get(channel, ()) if item.seq > after),
                    key=lambda item: item.seq,
                )
                subscription.preload(missed)
            for channel in channels:
                self._subscribers.setdefault(channel, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop ``subscription`` and free its place under its holders; calling it again does
        nothing."""
        with self._lock:
            for channel in subscription.channels:
                readers = self._subscribers.get(channel)
                if readers is not None:
                    readers.discard(subscription)
                    if not readers:
                        del self._subscribers[channel]
            for key in self._holders.pop(subscription, ()):
                left = self._held[key] - 1
                if left:
                    self._held[key] = left
                else:
                    del self._held[key]
        subscription.close()

    def held(self, key: str) -> int:
        """Open subscriptions counted under the holder ``key``."""
        with self._lock:
            return self._held.get(key, 0)

    def subscriber_count(self, channel: str | None = None) -> int:
        with self._lock:
            if channel is not None:
                return len(self._subscribers.get(channel, ()))
            return len({s for readers in self._subscribers.values() for s in readers})

    def close(self) -> None:
        """End every open stream (their clients reconnect to the next broker)."""
        with self._lock:
            self.closed = True
            readers = {s for group in self._subscribers.values() for s in group}
            self._subscribers.clear()
            self._held.clear()
            self._holders.clear()
        for subscription in readers:
            subscription.close()

    def _parse_event_id(self, value: str | None) -> int | None:
        if not value:
            return None
        epoch, _, number = str(value).strip().partition("-")
        # ASCII digits only (str.isdigit also accepts "²", which int() refuses), and a sane length.
        if epoch != self.epoch or not (number.isascii() and number.isdigit()) or len(number) > 20:
            return None
        return int(number)


#: Sent first on every stream: the reconnection delay for EventSource, and a comment.
STREAM_PREAMBLE = "retry: 2000\n: connected\n\n"
HEARTBEAT = ": ping\n\n"
#: An idle stream's heartbeat comes after between this share of the interval and the whole of it.
HEARTBEAT_JITTER = 0.25


def heartbeat_delay(interval: float) -> float:
    """The idle time before a stream's next heartbeat: at most ``interval`` (proxies' read
    timeouts are set above it), at least ``1 - HEARTBEAT_JITTER`` of it, drawn anew for each
    wait. Streams opened together (clients reconnecting after a restart) or fed together (a burst
    of events) would otherwise send their heartbeats in the same instant, thousands of writes at
    once every interval; drawn, they drift apart."""
    return interval * random.uniform(1 - HEARTBEAT_JITTER, 1.0)  # spreading load, not a secret


def sse_frames(subscription: Subscription, *, heartbeat: float) -> Iterator[str]:
    """Server-Sent Events text for a thread-per-request server (WSGI, runserver).

    A heartbeat comment goes out after ``heartbeat`` idle seconds, which also notices a client that
    has gone (the write fails and the server closes this generator).
    """
    try:
        yield STREAM_PREAMBLE
        while True:
            items = subscription.drain()
            if items:
                yield "".join(item.frame for item in items)
            if subscription.closed:
                return
            if not items and not subscription.wait(heartbeat_delay(heartbeat)):
                yield HEARTBEAT
    finally:
        subscription.broker.unsubscribe(subscription)


async def sse_frames_async(subscription: Subscription, *, heartbeat: float) -> AsyncGenerator[str]:
    """The same stream for ASGI servers: waits on the event loop, holds no thread."""
    try:
        yield STREAM_PREAMBLE
        while True:
            items = subscription.drain()
            if items:
                yield "".join(item.frame for item in items)
            if subscription.closed:
                return
            if not items and not await subscription.wait_async(heartbeat_delay(heartbeat)):
                yield HEARTBEAT
    finally:
        subscription.broker.unsubscribe(subscription)


class LocalBackend(QueuedBackend):
    """In-process broker plus the Server-Sent Events endpoint.

    Sending goes through the same coalescing sender thread as Pusher, so clients see the same
    ``text_chunk`` events (with ``offset``) whichever backend runs. Subclass it to change the
    broker's limits (override :meth:`get_broker`).
    """

    name = "local"
    default_options: ClassVar[dict[str, Any]] = {
        "HEARTBEAT_INTERVAL": 15.0,
        "HISTORY_SIZE": 200,
        "HISTORY_CHANNELS": 1000,
        "CLIENT_QUEUE_SIZE": 1000,
        "MAX_STREAMS_PER_VISITOR": 10,
        "MAX_ANONYMOUS_STREAMS_PER_ADDRESS": 100,
        "COALESCE_WINDOW": 0.05,
        "MAX_PENDING": 10_000,
    }

    def __init__(self, *, options: dict[str, Any] | None = None):
        super().__init__(options=options)
        self.heartbeat = float(self.options["HEARTBEAT_INTERVAL"])
        self.broker = self.get_broker()
        self.sender = EventSender(
            deliver=self._deliver,
            name=self.name,
            window=float(self.options["COALESCE_WINDOW"]),
            max_batch=100,
            max_event_bytes=None,
            max_pending=int(self.options["MAX_PENDING"]),
        )

    def get_broker(self) -> Broker:
        return Broker(
            history_size=int(self.options["HISTORY_SIZE"]),
            history_channels=int(self.options["HISTORY_CHANNELS"]),
            client_queue_size=int(self.options["CLIENT_QUEUE_SIZE"]),
        )

    def stream_limits(self) -> tuple[int | None, int | None]:
        """(streams one visitor may hold open, streams of all anonymous visitors of one client
        address together) in this process; None: no limit."""
        per_visitor = self.options["MAX_STREAMS_PER_VISITOR"]
        per_address = self.options["MAX_ANONYMOUS_STREAMS_PER_ADDRESS"]
        return (None if per_visitor is None else int(per_visitor), None if per_address is None else int(per_address))

    def close(self) -> None:
        super().close()
        self.broker.close()

    def _deliver(self, events: list[OutgoingEvent]) -> None:
        for event in events:
            self.broker.publish(event.channel, event.event, event.payload)

    def client_config(self, request: Request) -> dict[str, Any]:
        return {"backend": self.name}
