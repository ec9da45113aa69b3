"""The demo project under the servers people actually run, as subprocesses: ``manage.py runserver``
(threaded WSGI) and ``uvicorn backend.asgi:application`` (ASGI), with the default Local backend
and in-process tasks, on a SQLite file database of their own.

A stateless visitor (anonymous id in a header, no cookies) starts a conversation with the demo's
support agent through the bridge, opens the Server-Sent Events stream, sends a message (the turn
runs inside the server process) and rebuilds the reply from the stream; both servers must deliver
the same events.
"""

from __future__ import annotations

import pytest
import requests

from django_ai.conversations.constants import EventName
from django_ai.conversations.realtime.channels import session_channel
from django_ai.conversations.realtime.resume import StreamAssembler
from tests.realtime_server.harness import SSEReader
from tests.servers import migrated_demo_env, running_server

API = "/api/conversations/"
HEADER = "X-Conversation-Anonymous-Id"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Both servers on one fresh, migrated SQLite file: the demo settings, the Local backend."""
    var = tmp_path_factory.mktemp("demo-var")
    env = migrated_demo_env(var)
    with running_server("runserver", env, var / "runserver.log") as wsgi:
        with running_server("uvicorn", env, var / "uvicorn.log") as asgi:
            yield {"runserver": wsgi.base, "uvicorn": asgi.base}


def _converse(base: str) -> tuple[list[dict], dict]:
    started = requests.post(base + API + "start/", json={"agent_path": "support"}, timeout=10)
    assert started.status_code == 201, started.text
    session_id, visitor = started.json()["session_id"], started.json()["anonymous_id"]
    headers = {HEADER: visitor}
    config = requests.get(base + API + "realtime/config/", headers=headers, timeout=10).json()
    assert config["backend"] == "local"
    reader = SSEReader(base, f"{config['events_endpoint']}?channel={session_channel(session_id)}", headers=headers)
    try:
        assert reader.status == 200, reader.body
        reader.wait_for(lambda r: "connected" in r.comments, what="the stream to open")
        sent = requests.post(
            base + API + "models/message/",
            json={"session": session_id, "content": "Where do I find my invoice?"},
            headers=headers,
            timeout=60,
        )
        assert sent.status_code == 201, sent.text
        reader.wait_for(
            lambda r: any(
                e["event"] == EventName.MESSAGE_STATUS
                and e["data"]["message_type"] == "agent"
                and e["data"]["status"] == "completed"
                for e in r.events
            ),
            timeout=30,
            what="the agent message to complete",
        )
        events = list(reader.events)
    finally:
        reader.close()
    rows = requests.post(
        base + API + "models/message/query/", json={"filter": {"session": session_id}}, headers=headers, timeout=10
    ).json()
    agent = next(row for row in rows["included"]["message"].values() if row["message_type"] == "agent")
    return events, agent


def test_runserver_and_uvicorn_deliver_the_same_stream(servers):
    results = {kind: _converse(base) for kind, base in servers.items()}
    shapes = {}
    for kind, (events, agent) in results.items():
        assert agent["processing_status"] == "completed"
        rebuilt = StreamAssembler(agent["id"])
        for event in events:
            if event["event"] == EventName.TEXT_CHUNK:
                assert rebuilt.apply_chunk(event["data"]), (kind, event)
        # The demo agent returns its streamed text stripped; the row holds what it returned.
        assert rebuilt.text.strip() == agent["content"] and "Billing" in agent["content"], kind
        names = [e["event"] for e in events]
        assert (
            names.index(EventName.STREAM_START) < names.index(EventName.TEXT_CHUNK) < names.index(EventName.STREAM_END)
        ), kind
        # What a client sees of the turn, from the user message's creation to the reply's
        # completion, without ids, times and coalescing boundaries (timing-dependent). Outside
        # that window the stream depends on timing, not on the server: the conversation's own
        # creation event reaches a client that subscribed within its delivery window, and the
        # session's and rows' last updates may still be on their way.
        turn = _turn_window(events)
        shapes[kind] = [
            (
                e["event"],
                e["data"].get("message_type"),
                e["data"].get("status"),
                e["data"].get("model"),
                e["data"].get("operation"),
            )
            for e in turn
            if e["event"] != EventName.TEXT_CHUNK
        ]
        shapes[kind + " text"] = rebuilt.text
    assert shapes["runserver"] == shapes["uvicorn"]
    assert shapes["runserver text"] == shapes["uvicorn text"]


def _turn_window(events: list[dict]) -> list[dict]:
    """The events from the user message's creation to the agent message's completion, inclusive."""
    start = next(
        i
        for i, e in enumerate(events)
        if e["event"] == EventName.MODEL_CHANGE
        and e["data"].get("model") == "message"
        and e["data"].get("operation") == "create"
    )
    end = next(
        i
        for i, e in enumerate(events)
        if e["event"] == EventName.MESSAGE_STATUS
        and e["data"]["message_type"] == "agent"
        and e["data"]["status"] == "completed"
    )
    return events[start : end + 1]
