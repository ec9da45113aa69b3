"""Fuller batches and cheap writes: streamed text reaches the queue as bare text (one event built
per window), windows of all streams are aligned on one grid of ticks, and events due at once may
linger for a fuller batch (``Coalescer(align=True, linger=...)``, what the Pusher backend uses).

The coalescer is driven with a fake clock and the sender through a gate, as in
test_realtime_coalescer/_sender: nothing here depends on how fast the machine is."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.realtime import get_backend, reset_backend
from django_ai.conversations.realtime.coalescer import Coalescer, FlushMarker, OutgoingEvent
from django_ai.conversations.realtime.sender import EventSender, QueuedBackend
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from tests.test_realtime_sender import Transport

WINDOW = 0.25  # exact in binary floating point, so the ticks below are exact too


def channel(n: int) -> str:
    return f"private-conversation-session-00000000-0000-0000-0000-{n:012d}"


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def stream(n: int) -> dict:
    return {"session_id": f"s{n}", "message_id": f"m{n}"}


def make(**kwargs) -> tuple[Coalescer, Clock]:
    clock = Clock()
    kwargs.setdefault("window", WINDOW)
    kwargs.setdefault("align", True)
    return Coalescer(clock=clock, **kwargs), clock


def texts(events: list[OutgoingEvent]) -> list[tuple[str, str]]:
    return [(e.channel, e.payload["text"]) for e in events]


def test_writes_become_one_event_per_window_built_when_it_leaves():
    queue, clock = make()
    template = stream(1)
    queue.add_text(channel(1), template, 1, "Hel")
    (first,), _ = queue.take()  # an idle channel: the first write leaves at once
    for seq, text in enumerate(["lo ", "wor", "ld"], start=2):
        clock.now += 0.01
        assert queue.add_text(channel(1), template, seq, text) is (seq == 2)  # later writes only append
    assert len(queue) == 1 and queue.take() == ([], [])
    clock.now = 100.25
    (second,), _ = queue.take()
    assert {k: v for k, v in second.payload.items() if k not in ("id", "timestamp")} == {
        "session_id": "s1",
        "message_id": "m1",
        "first_sequence": 2,
        "sequence": 4,
        "offset": 3,
        "text": "lo world",
    }
    assert first.payload["id"] != second.payload["id"] and len(second.payload["id"]) == 32
    assert "timestamp" in second.payload
    assert template == stream(1)  # the stream's template is copied, never written to


def test_the_windows_of_different_streams_end_on_the_same_tick():
    queue, clock = make()
    # Two streams that started at different times, each sent its first write at once ...
    queue.add_text(channel(1), stream(1), 1, "a")
    assert texts(queue.take()[0]) == [(channel(1), "a")]
    clock.now = 100.1
    queue.add_text(channel(2), stream(2), 1, "b")
    assert texts(queue.take()[0]) == [(channel(2), "b")]
    # ... and their next writes wait for the same tick (100.25), not for 100.25 and 100.35.
    clock.now = 100.2
    queue.add_text(channel(1), stream(1), 2, "c")
    queue.add_text(channel(2), stream(2), 2, "d")
    assert queue.next_deadline() == 100.25
    clock.now = 100.25
    assert sorted(texts(queue.take()[0])) == [(channel(1), "c"), (channel(2), "d")]


def test_a_channel_that_skipped_a_tick_waits_for_the_next_one_and_an_idle_one_does_not():
    queue, clock = make()
    queue.add_text(channel(1), stream(1), 1, "a")
    queue.take()  # sent at 100.0
    clock.now = 100.3  # tick 100.25 had nothing to send; within two windows of the last text
    queue.add_text(channel(1), stream(1), 2, "b")
    assert queue.take() == ([], []) and queue.next_deadline() == 100.5
    clock.now = 100.5
    assert texts(queue.take()[0]) == [(channel(1), "b")]
    clock.now = 101.0  # two windows without text: idle, the next write leads a new burst
    queue.add_text(channel(1), stream(1), 3, "c")
    assert texts(queue.take()[0]) == [(channel(1), "c")]


def test_events_due_at_once_linger_until_a_batch_is_full():
    queue, clock = make(linger=0.002, max_batch=3)
    queue.add(channel(1), "stream_start", {"message_id": "m1"})
    queue.add(channel(2), "stream_start", {"message_id": "m2"})
    assert queue.take() == ([], []) and queue.next_deadline() == pytest.approx(100.002)
    queue.add_text(channel(3), stream(3), 1, "leading write")  # idle channel: due at once, lingers too
    events, _ = queue.take()  # three due: a full batch leaves without waiting
    assert [e.channel for e in events] == [channel(1), channel(2), channel(3)]


def test_lingering_ends_after_the_wait_at_a_window_end_or_at_a_flush():
    queue, clock = make(linger=0.002)
    queue.add(channel(1), "widget", {"n": 1})
    assert queue.take() == ([], [])
    clock.now += 0.002
    assert [e.payload for e in queue.take()[0]] == [{"n": 1}]  # waited its 2 ms, then left alone

    # A window's text leaves on its tick and takes the lingering event with it.
    queue.add_text(channel(2), stream(2), 1, "a")
    clock.now += 0.002
    queue.take()  # the leading write, after its wait
    clock.now = 100.24
    queue.add_text(channel(2), stream(2), 2, "b")  # due at the tick (100.25)
    clock.now = 100.249
    queue.add(channel(3), "widget", {"n": 2})
    assert queue.take() == ([], [])
    clock.now = 100.25
    assert sorted(e.channel for e in queue.take()[0]) == [channel(2), channel(3)]

    # A flush sends at once.
    queue.add(channel(1), "widget", {"n": 3})
    released: list[bool] = []
    queue.add_marker(lambda count: FlushMarker(count, lambda: released.append(True)))
    events, markers = queue.take()
    assert [e.payload for e in events] == [{"n": 3}] and len(markers) == 1


def test_many_busy_streams_fill_whole_batches():
    queue, clock = make(linger=0.002, max_batch=10)
    for n in range(25):
        queue.add_text(channel(n), stream(n), 1, "first")
    sizes = []
    while batch := queue.take()[0]:
        sizes.append(len(batch))
    assert sizes == [10, 10]  # 25 leading writes: two full batches; the rest waits ...
    clock.now += 0.002
    assert len(queue.take()[0]) == 5  # ... at most its 2 ms
    clock.now = 100.2
    for n in range(25):
        for seq in (2, 3, 4):
            queue.add_text(channel(n), stream(n), seq, "x")
    clock.now = 100.25
    tick = []
    while batch := queue.take()[0]:
        tick.append(len(batch))
    assert tick == [10, 10, 5]  # one event per stream, in three requests


def test_the_sender_sends_streamed_writes_in_full_batches():
    transport = Transport()
    sender = EventSender(deliver=transport, name="test", window=60, align=True, linger=60, max_batch=10)
    try:
        for n in range(25):
            sender.send_text(channel(n), stream(n), 1, f"w{n}")
        assert sender.flush(timeout=10)
        assert [len(batch) for batch in transport.batches] == [10, 10, 5]
        assert sorted(e.payload["text"] for e in transport.events) == sorted(f"w{n}" for n in range(25))
    finally:
        sender.close()


DELIVERED: list[OutgoingEvent] = []


class RecordingBackend(QueuedBackend):
    """A queued backend whose transport is a list (the sender thread is real)."""

    name = "recording"

    def __init__(self, *, options: dict | None = None):
        super().__init__(options=options)
        self.sender = EventSender(deliver=DELIVERED.extend, name=self.name, window=0.0)


class ReplacesItsBackend(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            stream.write("before ")
            reset_backend()  # settings changed mid-stream: the stream's sink now refuses writes
            stream.write("after")
        return stream.content


@pytest.mark.django_db
def test_a_stream_whose_backend_was_replaced_writes_through_the_new_one():
    DELIVERED.clear()
    register_agent("replaces-its-backend", ReplacesItsBackend)
    config = {"REALTIME": {"BACKEND": "tests.test_realtime_batching.RecordingBackend", "OPTIONS": {}}}
    with override_settings(DJANGO_AI=config):
        reset_backend()
        session = ConversationService.create_session("replaces-its-backend", anonymous_id=new_anonymous_id())
        result = ConversationService.send_message(session_id=session.pk, message="go")
        get_backend().flush(timeout=10)
    reset_backend()
    assert result["status"] == "success"
    chunks = [
        e.payload for e in DELIVERED if e.event == "text_chunk" and e.payload["message_id"] == result["message_id"]
    ]
    assert "".join(p["text"] for p in chunks) == "before after"
    assert [p["sequence"] for p in chunks] == [1, 2]


def test_many_flushes_while_the_server_is_slow_drop_nothing():
    """Every ending stream flushed everything (``flush(timeout=0)``): with 100 streams ending while a request
    hangs, each flush used to add a marker to every channel, and the markers counted against
    ``max_pending``, so events were dropped though only 100 were queued."""
    queue, clock = make(max_pending=150, window=60)
    released: list[int] = []
    for n in range(100):
        queue.add(channel(n), "widget", {"n": n})
    for n in range(100):
        queue.add_marker(lambda count, n=n: FlushMarker(count, lambda: released.append(n)))
    assert queue.dropped == 0 and len(queue) == 200  # 100 events, one marker item behind each
    events: list[OutgoingEvent] = []
    while len(queue):
        batch, markers = queue.take()
        events.extend(batch)
        for marker in markers:
            marker.release()
    assert sorted(e.payload["n"] for e in events) == list(range(100))
    assert sorted(released) == list(range(100))  # every flush was released, once


def test_a_full_queue_still_drops_the_oldest_event_with_markers_queued():
    queue, _ = make(max_pending=2, window=60)
    queue.add(channel(1), "widget", {"n": 1})
    queue.add_marker(lambda count: FlushMarker(count, lambda: None))
    queue.add(channel(1), "widget", {"n": 2})
    queue.add(channel(1), "widget", {"n": 3})
    assert queue.dropped == 1
    events, markers = queue.take()
    assert [e.payload["n"] for e in events] == [2, 3] and len(markers) == 1


def test_a_stream_end_flushes_its_own_channel_only():
    transport = Transport()
    # Not aligned: a tick of a 60 s grid could fall between the writes.
    sender = EventSender(deliver=transport, name="test", window=60, align=False)
    try:
        for n in (1, 2):
            sender.send_text(channel(n), stream(n), 1, "first")  # idle channels: these leave at once
        assert sender.flush(timeout=10)
        for n in (1, 2):
            sender.send_text(channel(n), stream(n), 2, "second")  # these wait for the 60 s window
        assert sender.flush(timeout=10, channel=channel(1))
        assert sorted(texts(transport.events)) == [(channel(1), "first"), (channel(1), "second"), (channel(2), "first")]
        assert sender.pending() == 1  # channel 2's run still gathers its window
    finally:
        sender.close()


def test_streamed_writes_and_other_events_keep_their_order_on_a_channel():
    transport = Transport()
    sender = EventSender(deliver=transport, name="test", window=60, align=True, linger=60)
    try:
        sender.send_text(channel(1), stream(1), 1, "a")
        sender.send_text(channel(1), stream(1), 2, "b")
        sender.send(channel(1), "widget", {"n": 1})  # a widget shown between two writes
        sender.send_text(channel(1), stream(1), 3, "c")
        sender.send(channel(1), "stream_end", {"message_id": "m1", "sequence": 3})
        assert sender.flush(timeout=10)
        assert [(e.event, e.payload.get("text", e.payload.get("n"))) for e in transport.events] == [
            ("text_chunk", "ab"),
            ("widget", 1),
            ("text_chunk", "c"),
            ("stream_end", None),
        ]
        chunks = [e.payload for e in transport.events if e.event == "text_chunk"]
        assert [(p["first_sequence"], p["sequence"], p["offset"]) for p in chunks] == [(1, 2, 0), (3, 3, 2)]
    finally:
        sender.close()
