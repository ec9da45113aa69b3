"""AI SDK endpoint benchmark: the same reply read through ``POST ai-sdk/chat/`` (UI message chunks)
and through the app's own Server-Sent Events (``realtime/events/``, the events the TypeScript SDK
reads), against uvicorn in this process with the Local realtime backend.

An agent writes ``--writes`` chunks (default 2000, ``tok<n> ``) as fast as it can. For each path,
``--rounds`` rounds (default 5, alternating the two paths, a new conversation each):

- time to first byte of the reply: from sending the message to receiving its first text;
- time to the end: to ``[DONE]`` (AI SDK) or the user message's ``message_status`` ``completed``
  (our SSE, the event the SDK ends a reply on);
- throughput: the reply's characters per second over that time, and frames per reply.

The SSE client subscribes before it sends the message (``POST models/message/``), as the SDK does.
Both clients are Python ``requests`` reading the response line by line.

``./dev bench ai_sdk`` (SQLite file database; DATABASE_URL for PostgreSQL). ``--quick``: 50
writes, one round.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import time
from typing import Any

import django

from tests.bench.options import int_option, is_quick


def main(argv: list[str]) -> None:
    django.setup()
    import requests
    from django.core.asgi import get_asgi_application
    from django.core.signals import request_started
    from django.test import override_settings

    from django_ai.conversations import ConversationAgent
    from django_ai.conversations.context import ResponseStream
    from django_ai.conversations.realtime import reset_backend
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.turns.sweeps import WEB_RECOVERY_UID
    from tests.bench.db import bench_database
    from tests.realtime_server.harness import UvicornThread

    quick = is_quick(argv)
    writes = int_option(argv, "writes", 50 if quick else 2000)
    rounds = int_option(argv, "rounds", 1 if quick else 5)

    class FastWriter(ConversationAgent):
        """Writes ``writes`` chunks, yielding to the event loop between them."""

        async def get_response(self, message, request=None, **kwargs):
            with ResponseStream() as stream:
                for n in range(writes):
                    stream.write(f"tok{n} ")
                    await asyncio.sleep(0)
            return stream.content

    register_agent("bench-ai-sdk", FastWriter)
    expected = "".join(f"tok{n} " for n in range(writes))
    request_started.disconnect(dispatch_uid=WEB_RECOVERY_UID)
    local = {
        "REALTIME_BACKEND": "django_ai.conversations.realtime.local.LocalBackend",
        "ANONYMOUS_ADDRESS_THROTTLE_RATE": "100000/min",
        "SESSION_START_THROTTLE_RATE": "100000/min",
        "MESSAGE_CREATE_THROTTLE_RATE": "100000/min",
    }
    with bench_database() as label, override_settings(DJANGO_AI=local):
        reset_backend()
        try:
            with UvicornThread(get_asgi_application()) as web:
                api = web.url + "/api/conversations/"
                print(
                    f"database: {label}; Python {platform.python_version()}; Django {django.get_version()}; "
                    f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; uvicorn in-process, Local "
                    f"backend; {writes} writes per reply, {rounds} rounds"
                )
                results: dict[str, list[tuple[float, float, int]]] = {"ai-sdk": [], "sse": []}
                for _ in range(rounds):
                    for path in ("ai-sdk", "sse"):
                        http = requests.Session()
                        started = http.post(api + "start/", json={"agent_path": "bench-ai-sdk"}, timeout=30).json()
                        # A stateless client (the id in a header, no cookie): no CSRF token to send.
                        http.cookies.clear()
                        http.headers["X-Conversation-Anonymous-Id"] = started["anonymous_id"]
                        run = _ai_sdk if path == "ai-sdk" else _sse
                        ttfb, total, frames, text = run(http, api, started["session_id"])
                        if text != expected:
                            raise SystemExit(f"{path}: the reply read differs from the one written")
                        results[path].append((ttfb, total, frames))
                        http.close()
        finally:
            reset_backend()
    _table(results, len(expected))


def _ai_sdk(http: Any, api: str, session_id: str) -> tuple[float, float, int, str]:
    message = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "go"}]}
    body = {"id": session_id, "messages": [message], "trigger": "submit-message"}
    t0 = time.perf_counter()
    first: float | None = None
    frames = 0
    text: list[str] = []
    with http.post(api + "ai-sdk/chat/", json=body, stream=True, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith(b"data: "):
                continue
            frames += 1
            data = line[6:]
            if data == b"[DONE]":
                break
            chunk = json.loads(data)
            if chunk["type"] == "text-delta":
                if first is None:
                    first = time.perf_counter()
                text.append(chunk["delta"])
    end = time.perf_counter()
    assert first is not None
    return first - t0, end - t0, frames, "".join(text)


def _sse(http: Any, api: str, session_id: str) -> tuple[float, float, int, str]:
    channel = f"private-conversation-session-{session_id}"
    with http.get(api + "realtime/events/", params={"channel": channel}, stream=True, timeout=120) as events:
        events.raise_for_status()
        lines = events.iter_lines()
        t0 = time.perf_counter()
        created = http.post(api + "models/message/", json={"session": session_id, "content": "go"}, timeout=30)
        created.raise_for_status()
        user_id = str(created.json()["data"])
        first: float | None = None
        frames = 0
        text: dict[int, str] = {}
        name = ""
        for line in lines:
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                frames += 1
                payload = json.loads(line[6:])
                if name == "text_chunk":
                    if first is None:
                        first = time.perf_counter()
                    text[payload["offset"]] = payload["text"]
                elif (
                    name == "message_status"
                    and payload["message_id"] == user_id
                    and payload["status"] in ("completed", "failed", "cancelled")
                ):
                    break
        end = time.perf_counter()
    assert first is not None
    return first - t0, end - t0, frames, "".join(text[k] for k in sorted(text))


def _table(results: dict[str, list[tuple[float, float, int]]], size: int) -> None:
    print()
    print("| path | time to first text ms (median) | time to end ms (median) | chars/s | frames per reply |")
    print("|---|---:|---:|---:|---:|")
    medians: dict[str, tuple[float, float]] = {}
    for path, runs in results.items():
        ttfb = statistics.median(r[0] for r in runs) * 1000
        total = statistics.median(r[1] for r in runs) * 1000
        frames = statistics.median(r[2] for r in runs)
        medians[path] = (ttfb, total)
        label = "AI SDK endpoint (POST ai-sdk/chat/)" if path == "ai-sdk" else "our SSE (realtime/events/)"
        print(f"| {label} | {ttfb:.1f} | {total:.1f} | {size / (total / 1000):,.0f} | {frames:.0f} |")
    (a_first, a_total), (s_first, s_total) = medians["ai-sdk"], medians["sse"]
    print(f"\nRatios (AI SDK / SSE): first text {a_first / s_first:.2f}x, time to end {a_total / s_total:.2f}x")
