"""``STREAM_SAVE_INTERVAL``: while an agent streams, its message row's ``content`` and
``stream_sequence`` are saved at most once per interval, and at the end of the stream, so a client
that joins late reads a row at most one interval behind the chunks (docs/protocol.md).

The clock of the streaming helpers is replaced by one the agent advances itself, and every save is
seen as the UPDATE statement that writes the row, so nothing depends on wall-clock timing."""

from __future__ import annotations

import itertools
import types

import pytest
from django.db import connection
from django.test import override_settings

from django_ai.conversations import ConversationAgent, context
from django_ai.conversations.constants import EventName, ProcessingStatus
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import capture_events

pytestmark = pytest.mark.django_db

INTERVAL = 1.0
#: Seconds of the agent's clock that pass after each write (exact in binary floating point).
STEP = 0.25


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TickingStreamer(ConversationAgent):
    """Writes 10 chunks, STEP seconds apart, then pauses 3 s, then writes 2 more quickly."""

    clock: Clock
    writes = [f"w{n} " for n in range(12)]

    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            for n, text in enumerate(self.writes):
                stream.write(text)
                self.clock.now += 3.0 if n == 9 else STEP
        return stream.content


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    # Only the streaming helpers' clock: the sender and the turn keep the real one.
    monkeypatch.setattr(
        context, "time", types.SimpleNamespace(monotonic=fake, sleep=context.time.sleep, time=context.time.time)
    )
    TickingStreamer.clock = fake
    return fake


class RowSaves:
    """Records the UPDATEs that write a message's streamed text: (clock, content, stream_sequence)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.saves: list[tuple[float, str, int]] = []

    def __call__(self, execute, sql, params, many, context):
        table = ConversationMessage._meta.db_table
        head = sql.split(" WHERE ")[0]
        if sql.startswith("UPDATE") and table in head and "stream_sequence" in head and "processing_status" not in head:
            columns = [part.split("=")[0].strip().strip('"`') for part in head.split(" SET ", 1)[1].split(",")]
            values = dict(zip(columns, params, strict=False))
            self.saves.append((self.clock.now, values["content"], int(values["stream_sequence"])))
        return execute(sql, params, many, context)


def test_the_streaming_row_is_saved_at_most_once_per_interval_and_at_the_end(clock):
    register_agent("ticking", TickingStreamer)
    session = ConversationService.create_session("ticking", anonymous_id=new_anonymous_id())
    saves = RowSaves(clock)
    with override_settings(DJANGO_AI={"STREAM_SAVE_INTERVAL": INTERVAL}), capture_events() as events:
        with connection.execute_wrapper(saves):
            result = ConversationService.send_message(session_id=session.pk, message="go")
    assert result["status"] == "success"
    writes = TickingStreamer.writes

    # The clock is read after each write; write n happens at 1000 + n * STEP (the last two after
    # the pause). Saved: every write one interval after the last save, and the end of the stream.
    # The first write is not saved on its own: the row, created empty when the stream started,
    # counts as saved then, so the interval runs from the first write (the row is never more than
    # an interval behind the writes, as before; issue 16 dropped that UPDATE from every turn).
    assert [(seq, content) for _, content, seq in saves.saves] == [
        (5, "".join(writes[:5])),
        (9, "".join(writes[:9])),
        (11, "".join(writes[:11])),  # after the pause: due at once
        (12, "".join(writes)),  # the end of the stream
    ]
    during = [at for at, _, seq in saves.saves if seq < len(writes)]
    assert all(later - earlier >= INTERVAL for earlier, later in itertools.pairwise(during))

    row = ConversationMessage.objects.get(pk=result["message_id"])
    assert (row.content, row.stream_sequence, row.processing_status) == (
        "".join(writes),
        12,
        ProcessingStatus.COMPLETED,
    )
    assert [c["sequence"] for c in events.of(EventName.TEXT_CHUNK)] == list(range(1, 13))  # every write was sent


def test_an_interval_longer_than_the_stream_saves_only_the_end(clock):
    register_agent("ticking", TickingStreamer)
    session = ConversationService.create_session("ticking", anonymous_id=new_anonymous_id())
    saves = RowSaves(clock)
    with override_settings(DJANGO_AI={"STREAM_SAVE_INTERVAL": 60}), capture_events():
        with connection.execute_wrapper(saves):
            ConversationService.send_message(session_id=session.pk, message="go")
    assert [seq for _, _, seq in saves.saves] == [12]


def test_an_interval_of_zero_saves_every_write(clock):
    register_agent("ticking", TickingStreamer)
    session = ConversationService.create_session("ticking", anonymous_id=new_anonymous_id())
    saves = RowSaves(clock)
    with override_settings(DJANGO_AI={"STREAM_SAVE_INTERVAL": 0}), capture_events():
        with connection.execute_wrapper(saves):
            ConversationService.send_message(session_id=session.pk, message="go")
    # Every write, the first included; the end of the stream has nothing new to save.
    assert [seq for _, _, seq in saves.saves] == list(range(1, 13))
