"""The queue between agent code and a realtime transport: coalesces ``text_chunk`` events.

:class:`Coalescer` is a plain data structure (no threads, no I/O; :mod:`.sender` drives it):

- events are kept per channel, in the order they were added;
- consecutive ``text_chunk`` events of one message on one channel merge into one *run* while the run
  waits: a channel sends at most one text event per window. The first write of a burst leaves at
  once (its channel sent no text within the window); later ones wait until the window since the
  last text event has passed, or until anything else is queued behind them (``stream_end``, a
  widget, a flush marker);
- with ``align``, windows are one grid of ticks (multiples of the window on the clock) shared by
  every channel: a busy channel's run is due at the next tick after its last text event, so the
  runs of many streams fall due together and fill batches. A channel is idle (its next write
  leaves at once) only when it sent no text for two windows: one that skipped a tick still waits
  for the next one;
- with ``linger``, events due at once (anything but a window's text: a leading write, a widget,
  ``stream_start``...) wait up to ``linger`` seconds for more to fill a batch, unless a batch is
  already full, a window's text is due, or a flush is pending (Nagle's trade: a few milliseconds
  for several events per request);
- writes reach the queue as bare text (:meth:`Coalescer.add_text`: no event, no id, no timestamp):
  a run is turned into wire events only when the sender takes it, so a slow server makes runs
  longer (more coalescing) instead of making the queue longer;
- a run's text is split into several events when one would exceed ``max_event_bytes`` (Pusher
  accepts 10 KB per event): text is never dropped because it is long;
- every ``text_chunk`` that leaves gets ``offset`` (where its text starts in the message's streamed
  text, in UTF-16 code units), ``first_sequence`` and ``sequence``. See docs/protocol.md, "Resuming a
  stream", for how clients use them;
- every ``text_chunk`` that leaves also gets its own ``id`` and a ``timestamp`` of when it was
  built: the writes it carries had ids of their own, but several events cut from one run must not
  share one (a client that de-duplicates by ``id`` would lose text).
"""

from __future__ import annotations

import json
import math
import time
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .events import TEXT_CHUNK, event_timestamp, new_event_id

__all__ = ["Coalescer", "FlushMarker", "OutgoingEvent", "encoded_size", "split_text", "utf16_len"]


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (what JavaScript's ``String.length`` counts)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def encode(payload: dict[str, Any]) -> str:
    """The JSON text of a payload as it goes over the wire (compact, UTF-8 friendly)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` once JSON-encoded and UTF-8 encoded."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8"))


def split_text(text: str, budget: int) -> list[str]:
    """Cut ``text`` into pieces whose JSON string encoding takes at most ``budget`` bytes each.

    Cuts fall between code points, so no piece holds half a character.
    """
    if budget < 16:
        raise ValueError(f"A text budget of {budget} bytes is too small to carry text.")
    pieces: list[str] = []
    start = 0
    while start < len(text):
        rest = len(text) - start
        # A character takes at most 6 bytes in JSON (\u00XX escapes); start optimistic and shrink.
        n = min(rest, budget - 2)
        while True:
            size = encoded_size(text[start : start + n])
            if size <= budget:
                break
            n = max(1, min(n - 1, n * (budget - 2) // size))
        pieces.append(text[start : start + n])
        start += n
    return pieces


@dataclass
class OutgoingEvent:
    """One event ready for the transport."""

    channel: str
    event: str
    payload: dict[str, Any]


class FlushMarker:
    """Queued behind everything a ``flush()`` waits for; released when the sender has sent what
    preceded it on every channel it was placed in."""

    def __init__(self, count: int, on_done: Callable[[], None]):
        self._remaining = count
        self._on_done = on_done
        if count == 0:
            on_done()

    def release(self) -> None:
        self._remaining -= 1
        if self._remaining == 0:
            self._on_done()


@dataclass
class _Event:
    channel: str
    event: str
    payload: dict[str, Any]
    #: When it was queued (it is due from then on; ``linger`` counts from here).
    since: float = float("-inf")


@dataclass
class _Marker:
    """Where flushes wait on one channel: the flushes made while nothing was queued on the
    channel after the previous one share it, so markers never outnumber the events."""

    markers: list[FlushMarker]


@dataclass
class _Run:
    """Consecutive text chunks of one message."""

    channel: str
    message_id: str
    template: dict[str, Any]
    ready_at: float
    first_sequence: int
    sequence: int
    texts: list[str] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    #: Due at once (its channel was idle) rather than at a window's end: it may linger.
    leading: bool = False
    #: When it was queued.
    since: float = float("-inf")


_Item = _Event | _Marker | _Run

#: The fields of a ``text_chunk`` payload that belong to one write, not to its stream.
_RUN_FIELDS = frozenset({"id", "timestamp", "text", "sequence", "first_sequence", "offset"})


class Coalescer:
    """Per-channel queues of pending events with text coalescing. Not thread-safe: the caller
    (the sender) holds a lock around every call.

    ``max_pending`` bounds the number of queued items (runs count as one): when it is reached the
    oldest item is dropped and counted in :attr:`dropped` (only in an outage, when nothing drains).
    ``align`` and ``linger`` (off by default) make batches fuller; see the module docstring.
    """

    def __init__(
        self,
        *,
        window: float,
        max_batch: int = 10,
        max_event_bytes: int | None = None,
        max_pending: int = 10_000,
        max_tracked_messages: int = 10_000,
        align: bool = False,
        linger: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1.")
        self.window = float(window)
        self.max_batch = int(max_batch)
        self.max_event_bytes = max_event_bytes
        self.max_pending = int(max_pending)
        self.max_tracked_messages = int(max_tracked_messages)
        self.align = bool(align) and self.window > 0
        self.linger = float(linger)
        self.clock = clock
        self._channels: OrderedDict[str, deque[_Item]] = OrderedDict()
        self._count = 0
        self._markers = 0
        # Per message: UTF-16 units sent so far (the next chunk's offset). Bounded, oldest first out.
        self._offsets: OrderedDict[str, int] = OrderedDict()
        # Per channel: when its last text event left (recent ones only), for the leading edge.
        self._text_sent: OrderedDict[str, float] = OrderedDict()
        # How long a channel that sent text stays busy (its next run waits for a window).
        self._busy_for = 2 * self.window if self.align else self.window
        #: Items dropped because ``max_pending`` was reached.
        self.dropped = 0

    def __len__(self) -> int:
        return self._count

    def add(self, channel: str, event: str, payload: dict[str, Any]) -> bool:
        """Queue one event; True when the sender should wake up (something new may be due).

        A ``text_chunk`` payload with an int ``sequence`` joins the text of its message
        (:meth:`add_text`); its ``id`` and ``timestamp`` are replaced when the run leaves."""
        if event == TEXT_CHUNK and isinstance(payload.get("sequence"), int):
            template = {k: v for k, v in payload.items() if k not in _RUN_FIELDS}
            return self.add_text(channel, template, payload["sequence"], payload.get("text") or "")
        self._push(channel, self._channels.get(channel), _Event(channel, event, payload, self.clock()))
        return True

    def add_text(self, channel: str, template: dict[str, Any], sequence: int, text: str) -> bool:
        """Queue write ``sequence`` of the message ``template["message_id"]``: appended to the run
        waiting at the tail of ``channel`` when it continues it (the common case: a list append),
        else a new run. ``template`` is the payload's fixed part, copied into every event the run
        becomes. True when the sender should wake up."""
        queue = self._channels.get(channel)
        if queue:
            last = queue[-1]
            if (
                type(last) is _Run
                and sequence == last.sequence + 1
                and (last.template is template or last.message_id == str(template.get("message_id")))
            ):
                last.texts.append(text)
                last.sequences.append(sequence)
                last.sequence = sequence
                return False
        now = self.clock()
        ready_at, leading = self._ready_at(channel, now)
        run = _Run(
            channel=channel,
            message_id=str(template.get("message_id")),
            template=template,
            ready_at=ready_at,
            first_sequence=sequence,
            sequence=sequence,
            texts=[text],
            sequences=[sequence],
            leading=leading,
            since=now,
        )
        self._push(channel, queue, run)
        return True

    def _ready_at(self, channel: str, now: float) -> tuple[float, bool]:
        """When a new run of ``channel`` is due, and whether it leads a burst. Due at once when its
        channel sent no text lately (the first write of a burst leaves immediately), else when the
        window since that text has passed (aligned: at the next tick of the shared grid)."""
        while self._text_sent:
            oldest, at = next(iter(self._text_sent.items()))
            if at > now - self._busy_for:
                break
            del self._text_sent[oldest]
        last = self._text_sent.get(channel)
        if last is None:
            return now, True
        if not self.align:
            return last + self.window, False
        tick = self._tick_after(last)
        return (tick if tick > now else self._tick_after(now)), False

    def _tick_after(self, at: float) -> float:
        return (math.floor(at / self.window) + 1) * self.window

    def add_marker(self, marker_factory: Callable[[int], FlushMarker], channel: str | None = None) -> FlushMarker:
        """Queue a flush marker behind the current tail of every channel, or of ``channel`` only
        (joining the marker at the tail, when there is one: many streams ending at once flush many
        times)."""
        channels = list(self._channels) if channel is None else [channel] if channel in self._channels else []
        marker = marker_factory(len(channels))
        for channel in channels:
            queue = self._channels[channel]
            tail = queue[-1]
            if isinstance(tail, _Marker):
                tail.markers.append(marker)
            else:
                queue.append(_Marker([marker]))
                self._count += 1
                self._markers += 1
        return marker

    def _push(self, channel: str, queue: deque[_Item] | None, item: _Item) -> None:
        if queue is None:
            queue = self._channels[channel] = deque()
        queue.append(item)
        self._count += 1
        # Flush markers do not count: they free nothing by being dropped, and are bounded by
        # the events (at most one after each).
        while self._count - self._markers > self.max_pending:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        for channel, queue in self._channels.items():
            for index, item in enumerate(queue):
                if isinstance(item, _Marker):
                    continue
                del queue[index]
                self._count -= 1
                self.dropped += 1
                if isinstance(item, _Run):
                    # Its text never goes out; later chunks keep their true offsets anyway.
                    self._advance(item.message_id, utf16_len("".join(item.texts)))
                if not queue:
                    del self._channels[channel]
                return
        return

    def next_deadline(self) -> float | None:
        """When the next item becomes due (a clock value), or None when nothing is queued."""
        deadline: float | None = None
        waiting: float | None = None  # the earliest run that is not due yet
        for queue in self._channels.values():
            head = queue[0]
            due = head.ready_at if isinstance(head, _Run) and len(queue) == 1 else float("-inf")
            if deadline is None or due < deadline:
                deadline = due
            if due != float("-inf") and (waiting is None or due < waiting):
                waiting = due
        if self.linger > 0 and deadline is not None:
            now = self.clock()
            if deadline <= now:
                held = self._held_until(now)
                if held is not None:
                    return held if waiting is None or waiting <= now else min(held, waiting)
        return deadline

    def _held_until(self, now: float) -> float | None:
        """While only lingering events are due and fewer than a batch: when they must leave.
        None when what is due leaves now."""
        if self._markers:
            return None
        due = 0
        oldest = float("inf")
        for queue in self._channels.values():
            count = len(queue)
            tail = queue[-1]
            if isinstance(tail, _Run) and now < tail.ready_at:
                count -= 1  # the run still gathering its window
            if not count:
                continue
            due += count
            head = queue[0]
            if isinstance(head, _Run) and head.ready_at <= now:
                if not head.leading:
                    return None  # a window's text is due: it leaves now, with whatever else is due
                oldest = min(oldest, head.ready_at)
            else:
                # An event, or a run made due by what was queued behind it: lingers from then.
                item = head if isinstance(head, _Event) else queue[1]
                oldest = min(oldest, item.since if isinstance(item, _Event | _Run) else now)
        if due >= self.max_batch or oldest + self.linger <= now:
            return None
        return oldest + self.linger

    def take(self) -> tuple[list[OutgoingEvent], list[FlushMarker]]:
        """Up to ``max_batch`` due events, in per-channel order, and the flush markers passed on
        the way (release them once the events are sent). Channels take turns, one item each."""
        now = self.clock()
        out: list[OutgoingEvent] = []
        markers: list[FlushMarker] = []
        if self.linger > 0 and self._held_until(now) is not None:
            return out, markers
        while len(out) < self.max_batch:
            progressed = False
            for channel in list(self._channels):
                if len(out) >= self.max_batch:
                    break
                queue = self._channels[channel]
                while queue and isinstance(queue[0], _Marker):
                    markers.extend(queue.popleft().markers)  # type: ignore[union-attr]
                    self._count -= 1
                    self._markers -= 1
                    progressed = True
                if queue and not (isinstance(queue[0], _Run) and len(queue) == 1 and now < queue[0].ready_at):
                    head = queue.popleft()
                    self._count -= 1
                    progressed = True
                    if isinstance(head, _Event):
                        out.append(OutgoingEvent(head.channel, head.event, head.payload))
                    else:
                        assert isinstance(head, _Run)
                        events = self._materialize(head)
                        room = self.max_batch - len(out)
                        out.extend(events[:room])
                        for extra in reversed(events[room:]):
                            queue.appendleft(_Event(extra.channel, extra.event, extra.payload))
                            self._count += 1
                    # The next item of this channel waits until the others had their turn.
                    self._channels.move_to_end(channel)
                if not queue:
                    del self._channels[channel]
            if not progressed:
                break
        return out, markers

    def _advance(self, message_id: str, units: int) -> int:
        start = self._offsets.pop(message_id, 0)
        self._offsets[message_id] = start + units
        while len(self._offsets) > self.max_tracked_messages:
            self._offsets.popitem(last=False)
        return start

    def _materialize(self, run: _Run) -> list[OutgoingEvent]:
        self._text_sent.pop(run.channel, None)
        self._text_sent[run.channel] = self.clock()
        text = "".join(run.texts)
        offset = self._advance(run.message_id, utf16_len(text))

        timestamp = event_timestamp()

        def event(piece: str, start: int, first: int, last: int) -> OutgoingEvent:
            payload = {"id": new_event_id(), **run.template, "timestamp": timestamp}
            payload.update(first_sequence=first, sequence=last, offset=start, text=piece)
            return OutgoingEvent(run.channel, TEXT_CHUNK, payload)

        if self.max_event_bytes is None:
            return [event(text, offset, run.first_sequence, run.sequence)]
        # Sized with the longest id and timestamp an event gets (an ISO time with microseconds).
        overhead = encoded_size(
            {
                **run.template,
                "id": "0" * 32,
                "timestamp": "0" * 32,
                "first_sequence": run.sequence,
                "sequence": run.sequence,
                "offset": offset + utf16_len(text),
                "text": "",
            }
        )
        budget = self.max_event_bytes - overhead
        if encoded_size(text) <= budget:
            return [event(text, offset, run.first_sequence, run.sequence)]
        # Where each write ends in the joined text (code points), to name the writes of each piece.
        ends: list[int] = []
        total = 0
        for part in run.texts:
            total += len(part)
            ends.append(total)
        events: list[OutgoingEvent] = []
        position = 0
        for piece in split_text(text, budget):
            first = run.sequences[bisect_right(ends, position)]
            last = run.sequences[bisect_right(ends, position + len(piece) - 1)]
            events.append(event(piece, offset, first, last))
            offset += utf16_len(piece)
            position += len(piece)
        return events
