"""What an open Server-Sent Events stream costs its process (issue 16: many live clients on one
process): under ASGI it holds no thread and no database connection, heartbeats of streams opened
together are spread, and an async reader woken once for many events still gets every one of them.
Real uvicorn, real database (SQLite file or PostgreSQL); the speed is measured in
``tests/bench/bench_clients.py``, not here."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest
from django.db import connection

from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.realtime.channels import owner_channel, session_channel
from django_ai.conversations.realtime.local import HEARTBEAT_JITTER, Broker, heartbeat_delay
from django_ai.conversations.service import ConversationService
from tests.realtime_server.harness import SSEReader
from tests.test_realtime_sse import (  # noqa: F401 - asgi_server and local are fixtures
    EVENTS,
    HEADER,
    StreamingAgent,
    asgi_server,
    local,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

STREAMS = 5


def request_threads() -> int:
    """Alive threads of the executors asgiref makes per request (``ThreadPoolExecutor-<n>_0``)."""
    return sum(1 for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor-"))


def database_handles() -> int:
    """Connections to the test database: server sessions on PostgreSQL, open files on SQLite."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
            return cursor.fetchone()[0]
    name = str(Path(connection.settings_dict["NAME"]).resolve())
    handles = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == name:
                handles += 1
        except OSError:
            continue
    return handles


def open_streams(base: str, count: int) -> list[SSEReader]:
    readers = []
    for _ in range(count):
        visitor = new_anonymous_id()
        session = ConversationService.create_session("sse-streamer", anonymous_id=visitor)
        query = f"channel={session_channel(session.pk)}&channel={owner_channel(anonymous_id=visitor)}"
        reader = SSEReader(base, f"{EVENTS}?{query}", headers={HEADER: visitor})
        assert reader.status == 200, reader.body
        readers.append(reader)
    return readers


def test_an_open_asgi_stream_holds_no_thread_and_no_database_connection(local, asgi_server):
    from django_ai.conversations.registry import register_agent
    from tests.test_realtime_sse import StreamingAgent

    register_agent("sse-streamer", StreamingAgent)
    connection.ensure_connection()
    # A first stream, opened and closed: what the server opens once (its first request starts the
    # stale-turn sweeps, which keep a connection) is not counted against the streams.
    for reader in open_streams(asgi_server.url, 1):
        reader.close()
    wait_until(lambda: local.broker.subscriber_count() == 0, what="the first stream to end")
    threads, handles = request_threads(), database_handles()
    readers = open_streams(asgi_server.url, STREAMS)
    try:
        wait_until(lambda: local.broker.subscriber_count() == STREAMS, what="the streams' subscriptions")
        # Each stream's view ran on a thread of its request's own and read the database there;
        # while the streams stay open, both are given back (before: one thread and one
        # connection per open stream, until it closed).
        wait_until(lambda: request_threads() <= threads, what="the requests' threads to end")
        wait_until(lambda: database_handles() <= handles, what="the views' database connections to close")
        assert all(not r.closed.is_set() for r in readers)
    finally:
        for reader in readers:
            reader.close()
    wait_until(lambda: local.broker.subscriber_count() == 0, what="closed clients to free their subscriptions")
    wait_until(lambda: request_threads() <= threads, what="the threads that closed the responses to end")


def test_heartbeat_delays_are_spread_and_never_above_the_interval():
    delays = [heartbeat_delay(15.0) for _ in range(500)]
    assert all(15.0 * (1 - HEARTBEAT_JITTER) <= d <= 15.0 for d in delays)
    # Drawn for each wait: streams opened in the same instant do not ping in the same instant.
    assert len(set(delays)) > 400
    assert max(delays) - min(delays) > 15.0 * HEARTBEAT_JITTER / 2


def test_an_async_reader_gets_every_event_pushed_from_another_thread():
    """Pushes made while a wake-up of the reader's loop is on its way send no other: the reader
    still drains everything, in order."""
    broker = Broker(history_size=0, client_queue_size=100_000)
    subscription = broker.subscribe(["a", "b"])
    total = 5000

    def publish() -> None:
        for n in range(total):
            broker.publish("a" if n % 2 else "b", "widget", {"n": n})

    async def read() -> list[int]:
        seen: list[int] = []
        publisher = threading.Thread(target=publish)
        await subscription.wait_async(0.01)  # the reader's loop is known from here on
        publisher.start()
        while len(seen) < total:
            await subscription.wait_async(5.0)
            seen.extend(item.seq for item in subscription.drain())
        publisher.join()
        return seen

    seen = asyncio.run(read())
    assert seen == list(range(1, total + 1))
    assert not subscription.closed
    broker.unsubscribe(subscription)
    assert broker.subscriber_count() == 0
