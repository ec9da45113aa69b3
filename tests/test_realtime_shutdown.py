"""The per-process sender delivers what is still queued when the process exits (its ``atexit``
flush), through a real process exit: a Python subprocess publishes chunks to soketi and returns at
once, and a pusher-js subscriber (authorised by ``live_server``) receives every one of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.test import override_settings

from django_ai.conversations.constants import EventName
from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.realtime import reset_backend
from django_ai.conversations.realtime.channels import session_channel
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from tests.realtime_server.harness import NodeSubscriber, Soketi
from tests.test_realtime_pusher import Streamer

ROOT = Path(__file__).resolve().parent.parent
AUTH = "/api/conversations/realtime/auth/"
HEADER = "X-Conversation-Anonymous-Id"
WRITES = [f"{n}:{'😀' if n % 7 == 0 else 'word'} " for n in range(200)]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Publishes the writes of one message and a widget, then ends: no flush, no close. The 60 s window
# keeps all but the first write queued, so only the exit flush can deliver them.
PUBLISHER = textwrap.dedent(
    """
    import json, sys
    import django
    django.setup()
    from django_ai.conversations.constants import EventName
    from django_ai.conversations.realtime import get_backend, publish

    session_id, message_id, writes = json.loads(sys.argv[1])
    for sequence, text in enumerate(writes, start=1):
        publish(EventName.TEXT_CHUNK, session_id=session_id, message_id=message_id, sequence=sequence, text=text)
    publish(EventName.STREAM_END, session_id=session_id, message_id=message_id, sequence=len(writes))
    print(json.dumps({"pending": get_backend().sender.pending()}), flush=True)
    """
)


@pytest.fixture
def pusher_auth(soketi):
    """This process signs subscriptions (``realtime/auth/`` under live_server) for soketi."""
    with override_settings(DJANGO_AI={"PUSHER": soketi.pusher_settings}):
        reset_backend()
        yield
    reset_backend()


def run_publisher(soketi: Soketi, tmp_path: Path, args: list) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "DJANGO_AI_VAR_DIR": str(tmp_path),
        "DJANGO_AI_SETTINGS_JSON": json.dumps({"PUSHER": soketi.pusher_settings, "STREAM_COALESCE_WINDOW": 60}),
        "PYTHONPATH": str(ROOT),
    }
    for name in ("PUSHER_KEY", "DJANGO_AI_TEST_SERVER"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-c", PUBLISHER, json.dumps(args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_chunks_still_queued_when_the_process_exits_reach_the_subscriber(soketi, pusher_auth, live_server, tmp_path):
    register_agent("streamer", Streamer)
    visitor = new_anonymous_id()
    session = ConversationService.create_session("streamer", anonymous_id=visitor)
    channel = session_channel(session.pk)
    message_id = "00000000-0000-4000-8000-000000000001"
    with NodeSubscriber(
        soketi=soketi, auth_endpoint=live_server.url + AUTH, channels=[channel], headers={HEADER: visitor}
    ) as sub:
        sub.wait_subscribed()
        assert sub.messages("subscribed"), sub.messages()
        done = run_publisher(soketi, tmp_path, [str(session.pk), message_id, WRITES])
        assert done.returncode == 0, done.stderr
        # At the end of the script almost everything was still queued: the exit flush sent it.
        assert json.loads(done.stdout.strip().splitlines()[-1])["pending"] >= 1
        sub.wait_for(lambda s: bool(s.events(EventName.STREAM_END)), what="stream_end")

    chunks = [e["data"] for e in sub.events(EventName.TEXT_CHUNK)]
    assert "".join(c["text"] for c in chunks) == "".join(WRITES)
    assert chunks[-1]["sequence"] == len(WRITES)
    assert [c["offset"] for c in chunks] == sorted(c["offset"] for c in chunks)
    assert sub.events()[-1]["event"] == EventName.STREAM_END
