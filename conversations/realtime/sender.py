"""The per-process sender thread: agent code queues events, a daemon thread delivers them.

``send()`` costs the agent a lock and an append (no I/O, no JSON); ``send_text()``, what a
streamed write calls, not even an event: its text joins the message's waiting run, and the run
becomes an event (``id``, ``timestamp``, ``offset``) once, when the thread takes it. The thread
takes due events from a :class:`~.coalescer.Coalescer` and hands them, at most ``max_batch`` at a
time, to the backend's ``deliver`` function. While a delivery is slow, new chunks of a message join the run waiting in
the queue, so the queue holds longer runs instead of more items.

Failures never reach agent code: the first failed delivery of an outage is logged with its
traceback, later ones only at DEBUG level, and recovery is logged with the number of events that
were lost. Those events are ephemeral (the database rows are the truth; clients reconcile from
them, see docs/realtime.md).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

from .. import telemetry
from .base import BaseRealtimeBackend
from .coalescer import Coalescer, FlushMarker, OutgoingEvent

__all__ = ["EventSender"]

logger = logging.getLogger("django_ai.conversations.realtime")

#: Seconds ``atexit`` waits for queued events of each sender when the process ends.
SHUTDOWN_FLUSH_TIMEOUT = 5.0

_live_senders: weakref.WeakSet[EventSender] = weakref.WeakSet()


class EventSender:
    """Queue plus delivery thread for one backend.

    ``deliver(events)`` sends up to ``max_batch`` events (one HTTP request for Pusher) and raises on
    failure. ``retries`` extra attempts are made while the transport is healthy; during an outage
    each batch is tried once, ``outage_backoff`` seconds apart, so the queue coalesces meanwhile.
    ``align`` and ``linger`` fill batches (see :mod:`.coalescer`): a transport that charges per
    request (Pusher) turns them on.
    """

    def __init__(
        self,
        *,
        deliver: Callable[[list[OutgoingEvent]], None],
        name: str,
        window: float,
        max_batch: int = 10,
        max_event_bytes: int | None = None,
        max_pending: int = 10_000,
        align: bool = False,
        linger: float = 0.0,
        retries: int = 1,
        retry_delay: float = 0.1,
        outage_backoff: float = 0.5,
    ):
        self.deliver = deliver
        self.name = name
        self.retries = retries
        self.retry_delay = retry_delay
        self.outage_backoff = outage_backoff
        self._config: dict[str, Any] = {
            "window": window,
            "max_batch": max_batch,
            "max_event_bytes": max_event_bytes,
            "max_pending": max_pending,
            "align": align,
            "linger": linger,
        }
        self._setup()
        _live_senders.add(self)
        # Telemetry decided (OpenTelemetry loaded, when on) here, in the caller, rather than on
        # the sender thread at the first delivery, which would wait for it.
        telemetry.enabled()

    def _setup(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue = Coalescer(**self._config)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closing = False
        self._inflight: threading.Event | None = None
        self._failing = False
        self._lost = 0
        self._lost_before_outage = 0
        #: Counters for tests and benchmarks.
        self.requests = 0
        self.events_sent = 0
        self.failures = 0

    @property
    def dropped(self) -> int:
        """Items dropped because the queue was full (only during an outage)."""
        return self._queue.dropped

    @property
    def lost(self) -> int:
        """Events given up on after failed deliveries, plus dropped items."""
        return self._lost + self._queue.dropped

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def send(self, channel: str, event: str, payload: dict[str, Any]) -> None:
        """Queue one event; returns at once."""
        if self._pid != os.getpid():
            # A forked child inherits the queue but not the thread: start afresh.
            self._setup()
        with self._cond:
            if self._closing:
                raise RuntimeError(f"The {self.name} realtime sender is closed.")
            wake = self._queue.add(channel, event, payload)
            if self._thread is None:
                self._start()
            elif wake:
                self._cond.notify()

    def send_text(self, channel: str, template: dict[str, Any], sequence: int, text: str) -> None:
        """Queue one streamed write (see :meth:`.coalescer.Coalescer.add_text`); returns at once.

        The hot path of ``ResponseStream.write()``: no ``getpid()`` here (a forked child is set up
        afresh by the ``register_at_fork`` hook below)."""
        with self._lock:
            if self._closing:
                raise RuntimeError(f"The {self.name} realtime sender is closed.")
            if self._queue.add_text(channel, template, sequence, text):
                if self._thread is None:
                    self._start()
                else:
                    self._cond.notify()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"django-ai-realtime-{self.name}", daemon=True)
        self._thread.start()

    def flush(self, timeout: float | None = None, *, channel: str | None = None) -> bool:
        """Send everything queued so far (on ``channel`` only, when given) without waiting for the
        window, and wait up to ``timeout`` seconds (None: no limit, 0: do not wait) until it has
        been delivered or given up on. True when it was."""
        if self._pid != os.getpid():
            return True
        done = threading.Event()
        with self._cond:
            if self._thread is None:
                return True
            self._queue.add_marker(lambda count: FlushMarker(count, done.set), channel)
            inflight = self._inflight
            self._cond.notify()
        if timeout == 0:
            return done.is_set() and (inflight is None or inflight.is_set())
        deadline = None if timeout is None else time.monotonic() + timeout
        if not done.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
            return False
        if inflight is not None:
            return inflight.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return True

    def close(self, timeout: float = SHUTDOWN_FLUSH_TIMEOUT) -> None:
        """Deliver what is queued (up to ``timeout`` seconds) and stop the thread."""
        if self._pid != os.getpid():
            return
        self.flush(timeout)
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    events, markers = self._queue.take()
                    if events or markers:
                        inflight = self._inflight = threading.Event()
                        break
                    if self._closing and not len(self._queue):
                        return
                    deadline = self._queue.next_deadline()
                    self._cond.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            try:
                if events:
                    self._deliver(events)
            finally:
                for marker in markers:
                    marker.release()
                inflight.set()

    def _deliver(self, events: list[OutgoingEvent]) -> None:
        # Every backend that queues (Pusher, the local SSE broker) delivers here: one span and one
        # metric record per batch, its retries included.
        attributes = {"django_ai.realtime.backend": self.name, "django_ai.realtime.events": len(events)}
        started, requests, sent = time.monotonic(), self.requests, self.events_sent
        with telemetry.span("django_ai.realtime.flush", attributes) as span:
            failure = self._deliver_batch(events)
            if failure is not None:
                span.error(failure)
            span.set(**{"django_ai.realtime.requests": self.requests - requests})
        telemetry.record_realtime_flush(
            backend=self.name,
            events=self.events_sent - sent,
            requests=self.requests - requests,
            seconds=time.monotonic() - started,
        )

    def _deliver_batch(self, events: list[OutgoingEvent]) -> Exception | None:
        """Deliver ``events`` (retried while the transport is healthy); the error that made it give
        up on them, or None once delivered."""
        attempts = 1 if self._failing else 1 + self.retries
        for attempt in range(attempts):
            self.requests += 1
            try:
                self.deliver(events)
            except Exception as exc:
                self.failures += 1
                if attempt + 1 < attempts:
                    time.sleep(self.retry_delay * (attempt + 1))
                    continue
                self._lost += len(events)
                if not self._failing:
                    self._failing = True
                    self._lost_before_outage = self.lost - len(events)
                    logger.exception(
                        "Realtime delivery through the %s backend failed; %d event(s) were not sent. "
                        "Further failures are not logged until delivery works again.",
                        self.name,
                        len(events),
                    )
                else:
                    logger.debug("Realtime delivery through the %s backend still failing", self.name, exc_info=True)
                if not self._closing:
                    time.sleep(self.outage_backoff)
                return exc
            else:
                self.events_sent += len(events)
                if self._failing:
                    self._failing = False
                    logger.warning(
                        "Realtime delivery through the %s backend works again; %d event(s) were lost meanwhile.",
                        self.name,
                        self.lost - self._lost_before_outage,
                    )
                return None
        return None


class QueuedBackend(BaseRealtimeBackend):
    """A backend whose events go through an :class:`EventSender` (``self.sender``, built by the
    subclass): agent code only queues, the sender thread coalesces and delivers."""

    sender: EventSender

    def send(self, channel: str, event: str, payload: dict[str, Any]) -> None:
        self.sender.send(channel, event, payload)

    def send_text(self, channel: str, template: dict[str, Any], sequence: int, text: str) -> None:
        self.sender.send_text(channel, template, sequence, text)

    def text_sink(self, channel: str, template: dict[str, Any]) -> Callable[[int, str], None]:
        # Straight to the sender: a write costs one call less per layer.
        return partial(self.sender.send_text, channel, template)

    def flush(self, timeout: float | None = None) -> None:
        self.sender.flush(timeout)

    def flush_channel(self, channel: str, timeout: float | None = None) -> None:
        self.sender.flush(timeout, channel=channel)

    def close(self) -> None:
        self.sender.close()


def _reset_after_fork() -> None:
    for sender in list(_live_senders):
        sender._setup()


os.register_at_fork(after_in_child=_reset_after_fork)


@atexit.register
def _flush_at_exit() -> None:
    for sender in list(_live_senders):
        try:
            sender.close(SHUTDOWN_FLUSH_TIMEOUT)
        except Exception:
            logger.exception("Flushing realtime events at exit failed")
