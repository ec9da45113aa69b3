"""The translator from our events and rows to UI message chunks, on its own (it is pure: no server,
no database): text by UTF-16 offsets without repeats or gaps, events of earlier turns dropped,
a tool step waiting for approval, the end of each kind of turn."""

from __future__ import annotations

import random

from django_ai.conversations.ai_sdk.chunks import frame, utf16_tail
from django_ai.conversations.ai_sdk.translate import ReplySnapshot, ReplyTranslator, StepRow
from django_ai.conversations.realtime.coalescer import utf16_len

USER, AGENT, OTHER = "u-1", "a-1", "u-0"


def translator(**kwargs) -> ReplyTranslator:
    return ReplyTranslator(user_message_id=USER, session_id="s-1", **kwargs)


def started() -> ReplyTranslator:
    t = translator()
    t.feed("message_status", {"message_id": USER, "status": "processing"})
    t.feed("stream_start", {"message_id": AGENT, "reply_to": USER})
    return t


def deltas(chunks) -> str:
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


def test_overlapping_and_repeated_chunks_give_each_character_once():
    text = "".join(random.Random(7).choice(["a", "é", "😀", "日", "\n", '"']) for _ in range(300))
    t = started()
    out = []
    # Chunks cut at random character boundaries, each sent twice and some overlapping.
    cuts = sorted(random.Random(8).sample(range(1, len(text)), 40))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    offset = 0
    for piece in pieces:
        for _ in range(2):
            out += t.feed("text_chunk", {"message_id": AGENT, "offset": offset, "text": piece})
        offset += utf16_len(piece)
    assert deltas(out) == text
    assert [c["type"] for c in out][:2] == ["start", "text-start"]
    assert out[0]["messageId"] == AGENT


def test_a_gap_waits_for_the_rows_then_the_held_text_follows():
    t = started()
    out = t.feed("text_chunk", {"message_id": AGENT, "offset": 0, "text": "ab"})
    out += t.feed("text_chunk", {"message_id": AGENT, "offset": 6, "text": "😀g"})
    assert t.needs_rows
    assert deltas(out) == "ab"
    out += t.apply_snapshot(ReplySnapshot(user_status="processing", agent_id=AGENT, text="abcdef"))
    assert not t.needs_rows
    assert deltas(out) == "abcdef😀g"


def test_events_of_other_replies_are_dropped():
    t = translator()
    # An earlier turn still finishing when this message was posted (enqueue policy).
    assert t.feed("stream_start", {"message_id": "a-0", "reply_to": OTHER}) == []
    assert t.feed("text_chunk", {"message_id": "a-0", "offset": 0, "text": "old"}) == []
    assert t.feed("widget", {"widget_id": "w-0", "message_id": "m", "widget_type": "x", "data": {}}) == []
    assert t.feed("tool_call_start", {"reply_to": OTHER, "call_id": "c", "name": "n"}) == []
    assert t.feed("message_status", {"message_id": OTHER, "status": "completed"}) == []
    assert t.ended_status is None
    t.feed("message_status", {"message_id": USER, "status": "processing"})
    chunks = t.feed("widget", {"widget_id": "w-1", "message_id": "m", "widget_type": "x", "data": {"a": 1}})
    assert [c["type"] for c in chunks] == ["start", "data-widget"]


def test_a_step_waiting_for_approval_asks_for_it_and_the_reply_finishes_for_tool_calls():
    t = started()
    out = t.feed("text_chunk", {"message_id": AGENT, "offset": 0, "text": "Refund? "})
    args = {"reply_to": USER, "call_id": "c1", "name": "refund", "message_id": "step-9"}
    out += t.feed("tool_call_arguments", {**args, "arguments": {"amount": 5}, "status": "awaiting_approval"})
    t.feed("message_status", {"message_id": USER, "status": "awaiting_approval"})
    assert t.ended_status == "awaiting_approval"
    step = StepRow("step-9", "c1", "refund", {"amount": 5}, "awaiting_approval", text_offset=8)
    out += t.finish(ReplySnapshot(user_status="awaiting_approval", agent_id=AGENT, text="Refund? ", parts=(step,)))
    assert [c["type"] for c in out] == [
        "start",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-available",
        "tool-approval-request",
        "finish",
    ]
    assert out[5] == {"type": "tool-approval-request", "approvalId": "step-9", "toolCallId": "c1"}
    assert out[-1]["finishReason"] == "tool-calls"
    assert t.finished
    assert t.feed("text_chunk", {"message_id": AGENT, "offset": 8, "text": "more"}) == []


def test_how_each_turn_ends():
    for status, tail in [
        ("completed", ["text-end", "finish"]),
        ("failed", ["text-end", "error", "finish"]),
        ("cancelled", ["text-end", "abort", "finish"]),
    ]:
        t = started()
        t.feed("text_chunk", {"message_id": AGENT, "offset": 0, "text": "Hi"})
        end = t.finish(ReplySnapshot(user_status=status, agent_id=AGENT, text="Hi there", notice="Sorry."))
        assert [c["type"] for c in end][-len(tail) :] == tail
        assert deltas(end) == " there"
    # A reply returned whole, without a stream: all of it comes from the row.
    t = translator()
    end = t.finish(ReplySnapshot(user_status="completed", agent_id=AGENT, text="Plain."))
    assert [c["type"] for c in end] == ["start", "text-start", "text-delta", "text-end", "finish"]
    assert deltas(end) == "Plain."


def test_frames_are_one_data_line_each():
    assert frame({"type": "text-delta", "id": "x", "delta": "a\nb"}) == (
        'data: {"type":"text-delta","id":"x","delta":"a\\nb"}\n\n'
    )
    assert utf16_tail("😀é", 2) == "é"
