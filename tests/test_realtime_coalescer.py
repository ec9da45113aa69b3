"""The coalescing queue (pure data structure, driven with a fake clock) and the client-side
reassembly algorithm that its ``offset``/``sequence`` fields are made for."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_ai.conversations.realtime.coalescer import Coalescer, FlushMarker, encoded_size, split_text, utf16_len
from django_ai.conversations.realtime.resume import StreamAssembler

CH = "private-conversation-session-00000000-0000-0000-0000-000000000001"
CH2 = "private-conversation-session-00000000-0000-0000-0000-000000000002"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def chunk(seq: int, text: str, message: str = "m1") -> dict:
    return {"id": f"e{seq}", "session_id": "s", "timestamp": "t", "message_id": message, "sequence": seq, "text": text}


def make(**kwargs) -> tuple[Coalescer, Clock]:
    clock = Clock()
    kwargs.setdefault("window", 0.05)
    return Coalescer(clock=clock, **kwargs), clock


def test_the_first_write_leaves_at_once_and_later_ones_coalesce_within_the_window():
    queue, clock = make()
    queue.add(CH, "text_chunk", chunk(1, "Hel"))
    first, _ = queue.take()  # the channel was quiet: no waiting
    assert [{**e.payload, "id": "-", "timestamp": "-"} for e in first] == [
        {
            "id": "-",
            "session_id": "s",
            "timestamp": "-",
            "message_id": "m1",
            "first_sequence": 1,
            "sequence": 1,
            "offset": 0,
            "text": "Hel",
        }
    ]
    clock.now += 0.01
    queue.add(CH, "text_chunk", chunk(2, "lo "))
    queue.add(CH, "text_chunk", chunk(3, "world"))
    assert len(queue) == 1
    assert queue.take() == ([], [])  # within the window of the last text event
    assert queue.next_deadline() == pytest.approx(100.05)
    clock.now = 100.05
    events, _ = queue.take()
    assert [
        (e.payload["first_sequence"], e.payload["sequence"], e.payload["offset"], e.payload["text"]) for e in events
    ] == [(2, 3, 3, "lo world")]
    clock.now += 1  # quiet again: the next write leaves at once
    queue.add(CH, "text_chunk", chunk(4, "!"))
    assert [e.payload["text"] for e in queue.take()[0]] == ["!"]
    assert len(queue) == 0 and queue.next_deadline() is None


def test_an_event_behind_a_run_makes_it_due_and_keeps_channel_order():
    queue, _ = make(window=60)
    queue.add(CH, "text_chunk", chunk(1, "a"))
    assert len(queue.take()[0]) == 1
    queue.add(CH, "text_chunk", chunk(2, "b"))
    queue.add(CH, "text_chunk", chunk(3, "c"))
    assert queue.take() == ([], [])
    queue.add(CH, "stream_end", {"message_id": "m1", "sequence": 3})
    queue.add(CH, "text_chunk", chunk(4, "d"))  # after stream_end: a new run, not merged across it
    assert queue.next_deadline() == float("-inf")
    events, _ = queue.take()
    assert [(e.event, e.payload.get("text")) for e in events] == [("text_chunk", "bc"), ("stream_end", None)]
    assert len(queue) == 1  # "d" waits for the window


def test_offsets_continue_across_runs_and_count_utf16_units():
    queue, clock = make()
    queue.add(CH, "text_chunk", chunk(1, "😀é"))  # 2 + 1 UTF-16 units
    clock.now += 1
    first, _ = queue.take()
    queue.add(CH, "text_chunk", chunk(2, "x"))
    clock.now += 1
    second, _ = queue.take()
    assert first[0].payload["offset"] == 0
    assert second[0].payload["offset"] == 3 == utf16_len("😀é")
    assert second[0].payload["first_sequence"] == second[0].payload["sequence"] == 2


def test_a_gap_in_sequences_starts_a_new_run():
    queue, clock = make()
    queue.add(CH, "text_chunk", chunk(1, "a"))
    queue.add(CH, "text_chunk", chunk(3, "c"))
    clock.now += 1
    events, _ = queue.take()
    assert [(e.payload["first_sequence"], e.payload["sequence"]) for e in events] == [(1, 1), (3, 3)]


def test_batches_hold_at_most_max_batch_and_channels_take_turns():
    queue, _ = make(max_batch=3)
    for n in range(4):
        queue.add(CH, "widget", {"n": n})
        queue.add(CH2, "widget", {"n": n})
    first, _ = queue.take()
    second, _ = queue.take()
    third, _ = queue.take()
    assert [len(b) for b in (first, second, third)] == [3, 3, 2]
    sent = first + second + third
    for channel in (CH, CH2):
        assert [e.payload["n"] for e in sent if e.channel == channel] == [0, 1, 2, 3]
    # The second batch starts with the channel that did not get a turn first.
    assert {e.channel for e in second} == {CH, CH2}


def test_long_text_is_split_under_the_event_size_limit_and_never_dropped():
    limit = 10 * 1024
    queue, clock = make(max_event_bytes=limit)
    writes = ["😀" * 3000, 'quote " and \\ and \n newline ' * 400, "é" * 9000, "tail"]
    for seq, text in enumerate(writes, start=1):
        queue.add(CH, "text_chunk", chunk(seq, text))
    clock.now += 1
    events: list = []
    while len(queue):
        batch, _ = queue.take()
        events.extend(batch)
    assert len(events) > 3
    for event in events:
        assert encoded_size(event.payload) <= limit
    assert "".join(e.payload["text"] for e in events) == "".join(writes)
    offsets = [e.payload["offset"] for e in events]
    assert offsets == sorted(offsets) and offsets[0] == 0
    for event, following in itertools.pairwise(events):
        assert following.payload["offset"] == event.payload["offset"] + utf16_len(event.payload["text"])
    assert events[0].payload["first_sequence"] == 1 and events[-1].payload["sequence"] == 4
    assert all(e.payload["first_sequence"] <= e.payload["sequence"] for e in events)


def test_every_event_that_leaves_has_its_own_id_and_a_timestamp_of_when_it_was_built():
    """Coalesced and split events must not share the first write's id: a client that de-duplicates
    by id (natural after a Pusher reconnect) would drop the later ones and lose their text."""
    queue, clock = make(window=60, max_event_bytes=1024)
    queue.add(CH, "text_chunk", chunk(1, "alone"))
    alone, _ = queue.take()
    for seq, text in enumerate(["x" * 1500, "y" * 1500, "z"], start=2):
        queue.add(CH, "text_chunk", chunk(seq, text))  # one run, cut into several events
    queue.add(CH, "stream_end", {"id": "end", "message_id": "m1", "sequence": 4})
    before = datetime.now(UTC)
    events = alone + [e for e in queue.take()[0] if e.event == "text_chunk"]
    assert len(events) >= 4
    assert "".join(e.payload["text"] for e in events) == "alone" + "x" * 1500 + "y" * 1500 + "z"
    ids = [e.payload["id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & {f"e{seq}" for seq in range(1, 5)}  # not a write's id either
    assert all(isinstance(i, str) and len(i) == 32 for i in ids)
    for event in events[1:]:
        assert before <= datetime.fromisoformat(event.payload["timestamp"]) <= datetime.now(UTC)
        assert encoded_size(event.payload) <= 1024


def test_split_text_cuts_between_code_points():
    pieces = split_text("a😀" * 100, 40)
    assert "".join(pieces) == "a😀" * 100
    assert all(encoded_size(p) <= 40 for p in pieces)
    with pytest.raises(ValueError, match="too small"):
        split_text("abc", 4)


def test_a_full_queue_drops_the_oldest_item_and_later_offsets_stay_true():
    queue, clock = make(max_pending=3, window=60)
    queue.add(CH, "text_chunk", chunk(1, "lost "))
    queue.add(CH, "widget", {"n": 1})
    queue.add(CH, "text_chunk", chunk(2, "kept"))
    queue.add(CH, "widget", {"n": 2})  # over the bound: the oldest (the first run) goes
    assert queue.dropped == 1 and len(queue) == 3
    clock.now += 100
    events, _ = queue.take()
    assert [(e.event, e.payload.get("offset")) for e in events] == [
        ("widget", None),
        ("text_chunk", 5),
        ("widget", None),
    ]


def test_slow_delivery_means_longer_runs_not_more_items():
    queue, clock = make()
    for seq in range(1, 5001):
        queue.add(CH, "text_chunk", chunk(seq, "w "))
        clock.now += 0.001  # 5 s pass while the sender is busy elsewhere
    assert len(queue) == 1
    events, _ = queue.take()
    assert len(events) == 1 and events[0].payload["sequence"] == 5000


def test_flush_markers_make_runs_due_and_come_back_after_their_channel():
    queue, _ = make(window=60)
    released: list[str] = []
    queue.add(CH, "text_chunk", chunk(1, "a"))
    queue.add(CH2, "widget", {"n": 1})
    marker = queue.add_marker(lambda n: FlushMarker(n, lambda: released.append("done")))
    events, markers = queue.take()
    assert [e.event for e in events] == ["text_chunk", "widget"]
    assert len(markers) == 2 and not released
    for m in markers:
        m.release()
    assert released == ["done"]
    assert isinstance(marker, FlushMarker)
    empty = queue.add_marker(lambda n: FlushMarker(n, lambda: released.append("empty")))
    assert released[-1] == "empty" and isinstance(empty, FlushMarker)


# The client side: a late joiner rebuilds the text from a row saved at any write plus the chunks
# it receives from any point on, whatever the coalescing did.

writes_strategy = st.lists(
    st.text(alphabet=st.sampled_from(["a", "b", " ", "é", "😀", "\n", '"', "漢"]), min_size=1, max_size=40),
    min_size=1,
    max_size=40,
)


def _run_stream(writes: list[str], gaps: list[float], limit: int | None) -> list[dict]:
    queue, clock = make(window=0.05, max_event_bytes=limit)
    sent: list[dict] = []
    for seq, (text, gap) in enumerate(zip(writes, gaps, strict=False), start=1):
        queue.add(CH, "text_chunk", chunk(seq, text))
        clock.now += gap
        batch, _ = queue.take()
        sent.extend(e.payload for e in batch)
    queue.add(CH, "stream_end", {"message_id": "m1", "sequence": len(writes)})
    while len(queue):
        batch, _ = queue.take()
        sent.extend(e.payload for e in batch if "text" in e.payload)
    return sent


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    writes=writes_strategy,
    data=st.data(),
    limit=st.sampled_from([None, 200, 10 * 1024]),
)
def test_a_late_joiner_rebuilds_exactly_the_streamed_text(writes, data, limit):
    gaps = data.draw(
        st.lists(st.sampled_from([0.0, 0.01, 0.03, 0.06, 0.2]), min_size=len(writes), max_size=len(writes))
    )
    sent = _run_stream(writes, gaps, limit)
    full = "".join(writes)
    if limit is not None:
        assert all(len(json.dumps(p, ensure_ascii=False, separators=(",", ":")).encode()) <= limit for p in sent)

    # A subscriber from the start gets everything, contiguous by offset.
    everyone = StreamAssembler("m1")
    for payload in sent:
        assert everyone.apply_chunk(payload)
    assert everyone.text == full and not everyone.needs_row

    # A late joiner: subscribed before event `join`, then read a row saved at write `saved`, which
    # is at least as fresh as anything sent before it subscribed (the row is read afterwards).
    join = data.draw(st.integers(0, len(sent)))
    written_before_join = max([p["sequence"] for p in sent[:join]], default=0)
    saved = data.draw(st.integers(written_before_join, len(writes)))
    late = StreamAssembler("m1")
    received = sent[join:]
    order = data.draw(st.sampled_from(["row first", "chunks first"]))
    if order == "chunks first":
        for payload in received:
            late.apply_chunk(payload)
    late.apply_row(content="".join(writes[:saved]), stream_sequence=saved)
    if order == "row first":
        for payload in received:
            late.apply_chunk(payload)
    assert late.text == full
    assert not late.needs_row


def test_a_joiner_with_a_stale_row_waits_for_a_fresher_one():
    sent = _run_stream(["one ", "two ", "three ", "four"], [0.1, 0.1, 0.1, 0.1], None)
    late = StreamAssembler("m1")
    late.apply_row(content="one ", stream_sequence=1)  # saved long ago
    for payload in sent[2:]:  # subscribed after "two " went out
        late.apply_chunk(payload)
    assert late.needs_row and late.text == "one "
    late.apply_row(content="one two ", stream_sequence=2)
    assert late.text == "one two three four" and not late.needs_row


def test_a_finished_row_wins_over_chunks():
    late = StreamAssembler("m1")
    late.apply_chunk({"message_id": "m1", "offset": 0, "sequence": 1, "first_sequence": 1, "text": "partial"})
    late.apply_row(content="the final answer", stream_sequence=9, processing_status="completed")
    assert late.text == "the final answer" and late.finished
    assert (
        late.apply_chunk({"message_id": "m1", "offset": 7, "sequence": 2, "first_sequence": 2, "text": " more"})
        is False
    )
    assert late.text == "the final answer"


def test_events_without_offsets_are_applied_by_sequence():
    late = StreamAssembler("m1")
    late.apply_row(content="ab", stream_sequence=2)
    assert late.apply_chunk({"message_id": "m1", "sequence": 2, "text": "b"})  # already in the row
    assert late.apply_chunk({"message_id": "m1", "sequence": 4, "text": "d"}) is False  # gap
    assert late.apply_chunk({"message_id": "m1", "sequence": 3, "text": "c"})
    assert late.text == "abc"
    assert late.apply_chunk({"message_id": "other", "sequence": 4, "text": "x"}) is False
