"""Crash recovery in a web process whose turns run in-process (the demo's default): after a restart
the process recovers the turns the previous one left behind from its first request on, without
waiting for a new message in those conversations.

Real parts: ``manage.py runserver --noreload`` and ``uvicorn backend.asgi:application`` as
subprocesses with the demo settings (ImmediateBackend, in-process turn threads) on a SQLite file
of its own; the rows a killed process
leaves behind (a lease nobody renews over a ``processing`` message, a ``pending`` message whose
task was lost); one unrelated HTTP request.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started
from django.test import override_settings
from django.test.client import ClientHandler

from django_ai.conversations.turns import sweeps

from .servers import migrated_demo_env, running_server
from .turns_support import DUMMY, IMMEDIATE, ai_settings

ROOT = Path(__file__).resolve().parent.parent

# The rows of a process killed mid-turn, written through the ORM by `manage.py shell`.
LEFT_BEHIND = """
import json
from datetime import timedelta
from django.utils import timezone
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.turns.hooks import answered_by_caller

long_ago = timezone.now() - timedelta(seconds=300)

def user_message(session, text, status, **fields):
    message = ConversationMessage(
        session=session, message_type="user", content=text, processing_status=status, **fields
    )
    with answered_by_caller():  # this process answers nothing
        message.save()
    return message

cut = ConversationSession.objects.create(agent_path="echo", anonymous_id="anon_cut_off")
running = user_message(cut, "cut off", "processing", attempts=1, started_at=long_ago)
ConversationSession.objects.filter(pk=cut.pk).update(
    turn_token="dead-process", active_turn=running.pk, turn_heartbeat_at=long_ago
)
lost = ConversationSession.objects.create(agent_path="echo", anonymous_id="anon_lost_task")
waiting = user_message(lost, "never enqueued", "pending")
ConversationMessage.objects.filter(pk=waiting.pk).update(timestamp=long_ago, updated_at=long_ago)
print(json.dumps({"running": str(running.pk), "waiting": str(waiting.pk)}))
"""


@pytest.fixture
def demo_env(tmp_path):
    # In-process tasks and the Local realtime backend, never the suite's databases.
    env = migrated_demo_env(tmp_path / "var", settings={"STALE_TURN_ACTION": "retry"}, drop=["DJANGO_TASKS_BACKEND"])
    return env, tmp_path / "var" / "demo.sqlite3"


def _rows(db: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(db, timeout=20) as conn:
        return conn.execute(sql, params).fetchall()


def _status(db: Path, message_id: str) -> str:
    return _rows(
        db,
        "SELECT processing_status FROM django_ai_conversations_conversationmessage WHERE id = ?",
        message_id.replace("-", ""),
    )[0][0]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["runserver", "uvicorn"])
def test_a_restarted_web_process_recovers_left_over_turns_after_one_unrelated_request(demo_env, tmp_path, kind):
    env, db = demo_env
    made = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", LEFT_BEHIND],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    ids = json.loads(made.stdout.strip().splitlines()[-1])
    assert _status(db, ids["running"]) == "processing" and _status(db, ids["waiting"]) == "pending"

    with running_server(kind, env, tmp_path / f"{kind}.log", http_ready=False) as server:  # TCP only
        time.sleep(1.0)
        # Nothing happens before a request: the process does not sweep at start-up (nor would
        # `migrate` or any other command).
        assert _status(db, ids["running"]) == "processing"

        assert requests.get(f"{server.base}/api/conversations/realtime/config/", timeout=10).status_code == 200

        deadline = time.monotonic() + 20
        while {_status(db, ids["running"]), _status(db, ids["waiting"])} != {"completed"}:
            assert time.monotonic() < deadline, (
                f"left-over turns not recovered: {_status(db, ids['running'])}, {_status(db, ids['waiting'])}\n"
                + server.log_tail()
            )
            time.sleep(0.2)

    replies = _rows(
        db,
        "SELECT reply_to_id, content FROM django_ai_conversations_conversationmessage"
        " WHERE message_type = 'agent' ORDER BY content",
    )
    assert replies == sorted(
        [
            (ids["running"].replace("-", ""), "You said: cut off"),
            (ids["waiting"].replace("-", ""), "You said: never enqueued"),
        ],
        key=lambda r: r[1],
    )
    assert _rows(
        db,
        "SELECT attempts FROM django_ai_conversations_conversationmessage WHERE id = ?",
        ids["running"].replace("-", ""),
    ) == [(2,)]
    assert _rows(db, "SELECT turn_token FROM django_ai_conversations_conversationsession") == [("",), ("",)]


@pytest.fixture
def started(monkeypatch):
    """What recover_from_web_process would start (recorded, not started: this is the test process)."""
    calls: list = []
    monkeypatch.setattr(sweeps, "_start_loop", lambda interval, should_sweep: calls.append(should_sweep))
    sweeps.connect()
    with ai_settings(TURN_RECOVERY_IN_WEB=True):  # a web server's settings (the tests' turn it off)
        yield calls
    request_started.disconnect(dispatch_uid=sweeps.WEB_RECOVERY_UID)  # as tests/conftest.py left it


def test_the_first_server_request_starts_the_loop_once_when_turns_run_in_process(started):
    with override_settings(TASKS=IMMEDIATE), ai_settings(TURN_RECOVERY_IN_WEB=False):
        request_started.send(sender=ClientHandler)  # configured off, as in test settings
    assert started == []
    sweeps.connect()
    with override_settings(TASKS=IMMEDIATE):
        request_started.send(sender=WSGIHandler)
        request_started.send(sender=WSGIHandler)
        assert len(started) == 1  # then the receiver is gone
        (should_sweep,) = started
        assert should_sweep() is True
        with ai_settings(TURN_RECOVERY_INTERVAL=0):
            assert should_sweep() is False


def test_a_process_with_task_workers_leaves_recovery_to_them(started):
    with override_settings(TASKS=DUMMY), ai_settings(TASK_BACKEND="recorder", TASK_QUEUE="turns"):
        request_started.send(sender=WSGIHandler)
    assert started == []
    with override_settings(TASKS=IMMEDIATE):
        request_started.send(sender=WSGIHandler)  # decided once, at the first request
    assert started == []
