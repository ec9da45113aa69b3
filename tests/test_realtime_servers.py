"""The demo project under the servers people actually run, as subprocesses: ``manage.py runserver``
(threaded WSGI) and ``uvicorn backend.asgi:application`` (ASGI), with the default Local backend
and in-process tasks, on a SQLite file database of their own.

A stateless visitor (anonymous id in a header, no cookies) starts a conversation with the demo's
support agent through the bridge, opens the Server-Sent Events stream, sends a message (the turn
runs inside the server process) and rebuilds the reply from the stream; both servers must deliver
the same events.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from django_ai.conversations.constants import EventName
from django_ai.conversations.realtime.channels import session_channel
from django_ai.conversations.realtime.resume import StreamAssembler
from tests.realtime_server.harness import SSEReader, free_port

ROOT = Path(__file__).resolve().parent.parent
API = "/api/conversations/"
HEADER = "X-Conversation-Anonymous-Id"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project_env(tmp_path_factory):
    """Environment for a server subprocess: the demo settings on a fresh, migrated SQLite file."""
    var = tmp_path_factory.mktemp("demo-var")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "DJANGO_AI_VAR_DIR": str(var),
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("DATABASE_URL", "DJANGO_TEST_DB_NAME", "PUSHER_KEY"):
        env.pop(key, None)  # never touch the suite's databases; Local backend, not Pusher
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    return env


def _serve(command: list[str], env: dict, port: int, log: Path):
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[2]} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(base + API + "realtime/config/", timeout=2).status_code == 200:
                return process, base
        except requests.RequestException:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command} did not answer within 60 s: {log.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="module")
def servers(project_env, tmp_path_factory):
    logs = tmp_path_factory.mktemp("server-logs")
    wsgi_port, asgi_port = free_port(), free_port()
    started = []
    try:
        started.append(
            _serve(
                [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{wsgi_port}"],
                project_env,
                wsgi_port,
                logs / "runserver.log",
            )
        )
        started.append(
            _serve(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "backend.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(asgi_port),
                    "--log-level",
                    "warning",
                ],
                project_env,
                asgi_port,
                logs / "uvicorn.log",
            )
        )
        yield {"runserver": started[0][1], "uvicorn": started[1][1]}
    finally:
        for process, _ in started:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


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
        time.sleep(0.3)  # let trailing model_change events arrive
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
        # What a client sees, without ids, times and coalescing boundaries (timing-dependent).
        shapes[kind] = [
            (
                e["event"],
                e["data"].get("message_type"),
                e["data"].get("status"),
                e["data"].get("model"),
                e["data"].get("operation"),
            )
            for e in events
            if e["event"] != EventName.TEXT_CHUNK
        ]
        shapes[kind + " text"] = rebuilt.text
    assert shapes["runserver"] == shapes["uvicorn"]
    assert shapes["runserver text"] == shapes["uvicorn text"]
