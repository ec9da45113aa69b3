"""The Local backend end to end: Server-Sent Events under Django's threaded WSGI server (the server
``runserver`` uses, via pytest-django's ``live_server``) and under uvicorn (ASGI), fed by real
turns; Last-Event-ID, heartbeats, disconnect cleanup; the broker's bounds; the cap on open streams
per visitor and per client address."""

from __future__ import annotations

import itertools
import json
import threading
import time
from contextlib import contextmanager

import pytest
from django.core.asgi import get_asgi_application
from django.test import Client, override_settings

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import EventName
from django_ai.conversations.context import ResponseStream, display_widget, update_widget
from django_ai.conversations.models import ConversationMessage, ConversationWidget
from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.realtime import get_backend, reset_backend
from django_ai.conversations.realtime.channels import session_channel
from django_ai.conversations.realtime.local import Broker, LocalBackend, TooManyStreams
from django_ai.conversations.realtime.resume import StreamAssembler
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import UserFactory
from tests.realtime_server.harness import SSEReader, UvicornThread

EVENTS = "/api/conversations/realtime/events/"
HEADER = "X-Conversation-Anonymous-Id"
WORDS = [f"w{n}-é😀 " for n in range(40)]

pytestmark = pytest.mark.django_db(transaction=True)


class StreamingAgent(ConversationAgent):
    """Streams WORDS, shows a widget and updates it."""

    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            for word in WORDS:
                stream.write(word)
        widget = display_widget("poll", {"question": message})
        update_widget(widget.pk, display_data={"answered": True})
        return stream.content


@contextmanager
def local_backend(**settings):
    with override_settings(
        DJANGO_AI={
            "REALTIME_BACKEND": "django_ai.conversations.realtime.local.LocalBackend",
            "SSE_HEARTBEAT_INTERVAL": 0.2,
            "STREAM_COALESCE_WINDOW": 0.02,
            **settings,
        }
    ):
        reset_backend()
        backend = get_backend()
        assert isinstance(backend, LocalBackend)
        yield backend
    reset_backend()


@pytest.fixture
def local():
    with local_backend() as backend:
        yield backend


@pytest.fixture
def capped():
    """Two streams per visitor, three for anonymous visitors per client address."""
    with local_backend(SSE_MAX_STREAMS_PER_VISITOR=2, SSE_MAX_ANONYMOUS_STREAMS_PER_ADDRESS=3) as backend:
        yield backend


@pytest.fixture
def asgi_server():
    with UvicornThread(get_asgi_application()) as server:
        yield server


@pytest.fixture
def conversation():
    register_agent("sse-streamer", StreamingAgent)
    visitor = new_anonymous_id()
    session = ConversationService.create_session("sse-streamer", anonymous_id=visitor)
    # Its creation event leaves on the sender thread: out before a test's reader subscribes, not
    # (on a busy machine) in between the subscription and the test's count of the history.
    get_backend().flush(timeout=5)
    return session, visitor


def path(session) -> str:
    return f"{EVENTS}?channel={session_channel(session.pk)}"


def wait_until(predicate, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def run_turn(session, text: str = "hello") -> dict:
    result = ConversationService.send_message(session_id=session.pk, message=text)
    assert result["status"] == "success", result
    get_backend().flush(timeout=5)
    return result


def history(backend: LocalBackend, session) -> int:
    return len(backend.broker._history.get(session_channel(session.pk), ()))


def test_wsgi_and_asgi_readers_receive_the_same_complete_turn(local, live_server, asgi_server, conversation):
    session, visitor = conversation
    wsgi = SSEReader(live_server.url, path(session), headers={HEADER: visitor})
    asgi = SSEReader(asgi_server.url, path(session), headers={HEADER: visitor})
    try:
        assert (wsgi.status, asgi.status) == (200, 200), (wsgi.body, asgi.body)
        for reader in (wsgi, asgi):
            assert reader.headers["Content-Type"].startswith("text/event-stream")
            assert reader.headers["Cache-Control"].startswith("no-cache")
        wait_until(lambda: local.broker.subscriber_count(session_channel(session.pk)) == 2, what="two subscribers")

        before = history(local, session)  # the session's own creation event went out before
        result = run_turn(session)
        total = history(local, session) - before
        wsgi.wait_for(lambda r: len(r.events) == total, what=f"{total} events over WSGI")
        asgi.wait_for(lambda r: len(r.events) == total, what=f"{total} events over ASGI")
        assert wsgi.events == asgi.events
        assert wsgi.retry == asgi.retry == 2000

        names = wsgi.names()
        assert (
            names.index(EventName.STREAM_START) < names.index(EventName.TEXT_CHUNK) < names.index(EventName.STREAM_END)
        )
        assert names.index(EventName.STREAM_END) < names.index(EventName.WIDGET) < names.index(EventName.WIDGET_UPDATE)
        assert EventName.MODEL_CHANGE in names and EventName.MESSAGE_STATUS in names

        agent_message = ConversationMessage.objects.get(pk=result["message_id"])
        rebuilt = StreamAssembler(agent_message.pk)
        for event in wsgi.events:
            data = event["data"]
            assert data["channel"] == session_channel(session.pk)
            assert {"id", "session_id", "timestamp"} <= set(data) and data["session_id"] == str(session.pk)
            if event["event"] == EventName.TEXT_CHUNK:
                assert rebuilt.apply_chunk(data), data
        assert rebuilt.text == "".join(WORDS) == agent_message.content
        chunks = [e["data"] for e in wsgi.events if e["event"] == EventName.TEXT_CHUNK]
        assert chunks[0]["first_sequence"] == 1 and chunks[-1]["sequence"] == len(WORDS)
        for before, after in itertools.pairwise(chunks):
            assert after["first_sequence"] == before["sequence"] + 1  # no gap in sequences

        widget = ConversationWidget.objects.get(session=session)
        shown = next(e["data"] for e in wsgi.events if e["event"] == EventName.WIDGET)
        updated = next(e["data"] for e in wsgi.events if e["event"] == EventName.WIDGET_UPDATE)
        assert shown["widget_id"] == updated["widget_id"] == str(widget.pk)
        assert shown["message_id"] == str(widget.message_id)
        assert updated["display_data"] == {"answered": True} == widget.display_data
    finally:
        wsgi.close()
        asgi.close()


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_last_event_id_replays_exactly_what_was_missed(local, live_server, asgi_server, conversation, server):
    session, visitor = conversation
    base = live_server.url if server == "wsgi" else asgi_server.url
    first = SSEReader(base, path(session), headers={HEADER: visitor})
    wait_until(lambda: local.broker.subscriber_count() == 1, what="subscriber")
    before = history(local, session)
    run_turn(session, "first")
    seen = history(local, session) - before
    first.wait_for(lambda r: len(r.events) == seen, what="first turn")
    first.close()
    wait_until(lambda: local.broker.subscriber_count() == 0, what="the first stream to be cleaned up")

    run_turn(session, "second")  # nobody listens
    missed = history(local, session) - seen - before
    assert missed > 0
    again = SSEReader(base, path(session), headers={HEADER: visitor, "Last-Event-ID": first.events[-1]["id"]})
    try:
        again.wait_for(lambda r: len(r.events) == missed, what="the missed events")
        time.sleep(0.2)
        assert len(again.events) == missed  # nothing twice
        first_ids = {e["id"] for e in first.events}
        assert not first_ids & {e["id"] for e in again.events}
        assert [int(e["id"].split("-")[1]) for e in again.events] == sorted(
            int(e["id"].split("-")[1]) for e in again.events
        )
        # An id from another broker (another process, or before a restart) replays nothing.
        stale = SSEReader(base, path(session), headers={HEADER: visitor, "Last-Event-ID": "deadbeef-1"})
        stale.wait_for(lambda r: "connected" in r.comments, what="connected")
        time.sleep(0.2)
        assert stale.events == []
        stale.close()
    finally:
        again.close()


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_idle_streams_get_heartbeats_and_closed_clients_are_cleaned_up(
    local, live_server, asgi_server, conversation, server
):
    session, visitor = conversation
    base = live_server.url if server == "wsgi" else asgi_server.url
    reader = SSEReader(base, path(session), headers={HEADER: visitor})
    reader.wait_for(lambda r: r.comments.count("ping") >= 2, timeout=5, what="two heartbeats")
    assert reader.comments[0] == "connected"
    assert local.broker.subscriber_count(session_channel(session.pk)) == 1
    reader.close()
    # The server notices at its next write (a heartbeat at the latest) and unsubscribes.
    wait_until(lambda: local.broker.subscriber_count() == 0, timeout=5, what="cleanup after disconnect")


def test_resetting_the_backend_ends_open_streams(local, live_server, conversation):
    session, visitor = conversation
    reader = SSEReader(live_server.url, path(session), headers={HEADER: visitor})
    wait_until(lambda: local.broker.subscriber_count() == 1, what="subscriber")
    reset_backend()
    assert reader.closed.wait(5), "the stream should end when its broker closes"
    reader.close()


def test_broker_bounds_history_per_channel_and_channels_kept():
    broker = Broker(history_size=3, history_channels=2, client_queue_size=10)
    for n in range(5):
        broker.publish("a", "widget", {"n": n})
    broker.publish("b", "widget", {"n": 0})
    broker.publish("c", "widget", {"n": 0})  # "a" is the least recently used channel: its history goes
    assert list(broker._history) == ["b", "c"]
    broker.publish("b", "widget", {"n": 1})
    first = broker.event_id(1)
    sub = broker.subscribe(["b"], last_event_id=first)
    assert [item.seq for item in sub.drain()] == [6, 8]


def test_a_reader_that_falls_too_far_behind_is_closed_not_buffered_forever():
    broker = Broker(history_size=100, client_queue_size=3)
    sub = broker.subscribe(["a"])
    for n in range(10):
        broker.publish("a", "widget", {"n": n})
    assert sub.closed and sub.overflowed
    assert len(sub.drain()) == 3
    # Its client reconnects with Last-Event-ID and gets the rest from the history.
    again = broker.subscribe(["a"], last_event_id=broker.event_id(3))
    assert [item.seq for item in again.drain()] == list(range(4, 11))


def _refusal(reader: SSEReader) -> dict:
    assert reader.status == 429, (reader.status, reader.body)
    errors = json.loads(reader.body)["errors"]
    assert [e["code"] for e in errors] == ["too_many_streams"], errors
    return errors[0]


@pytest.mark.parametrize("server", ["wsgi", "asgi"])
def test_open_streams_are_capped_per_visitor_and_per_address_and_freed_on_close(
    capped, live_server, asgi_server, server
):
    base = live_server.url if server == "wsgi" else asgi_server.url
    register_agent("sse-streamer", StreamingAgent)
    visitors = [new_anonymous_id() for _ in range(3)]
    sessions = [ConversationService.create_session("sse-streamer", anonymous_id=v) for v in visitors]
    first, second, third = ({HEADER: v} for v in visitors)
    readers = []
    try:
        readers += [SSEReader(base, path(sessions[0]), headers=first) for _ in range(2)]
        assert [r.status for r in readers] == [200, 200]
        refused = _refusal(SSEReader(base, path(sessions[0]), headers=first))
        assert "per visitor" in refused["message"]

        readers.append(SSEReader(base, path(sessions[1]), headers=second))  # another visitor counts apart
        assert readers[-1].status == 200
        # Three anonymous streams from this address: a fourth visitor's first stream is refused too.
        refused = _refusal(SSEReader(base, path(sessions[2]), headers=third))
        assert "per address" in refused["message"]

        # A signed-in user counts per user only, not under the address.
        user = UserFactory()
        mine = ConversationService.create_session("sse-streamer", user=user)
        client = Client()
        client.force_login(user)
        cookie = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
        readers += [SSEReader(base, path(mine), headers=cookie) for _ in range(2)]
        assert [r.status for r in readers[-2:]] == [200, 200]
        _refusal(SSEReader(base, path(mine), headers=cookie))

        # A stream the client closes frees its place (the server notices at its next heartbeat).
        readers[0].close()
        wait_until(lambda: capped.broker.subscriber_count() == 4, what="the closed stream to be released")
        again = SSEReader(base, path(sessions[0]), headers=first)
        readers.append(again)
        assert again.status == 200, again.body
        _refusal(SSEReader(base, path(sessions[0]), headers=first))
    finally:
        for reader in readers:
            reader.close()
    wait_until(lambda: capped.broker.subscriber_count() == 0, what="every stream to be released")
    assert capped.broker._held == {}


def test_concurrent_opens_by_one_visitor_get_exactly_the_allowed_streams(capped, live_server, conversation):
    session, visitor = conversation
    barrier = threading.Barrier(6)
    readers: list[SSEReader] = []
    lock = threading.Lock()

    def open_stream() -> None:
        barrier.wait()
        reader = SSEReader(live_server.url, path(session), headers={HEADER: visitor})
        with lock:
            readers.append(reader)

    threads = [threading.Thread(target=open_stream) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert sorted(r.status for r in readers) == [200, 200, 429, 429, 429, 429]
    finally:
        for reader in readers:
            reader.close()
    wait_until(lambda: capped.broker.subscriber_count() == 0, what="every stream to be released")
    assert capped.broker._held == {}


def test_broker_counts_holders_exactly_under_concurrent_subscribes():
    broker = Broker()
    limits = {"visitor:a": 5, "address:x": None}
    barrier = threading.Barrier(16)
    taken: list = []
    lock = threading.Lock()

    def subscribe() -> None:
        barrier.wait()
        try:
            subscription = broker.subscribe(["a"], limits=limits)
        except TooManyStreams:
            subscription = None
        with lock:
            taken.append(subscription)

    threads = [threading.Thread(target=subscribe) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    opened = [s for s in taken if s is not None]
    assert len(taken) == 16 and len(opened) == 5
    assert broker.held("visitor:a") == broker.held("address:x") == 5

    # Released from several threads, each twice (the stream's end and the response's close).
    threads = [threading.Thread(target=broker.unsubscribe, args=(s,)) for s in opened * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert broker.held("visitor:a") == broker.held("address:x") == 0
    assert broker.subscriber_count() == 0
    assert len([broker.subscribe(["a"], limits=limits) for _ in range(5)]) == 5
    with pytest.raises(TooManyStreams):
        broker.subscribe(["b"], limits=limits)


def test_odd_last_event_ids_are_ignored_not_a_500(local):
    """``Last-Event-ID`` comes from the client: Unicode digits ("²", "٣") pass ``str.isdigit`` but
    not ``int()``, and more than 4300 digits exceed Python's int conversion limit."""
    from django_ai.conversations.testing.factories import SessionFactory  # only this test makes rows so

    session = SessionFactory()
    client = Client(raise_request_exception=False)
    visitor = {"HTTP_X_CONVERSATION_ANONYMOUS_ID": session.anonymous_id}
    epoch = local.broker.epoch
    channel = {"channel": session_channel(session.pk)}
    for last_event_id in [f"{epoch}-\u00b2", f"{epoch}-\u0663", f"{epoch}-" + "9" * 5000, f"{epoch}--1", "x" * 5000]:
        response = client.get(EVENTS, {**channel, "last_event_id": last_event_id}, **visitor)
        assert response.status_code == 200, (last_event_id[:20], response.content[:200])
        assert response["Content-Type"].startswith("text/event-stream")
        response.close()
    # The same through the header an EventSource sends (WSGI headers are latin-1 text).
    response = client.get(EVENTS, channel, HTTP_LAST_EVENT_ID=f"{epoch}-\u00b9", **visitor)
    assert response.status_code == 200, response.content[:200]
    response.close()
