"""The sender thread: non-blocking ``send``, ``flush`` semantics, failures logged once per outage,
bounded memory while delivery is slow. ``deliver`` here is a plain function standing for the
transport (the Pusher and SSE paths are tested end to end in test_realtime_pusher/_sse)."""

from __future__ import annotations

import logging
import threading

import pytest

from django_ai.conversations.realtime.coalescer import OutgoingEvent
from django_ai.conversations.realtime.sender import EventSender

CH = "private-conversation-session-00000000-0000-0000-0000-000000000001"


class Transport:
    def __init__(self) -> None:
        self.batches: list[list[OutgoingEvent]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail = False
        self.lock = threading.Lock()

    def __call__(self, events: list[OutgoingEvent]) -> None:
        self.entered.set()
        assert self.gate.wait(20), "test gate never opened"
        if self.fail:
            raise ConnectionError("server unreachable")
        with self.lock:
            self.batches.append(list(events))

    @property
    def events(self) -> list[OutgoingEvent]:
        with self.lock:
            return [e for batch in self.batches for e in batch]


def chunk(seq: int, text: str) -> dict:
    return {"message_id": "m1", "sequence": seq, "text": text}


def make(transport: Transport, **kwargs) -> EventSender:
    kwargs.setdefault("window", 0.05)
    kwargs.setdefault("outage_backoff", 0.0)
    kwargs.setdefault("retry_delay", 0.0)
    return EventSender(deliver=transport, name="test", **kwargs)


def test_flush_sends_before_the_window_and_waits_for_delivery():
    transport = Transport()
    sender = make(transport, window=30)
    try:
        sender.send(CH, "text_chunk", chunk(1, "a"))  # the first write of a burst leaves at once
        assert sender.flush(timeout=10) is True
        sender.send(CH, "text_chunk", chunk(2, "b"))  # these would wait 30 s for the window
        sender.send(CH, "text_chunk", chunk(3, "c"))
        assert sender.pending() == 1
        assert sender.flush(timeout=10) is True
        assert [(e.payload["text"], e.payload["first_sequence"], e.payload["sequence"]) for e in transport.events] == [
            ("a", 1, 1),
            ("bc", 2, 3),
        ]
        assert sender.pending() == 0
    finally:
        sender.close()


def test_flush_with_zero_timeout_does_not_wait_for_a_stuck_server():
    transport = Transport()
    sender = make(transport)
    try:
        transport.gate.clear()
        sender.send(CH, "widget", {"n": 1})
        assert transport.entered.wait(10)
        assert sender.flush(timeout=0) is False  # returns at once: delivery is still in flight
        assert sender.flush(timeout=0.05) is False
        transport.gate.set()
        assert sender.flush(timeout=10) is True
        assert [e.payload for e in transport.events] == [{"n": 1}]
    finally:
        transport.gate.set()
        sender.close()


def test_send_returns_while_delivery_is_blocked_and_chunks_coalesce_meanwhile():
    transport = Transport()
    sender = make(transport)
    try:
        transport.gate.clear()
        sender.send(CH, "stream_start", {"message_id": "m1", "sequence": 0})
        assert transport.entered.wait(10)  # the sender thread is now stuck in deliver()
        for seq in range(1, 20_001):
            sender.send(CH, "text_chunk", chunk(seq, "x"))
        # 20 000 writes while the server hangs: one pending run, not 20 000 items.
        assert sender.pending() == 1
        transport.gate.set()
        assert sender.flush(timeout=10)
        chunks = [e.payload for e in transport.events if e.event == "text_chunk"]
        assert "".join(p["text"] for p in chunks) == "x" * 20_000
        assert chunks[-1]["sequence"] == 20_000 and len(chunks) < 10
    finally:
        transport.gate.set()
        sender.close()


def test_per_channel_order_is_kept_across_batches():
    transport = Transport()
    sender = make(transport, window=0.0, max_batch=10)
    other = CH.replace("0001", "0002")
    expected: dict[str, list] = {CH: [], other: []}
    try:
        for n in range(300):
            channel = CH if n % 3 else other
            sender.send(channel, "widget", {"n": n})
            expected[channel].append(n)
            if n % 7 == 0:
                # A widget sits between any two chunks, so chunks never merge here.
                sender.send(CH, "text_chunk", chunk(n // 7 + 1, f"<{n}>"))
                expected[CH].append(f"<{n}>")
        assert sender.flush(timeout=10)
        assert all(len(batch) <= 10 for batch in transport.batches)
        for channel, items in expected.items():
            got = [e.payload.get("n", e.payload.get("text")) for e in transport.events if e.channel == channel]
            assert got == items
    finally:
        sender.close()


def test_an_outage_is_logged_once_and_its_end_once(caplog):
    transport = Transport()
    sender = make(transport, window=0.0, retries=1)
    caplog.set_level(logging.DEBUG, logger="django_ai.conversations.realtime")
    try:
        transport.fail = True
        for n in range(50):
            sender.send(CH, "widget", {"n": n})
            sender.flush(timeout=5)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "failed" in errors[0].getMessage() and errors[0].exc_info is not None
        assert sender.failures >= 50
        assert sender.lost == 50
        transport.fail = False
        sender.send(CH, "widget", {"n": "back"})
        assert sender.flush(timeout=5)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "50 event(s) were lost" in warnings[0].getMessage()
        assert [e.payload["n"] for e in transport.events] == ["back"]
    finally:
        sender.close()


def test_a_transient_failure_is_retried_without_losing_events(caplog):
    transport = Transport()
    calls = {"n": 0}

    def flaky(events: list[OutgoingEvent]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("blip")
        transport(events)

    sender = EventSender(deliver=flaky, name="test", window=0.0, retries=1, retry_delay=0.0)
    try:
        sender.send(CH, "widget", {"n": 1})
        assert sender.flush(timeout=5)
        assert [e.payload for e in transport.events] == [{"n": 1}]
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert sender.lost == 0
    finally:
        sender.close()


def test_close_delivers_what_is_queued_and_refuses_more():
    transport = Transport()
    sender = make(transport, window=30)
    sender.send(CH, "text_chunk", chunk(1, "bye"))
    sender.close()
    assert [e.payload["text"] for e in transport.events] == ["bye"]
    with pytest.raises(RuntimeError, match="closed"):  # a send after close fails loudly
        sender.send(CH, "widget", {})


@pytest.mark.django_db
def test_a_backend_that_cannot_be_built_is_reported_once_and_the_turn_completes(caplog):
    from django.test import override_settings

    from django_ai.conversations import ConversationAgent
    from django_ai.conversations.context import ResponseStream
    from django_ai.conversations.realtime import reset_backend
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService

    class Chatty(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            with ResponseStream() as stream:
                for n in range(30):
                    stream.write(f"{n} ")
            return stream.content

    register_agent("chatty", Chatty)
    broken = {"APP_ID": "not-a-number", "KEY": "k", "SECRET": "s", "HOST": "127.0.0.1", "PORT": 9}
    caplog.set_level(logging.DEBUG, logger="django_ai.conversations.realtime")
    with override_settings(DJANGO_AI={"PUSHER": broken}):
        reset_backend()
        session = ConversationService.create_session("chatty", anonymous_id="")
        result = ConversationService.send_message(session_id=session.pk, message="hi")
    reset_backend()
    assert result["status"] == "success" and result["response"] == "".join(f"{n} " for n in range(30))
    # The 30 writes and the other events of the turn: one error for all of them ...
    sending = [r for r in caplog.records if r.levelno >= logging.ERROR and r.getMessage().startswith("Could not send")]
    assert len(sending) == 1, [r.getMessage() for r in sending]
    assert "APP_ID" in str(sending[0].exc_info[1])
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG and "Could not send" in r.getMessage()]) > 30
    # ... besides the turn's own flush calls reporting it (once per turn, not per chunk).
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) <= 3
    # And the system check names the problem before any turn runs.
    from django.core.checks import run_checks

    with override_settings(DJANGO_AI={"PUSHER": broken}):
        ids = {m.id for m in run_checks(tags=["django_ai"])}
    assert "django_ai.E014" in ids


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_queue_and_thread():
    """A preforking server may fork after the backend was built: the child must still deliver."""
    import os

    transport = Transport()
    sender = make(transport, window=0.0)
    try:
        sender.send(CH, "widget", {"who": "parent"})
        assert sender.flush(timeout=5)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what its own sender delivered, then leave at once
            code = 1
            try:
                os.close(read_end)
                got: list = []
                sender.deliver = lambda events: got.extend(e.payload["who"] for e in events)
                sender.send(CH, "widget", {"who": "child"})
                ok = sender.flush(timeout=5)
                os.write(write_end, f"{ok}:{','.join(got)}".encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            report = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert report == "True:child"
        assert [e.payload["who"] for e in transport.events] == ["parent"]
    finally:
        sender.close()
