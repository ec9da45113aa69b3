"""The Pusher backend end to end against a real Pusher-protocol server (soketi, started here on free
loopback ports with hosted Pusher's limits) and real pusher-js subscribers in Node, which
authenticate through the project's ``realtime/auth/`` endpoint served by ``live_server``."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import uuid

import pytest
import requests
from django.test import Client, override_settings

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import EventName, ProcessingStatus
from django_ai.conversations.context import ResponseStream, display_widget, update_widget
from django_ai.conversations.models import ConversationMessage, ConversationWidget
from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.realtime import get_backend, reset_backend
from django_ai.conversations.realtime.channels import owner_channel, session_channel
from django_ai.conversations.realtime.coalescer import utf16_len
from django_ai.conversations.realtime.pusher import PusherBackend
from django_ai.conversations.realtime.resume import StreamAssembler
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import UserFactory
from tests.realtime_server.harness import NodeSubscriber, free_port

AUTH = "/api/conversations/realtime/auth/"
CONFIG = "/api/conversations/realtime/config/"
HEADER = "X-Conversation-Anonymous-Id"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def use_pusher(soketi_settings: dict, **extra):
    return override_settings(DJANGO_AI={"PUSHER": soketi_settings, "STREAM_COALESCE_WINDOW": 0.02, **extra})


@pytest.fixture
def realtime(soketi):
    """The Pusher backend pointed at soketi, recording what it hands to soketi (and still sending it)."""
    with use_pusher(soketi.pusher_settings):
        reset_backend()
        backend = get_backend()
        assert isinstance(backend, PusherBackend)
        backend.sent = []
        deliver = backend.sender.deliver

        def recording(events):
            deliver(events)
            backend.sent.extend(events)

        backend.sender.deliver = recording
        yield backend
    reset_backend()


class Streamer(ConversationAgent):
    """Streams 150 writes, then shows and updates a widget."""

    writes = [f"{n}:{'😀' if n % 10 == 0 else 'word'} " for n in range(150)]

    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            for n, text in enumerate(self.writes):
                stream.write(text)
                if n % 25 == 0:
                    await asyncio.sleep(0.03)  # a few coalescing windows pass
        widget = display_widget("rating", {"scale": 5})
        update_widget(widget.pk, display_data={"selected": 4})
        return stream.content


def start_session(agent_path: str, agent: type) -> tuple:
    register_agent(agent_path, agent)
    visitor = new_anonymous_id()
    return ConversationService.create_session(agent_path, anonymous_id=visitor), visitor


def subscriber(soketi, live_server, channels: list[str], **kwargs) -> NodeSubscriber:
    return NodeSubscriber(soketi=soketi, auth_endpoint=live_server.url + AUTH, channels=channels, **kwargs)


def test_pusher_js_receives_a_full_streamed_turn_in_order_with_no_gaps(soketi, realtime, live_server):
    session, visitor = start_session("streamer", Streamer)
    channel = session_channel(session.pk)
    with subscriber(soketi, live_server, [channel], headers={HEADER: visitor}) as sub:
        sub.wait_subscribed()
        assert sub.messages("subscribed") == [{"type": "subscribed", "channel": channel}]
        realtime.flush(timeout=5)
        already_sent = len(realtime.sent)

        result = ConversationService.send_message(session_id=session.pk, message="hi")
        assert result["status"] == "success"
        realtime.flush(timeout=5)
        expected = [e for e in realtime.sent[already_sent:] if e.channel == channel]
        sub.wait_for(lambda s: len(s.events()) >= len(expected), what=f"{len(expected)} events")

    received = sub.events()
    # Everything the server sent arrived, once, in the order it was sent.
    assert [(e["event"], e["data"]["id"], e["data"].get("offset")) for e in received] == [
        (e.event, e.payload["id"], e.payload.get("offset")) for e in expected
    ]
    names = [e["event"] for e in received]
    assert names.index(EventName.STREAM_START) < names.index(EventName.TEXT_CHUNK) < names.index(EventName.STREAM_END)
    assert names.index(EventName.STREAM_END) < names.index(EventName.WIDGET) < names.index(EventName.WIDGET_UPDATE)
    for event in received:
        assert {"id", "session_id", "timestamp"} <= set(event["data"]) and event["data"]["session_id"] == str(
            session.pk
        )
    ids = [e["data"]["id"] for e in received]
    assert len(set(ids)) == len(ids)  # coalesced chunks too: de-duplicating by id loses nothing

    agent_message = ConversationMessage.objects.get(pk=result["message_id"])
    chunks = [e["data"] for e in received if e["event"] == EventName.TEXT_CHUNK]
    assert all(c["message_id"] == str(agent_message.pk) for c in chunks)
    assert chunks[0]["offset"] == 0 and chunks[0]["first_sequence"] == 1
    for before, after in itertools.pairwise(chunks):
        assert after["offset"] == before["offset"] + utf16_len(before["text"])  # no gap, no overlap
        assert after["first_sequence"] == before["sequence"] + 1
    assert chunks[-1]["sequence"] == len(Streamer.writes)
    assert len(chunks) < len(Streamer.writes)  # coalesced
    assert "".join(c["text"] for c in chunks) == agent_message.content == "".join(Streamer.writes)

    widget = ConversationWidget.objects.get(session=session)
    shown = next(e["data"] for e in received if e["event"] == EventName.WIDGET)
    updated = next(e["data"] for e in received if e["event"] == EventName.WIDGET_UPDATE)
    assert shown["widget_id"] == updated["widget_id"] == str(widget.pk)
    assert (shown["widget_type"], shown["data"], updated["display_data"]) == ("rating", {"scale": 5}, {"selected": 4})
    statuses = [
        (e["data"]["message_id"], e["data"]["status"]) for e in received if e["event"] == EventName.MESSAGE_STATUS
    ]
    assert (str(agent_message.pk), ProcessingStatus.COMPLETED) in statuses


class PausingStreamer(ConversationAgent):
    """Writes the first half, waits until the test lets it go on, writes the rest."""

    halfway = threading.Event()
    go_on = threading.Event()
    first = [f"first-{n}-é " for n in range(20)]
    second = [f"second-{n}-😀 " for n in range(20)]

    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            for text in self.first:
                stream.write(text)
            self.halfway.set()
            # go_on is a threading.Event the test sets from its own thread: an asyncio.Event
            # cannot be set from there.
            while not self.go_on.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            for text in self.second:
                stream.write(text)
        return stream.content


def test_a_subscriber_joining_mid_stream_rebuilds_the_text_from_the_row_and_later_chunks(soketi, live_server):
    # A long window keeps the first half queued as one run, and the row is saved at every write:
    # the joiner's row then ends inside the coalesced chunk it receives, and must cut it there.
    with use_pusher(soketi.pusher_settings, STREAM_COALESCE_WINDOW=60, STREAM_SAVE_INTERVAL=0):
        reset_backend()
        PausingStreamer.halfway.clear()
        PausingStreamer.go_on.clear()
        session, visitor = start_session("pausing", PausingStreamer)
        outcome: dict = {}
        turn = threading.Thread(
            target=lambda: outcome.update(ConversationService.send_message(session_id=session.pk, message="go"))
        )
        turn.start()
        try:
            assert PausingStreamer.halfway.wait(15)
            with subscriber(soketi, live_server, [session_channel(session.pk)], headers={HEADER: visitor}) as sub:
                sub.wait_subscribed()
                row = ConversationMessage.objects.get(session=session, message_type="agent")
                assert row.processing_status == ProcessingStatus.STREAMING
                assert row.stream_sequence == len(PausingStreamer.first) and row.content == "".join(
                    PausingStreamer.first
                )
                PausingStreamer.go_on.set()
                turn.join(30)
                sub.wait_for(lambda s: bool(s.events(EventName.STREAM_END)), what="stream_end")
        finally:
            PausingStreamer.go_on.set()
            turn.join(30)
    reset_backend()
    assert outcome["status"] == "success"

    chunks = [e["data"] for e in sub.events(EventName.TEXT_CHUNK)]
    assert chunks[0]["first_sequence"] <= row.stream_sequence < chunks[0]["sequence"]  # the cut case
    joiner = StreamAssembler(row.pk)
    joiner.apply_row(content=row.content, stream_sequence=row.stream_sequence, processing_status=row.processing_status)
    for chunk in chunks:
        joiner.apply_chunk(chunk)
    final = ConversationMessage.objects.get(pk=row.pk)
    assert joiner.text == final.content == "".join(PausingStreamer.first + PausingStreamer.second)
    assert not joiner.needs_row
    # Naively appending every later chunk to the row would have duplicated the first half.
    assert row.content + "".join(c["text"] for c in chunks) != final.content


def test_unauthorised_subscribers_are_refused_and_receive_nothing(soketi, realtime, live_server):
    session, visitor = start_session("streamer", Streamer)
    channel = session_channel(session.pk)
    unknown = session_channel(uuid.uuid4())
    owner = subscriber(soketi, live_server, [channel], headers={HEADER: visitor})
    stranger = subscriber(
        soketi,
        live_server,
        [channel, unknown, "private-conversation-session-nope"],
        headers={HEADER: new_anonymous_id()},
    )
    with owner, stranger:
        owner.wait_subscribed()
        stranger.wait_subscribed(3)
        errors = {m["channel"]: m["status"] for m in stranger.messages("subscription_error")}
        assert errors == {channel: 403, unknown: 404, "private-conversation-session-nope": 403}
        assert not stranger.messages("subscribed")

        ConversationService.send_message(session_id=session.pk, message="secret")
        realtime.flush(timeout=5)
        owner.wait_for(lambda s: bool(s.events(EventName.STREAM_END)), what="the owner's stream_end")
        assert stranger.events() == []


def test_a_logged_in_user_subscribes_with_the_session_cookie_and_csrf_token(soketi, realtime, live_server):
    register_agent("streamer", Streamer)
    user = UserFactory()
    session = ConversationService.create_session("streamer", user=user)
    client = Client()
    client.force_login(user)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    config = requests.get(live_server.url + CONFIG, cookies=cookies, timeout=10)
    assert config.status_code == 200
    cookies["csrftoken"] = config.cookies["csrftoken"]
    own = config.json()["owner_channel"]
    assert own == owner_channel(user_id=user.pk)
    assert (config.json()["key"], config.json()["port"]) == (soketi.key, soketi.port)

    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    with subscriber(
        soketi, live_server, [session_channel(session.pk), own], cookie=cookie, csrf_token=cookies["csrftoken"]
    ) as sub:
        sub.wait_subscribed(2)
        assert {m["channel"] for m in sub.messages("subscribed")} == {session_channel(session.pk), own}
        session.title = "Renamed"
        session.save()
        realtime.flush(timeout=5)
        sub.wait_for(
            lambda s: any(e["channel"] == own for e in s.events(EventName.MODEL_CHANGE)), what="owner model_change"
        )
    change = next(e["data"] for e in sub.events(EventName.MODEL_CHANGE) if e["channel"] == own)
    assert (change["model"], change["operation"], change["pks"]) == ("session", "update", [str(session.pk)])

    with subscriber(
        soketi, live_server, [session_channel(session.pk)], cookie=f"sessionid={cookies['sessionid']}"
    ) as no_csrf:
        no_csrf.wait_subscribed()
        error = no_csrf.messages("subscription_error")[0]["error"]
        assert error.startswith("HTTP 403") and "CSRF" in error


class LongWriter(ConversationAgent):
    """Writes texts far above Pusher's 10 KB event limit."""

    writes = ["😀" * 4000, 'say "hi" \\ ' * 2000, "é" * 12000, "end"]

    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            for text in self.writes:
                stream.write(text)
        return stream.content


def test_long_text_is_split_to_fit_pushers_event_limit(soketi, realtime, live_server, caplog):
    session, visitor = start_session("long", LongWriter)
    caplog.set_level(logging.WARNING, logger="django_ai.conversations.realtime")
    with subscriber(soketi, live_server, [session_channel(session.pk)], headers={HEADER: visitor}) as sub:
        sub.wait_subscribed()
        ConversationService.send_message(session_id=session.pk, message="long")
        realtime.flush(timeout=5)
        sub.wait_for(lambda s: bool(s.events(EventName.STREAM_END)), what="stream_end")
    chunks = [e["data"] for e in sub.events(EventName.TEXT_CHUNK)]
    assert len(chunks) > len(LongWriter.writes)
    assert "".join(c["text"] for c in chunks) == "".join(LongWriter.writes)
    ids = [c["id"] for c in chunks]
    assert len(set(ids)) == len(ids)  # each piece of a split write has its own id
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]


class BigWidget(ConversationAgent):
    """Shows a widget whose data is far above Pusher's 10 KB event limit, then updates it."""

    rows = [{"n": n, "label": f"row {n} é😀"} for n in range(600)]

    async def get_response(self, message, request=None, **kwargs):
        widget = display_widget("table", {"rows": self.rows})
        update_widget(widget.pk, data={"rows": self.rows[::-1]}, display_data={"page": 2})
        return "done"


def test_a_widget_event_over_the_limit_is_sent_truncated_and_the_row_has_the_data(soketi, realtime, live_server):
    session, visitor = start_session("big-widget", BigWidget)
    assert len(json.dumps({"rows": BigWidget.rows}).encode()) > 10 * 1024
    with subscriber(soketi, live_server, [session_channel(session.pk)], headers={HEADER: visitor}) as sub:
        sub.wait_subscribed()
        ConversationService.send_message(session_id=session.pk, message="table please")
        realtime.flush(timeout=5)
        sub.wait_for(lambda s: bool(s.events(EventName.WIDGET_UPDATE)), what="widget_update")
    widget = ConversationWidget.objects.get(session=session)
    shown = next(e["data"] for e in sub.events(EventName.WIDGET))
    updated = next(e["data"] for e in sub.events(EventName.WIDGET_UPDATE))
    for event in (shown, updated):
        assert event.pop("id") and event.pop("timestamp")
        assert event == {
            "session_id": str(session.pk),
            "widget_id": str(widget.pk),
            "message_id": str(widget.message_id),
            "widget_type": "table",
            "truncated": True,
        }
    # The full data is in the row, read through the bridge as the SDK does.
    response = requests.post(
        live_server.url + "/api/conversations/models/widget/query/",
        json={"filter": {"id": str(widget.pk)}},
        headers={HEADER: visitor},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    row = response.json()["included"]["widget"][str(widget.pk)]
    assert (row["data"], row["display_data"]) == ({"rows": BigWidget.rows[::-1]}, {"page": 2})


class SlowStreamer(ConversationAgent):
    writes = [f"part {n} " for n in range(60)]

    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            for text in self.writes:
                stream.write(text)
                await asyncio.sleep(0.01)
        return stream.content


def test_an_unreachable_pusher_server_does_not_break_the_turn_and_is_logged_once(caplog):
    """No server listens on the port: the realtime layer fails, the conversation does not."""
    dead = {
        "APP_ID": "1",
        "KEY": "k",
        "SECRET": "s",
        "HOST": "127.0.0.1",
        "PORT": free_port(),
        "SCHEME": "http",
        "TIMEOUT": 1,
    }
    caplog.set_level(logging.DEBUG, logger="django_ai.conversations.realtime")
    with use_pusher(dead, STREAM_COALESCE_WINDOW=0.005):
        reset_backend()
        backend = get_backend()
        backend.sender.outage_backoff = 0.05
        session, _ = start_session("slow", SlowStreamer)
        result = ConversationService.send_message(session_id=session.pk, message="hello?")
        backend.flush(timeout=5)
        failures = backend.sender.failures
    reset_backend()

    assert result["status"] == "success" and result["response"] == "".join(SlowStreamer.writes)
    row = ConversationMessage.objects.get(pk=result["message_id"])
    assert (row.processing_status, row.content) == (ProcessingStatus.COMPLETED, "".join(SlowStreamer.writes))
    assert failures >= 3  # several batches failed ...
    errors = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("django_ai.conversations.realtime")
    ]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # ... and the outage was logged once
    assert "pusher" in errors[0].getMessage()
