"""The web process of the many-clients benchmark (``tests/bench/bench_clients.py``), run as
``uvicorn tests.bench.clients_app:application`` in a process of its own.

The demo's ASGI application (``backend.asgi``, its realtime backend chosen by
``DJANGO_AI_SETTINGS_JSON``) on the benchmark's throw-away database (``BENCH_CLIENTS_DB_NAME``),
plus two benchmark-only paths answered before Django:

- ``GET /bench/stats``: the process's RSS, open file descriptors, asyncio tasks, threads and the
  Local broker's subscriptions (JSON);
- ``POST /bench/turns`` with ``{"sessions": [...], "message": "<chunks> <pause>"}``: starts one
  real turn per session (``ConversationService.send_message``, each on a thread, as a task worker
  runs them) and answers at once;
- ``POST /bench/publish``, the same body: no turn, one thread publishes what those turns' streams
  would (``publish_text`` every ``pause`` seconds for each session, then ``stream_end``), through
  the backend's real sending path.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import os
import threading
import time
import uuid
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

from django.conf import settings

settings.DATABASES["default"]["NAME"] = os.environ["BENCH_CLIENTS_DB_NAME"]

from django.db import connection  # noqa: E402

from backend.asgi import application as django_application  # noqa: E402
from django_ai.conversations.constants import EventName  # noqa: E402
from django_ai.conversations.realtime import get_backend, publish, publish_text  # noqa: E402
from django_ai.conversations.realtime.channels import session_channel  # noqa: E402
from django_ai.conversations.realtime.local import LocalBackend  # noqa: E402
from django_ai.conversations.service import ConversationService  # noqa: E402
from tests.bench.bench_clients import register_streamer  # noqa: E402

register_streamer()


#: Seconds spent in the cyclic garbage collector so far, and when the running collection started.
_gc = {"seconds": 0.0, "started": 0.0}


def _time_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc["started"] = time.perf_counter()
    else:
        _gc["seconds"] += time.perf_counter() - _gc["started"]


gc.callbacks.append(_time_gc)
if os.environ.get("BENCH_CLIENTS_GC") == "off":  # to compare: no cyclic collection at all
    gc.disable()

SENDER_FIGURES = ("requests", "events_sent", "failures", "dropped", "lost", "pending")


def _value(figure: Any) -> Any:
    return figure() if callable(figure) else figure


def _stats() -> dict[str, Any]:
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    backend = get_backend()
    return {
        "rss_kb": rss,
        "cpu_seconds": sum(os.times()[:2]),
        "gc_seconds": _gc["seconds"],
        "server": f"{type(asyncio.get_running_loop()).__module__} loop, "
        f"{'httptools' if importlib.util.find_spec('httptools') else 'h11'} HTTP parser",
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
        "subscriptions": backend.broker.subscriber_count() if isinstance(backend, LocalBackend) else None,
        "sender": {key: _value(getattr(backend.sender, key, None)) for key in SENDER_FIGURES},
    }


def _turn(session_id: str, message: str) -> None:
    try:
        ConversationService.send_message(session_id=session_id, message=message)
    finally:
        connection.close()


def _start_turns(body: dict[str, Any]) -> dict[str, Any]:
    for session_id in body["sessions"]:
        threading.Thread(target=_turn, args=(session_id, body["message"]), daemon=True).start()
    return {"started": len(body["sessions"])}


def _publish(sessions: list[str], chunks: int, pause: float) -> None:
    templates = {sid: {"session_id": sid, "message_id": str(uuid.uuid4())} for sid in sessions}
    for sequence in range(1, chunks + 1):
        for sid, template in templates.items():
            publish_text(session_channel(sid), template, sequence, f"@{time.time() * 1000:.2f} ")
        time.sleep(pause)
    for sid, template in templates.items():
        publish(EventName.STREAM_END, session_id=sid, message_id=template["message_id"], sequence=chunks)


def _start_publishing(body: dict[str, Any]) -> dict[str, Any]:
    chunks, pause = body["message"].split()
    args = (body["sessions"], int(chunks), float(pause))
    threading.Thread(target=_publish, args=args, daemon=True).start()
    return {"started": len(body["sessions"])}


async def _answer(send: Any, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/bench/stats":
        await _answer(send, _stats())
    elif scope["type"] == "http" and scope["path"] in ("/bench/turns", "/bench/publish"):
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        start = _start_turns if scope["path"] == "/bench/turns" else _start_publishing
        await _answer(send, start(json.loads(raw)))
    else:
        await django_application(scope, receive, send)
