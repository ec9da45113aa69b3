"""Realtime benchmark, in one run against a real Pusher-protocol server (soketi) with a pusher-js
subscriber that authenticates through the project's ``realtime/auth/`` endpoint.

Part 1, one stream: an async agent (the README's shape) writes ``--writes`` chunks (default
2000), one every ~2 ms, in a real turn (``ConversationService.send_message``). Measured, per
backend, over ``--rounds`` interleaved rounds (default 3):

- agent-side cost of ``stream.write()`` (median, p99): timed inside the agent;
- HTTP requests to the Pusher server per 1,000 chunks (the turn's other events included);
- write-to-receipt latency in pusher-js (p50, p95): from just before ``write()`` to the moment
  the Node subscriber receives the event carrying that write (both wall clocks of this machine).

Backends: the PusherBackend (sender thread, 50 ms coalescing window, batches) against a naive one
that calls ``pusher.trigger()`` synchronously for every event, inside ``write()``.

Part 2, load: ``--streams`` concurrent turns (default 50), each writing a chunk every 20 ms for
``--seconds`` (default 30), one pusher-js process subscribed to all of their channels; every
stream is checked for sequence and offset gaps and its text compared with the saved row.

``./dev bench realtime`` (SQLite file database; set DATABASE_URL for PostgreSQL). ``--quick``: 50
writes, one round, 3 streams for 2 s. ``--save-interval=S`` sets ``STREAM_SAVE_INTERVAL`` for the
run (default: the setting's default), to see what the row saves cost the writes.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

import django

from django_ai.conversations.realtime.base import BaseRealtimeBackend
from django_ai.conversations.realtime.pusher import PusherBackend
from tests.bench.options import Skipped, int_option, is_quick, option


class NaivePusherBackend(PusherBackend):
    """The baseline: one synchronous ``trigger`` HTTP request per event, in the caller's thread
    (subscriptions are signed as by the real backend)."""

    name = "naive-pusher"

    def __init__(self, *, options: dict[str, Any] | None = None):
        super().__init__(options=options)
        self.requests = 0
        self._lock = threading.Lock()

    def send(self, channel: str, event: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self.requests += 1
        self.client.trigger(channel, event, payload)

    # Every write as its own full event (id, timestamp), sent through send() above.
    send_text = BaseRealtimeBackend.send_text
    text_sink = BaseRealtimeBackend.text_sink


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str]) -> None:
    django.setup()
    from tests.realtime_server.harness import node_available

    reason = node_available()
    if reason:
        raise Skipped(f"soketi and pusher-js cannot run: {reason}")
    from django.core.asgi import get_asgi_application
    from django.core.signals import request_started

    from django_ai.conversations.turns.sweeps import WEB_RECOVERY_UID
    from tests.bench.db import bench_database

    # The stale-turn sweeps a web process starts at its first request would outlive the throw-away
    # database (and, on SQLite, make a new empty file where it was).
    request_started.disconnect(dispatch_uid=WEB_RECOVERY_UID)
    from tests.realtime_server.harness import Soketi, UvicornThread

    with bench_database() as label, Soketi() as soketi, UvicornThread(get_asgi_application()) as web:
        _run(argv, label, soketi, web)


def _run(argv: list[str], label: str, soketi: Any, web: Any) -> None:
    import os
    import platform

    from django_ai.conversations import ConversationAgent
    from django_ai.conversations.context import ResponseStream
    from django_ai.conversations.registry import register_agent

    quick = is_quick(argv)
    writes = int_option(argv, "writes", 50 if quick else 2000)
    rounds = int_option(argv, "rounds", 1 if quick else 3)
    streams = int_option(argv, "streams", 3 if quick else 50)
    seconds = int_option(argv, "seconds", 2 if quick else 30)
    save_interval = option(argv, "save-interval", "")
    extra: dict[str, Any] = {"STREAM_SAVE_INTERVAL": float(save_interval)} if save_interval else {}
    log: dict[str, dict[int, tuple[float, int]]] = {}  # message id -> sequence -> (wall ms, write ns)
    log_lock = threading.Lock()

    class PacedWriter(ConversationAgent):
        """Writes chunks at a steady pace, timing each write()."""

        count = writes
        pause = 0.002
        duration: float | None = None

        async def get_response(self, message, request=None, **kwargs):
            times: dict[int, tuple[float, int]] = {}
            with ResponseStream() as stream:
                started = time.monotonic()
                n = 0
                while True:
                    if self.duration is None and n >= self.count:
                        break
                    if self.duration is not None and time.monotonic() - started >= self.duration:
                        break
                    n += 1
                    wall = time.time() * 1000
                    t0 = time.perf_counter_ns()
                    stream.write(f"tok{n} ")
                    times[n] = (wall, time.perf_counter_ns() - t0)
                    await asyncio.sleep(self.pause)
            message_id = str(stream._state.agent_message.pk)  # type: ignore[union-attr]
            with log_lock:
                log[message_id] = times
            return stream.content

    class LoadWriter(PacedWriter):
        pause = 0.02
        duration = float(seconds)

    register_agent("bench-paced", PacedWriter)
    register_agent("bench-load", LoadWriter)

    print(
        f"database: {label}; Python {platform.python_version()}; Django {django.get_version()}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; soketi 1.6 + pusher-js 8 on 127.0.0.1"
    )
    if extra:
        print(f"settings for this run: {extra}")
    results: dict[str, dict[str, list[float]]] = {}
    for round_ in range(rounds):
        for kind in ("coalescing sender", "naive sync trigger"):
            stats = _single_stream(kind, soketi, web, log, log_lock, extra)
            bucket = results.setdefault(kind, {"cost": [], "latency": [], "requests": [], "events": []})
            for key, values in stats.items():
                bucket[key].extend(values)
        print(f"round {round_ + 1}/{rounds} done", flush=True)

    print()
    print(f"One stream: {writes} writes, one every ~2 ms, {rounds} rounds (figures pooled over the rounds).")
    print()
    print(
        "| backend | write() median µs | write() p99 µs | HTTP requests / 1,000 chunks | events / 1,000 chunks "
        "| receipt latency p50 ms | p95 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, bucket in results.items():
        print(
            f"| {kind} | {statistics.median(bucket['cost']):.1f} | {_pct(bucket['cost'], 99):.1f} | "
            f"{statistics.mean(bucket['requests']):.1f} | {statistics.mean(bucket['events']):.1f} | "
            f"{_pct(bucket['latency'], 50):.1f} | {_pct(bucket['latency'], 95):.1f} |"
        )
    ours, naive = results["coalescing sender"], results["naive sync trigger"]
    print()
    print(
        "ratios (coalescing / naive): write() median "
        f"{statistics.median(ours['cost']) / statistics.median(naive['cost']):.3f}x, "
        f"p99 {_pct(ours['cost'], 99) / _pct(naive['cost'], 99):.3f}x, HTTP requests "
        f"{statistics.mean(ours['requests']) / statistics.mean(naive['requests']):.3f}x, latency p50 "
        f"{_pct(ours['latency'], 50) / _pct(naive['latency'], 50):.2f}x, "
        f"p95 {_pct(ours['latency'], 95) / _pct(naive['latency'], 95):.2f}x"
    )
    _load(streams, seconds, soketi, web, log, log_lock, extra)


def _configure(kind: str, soketi: Any, extra: dict[str, Any]) -> Any:
    from django.test.utils import override_settings

    from django_ai.conversations.realtime import reset_backend

    options = dict(soketi.pusher_settings)
    config: dict[str, Any] = {"PUSHER": options, **extra}
    if kind == "naive sync trigger":
        config["REALTIME_BACKEND"] = "tests.bench.bench_realtime.NaivePusherBackend"
    override = override_settings(DJANGO_AI=config)
    override.enable()
    reset_backend()
    return override


def _requests(backend: Any) -> int:
    return backend.requests if isinstance(backend, NaivePusherBackend) else backend.sender.requests


def _single_stream(
    kind: str, soketi: Any, web: Any, log: dict, log_lock: threading.Lock, extra: dict[str, Any]
) -> dict[str, list[float]]:
    from django_ai.conversations.owners import new_anonymous_id
    from django_ai.conversations.realtime import get_backend, reset_backend
    from django_ai.conversations.realtime.channels import session_channel
    from django_ai.conversations.service import ConversationService
    from tests.realtime_server.harness import NodeSubscriber

    override = _configure(kind, soketi, extra)
    try:
        visitor = new_anonymous_id()
        session = ConversationService.create_session("bench-paced", anonymous_id=visitor)
        channel = session_channel(session.pk)
        with NodeSubscriber(
            soketi=soketi,
            auth_endpoint=web.url + "/api/conversations/realtime/auth/",
            channels=[channel],
            headers={"X-Conversation-Anonymous-Id": visitor},
        ) as sub:
            sub.wait_subscribed()
            backend = get_backend()
            backend.flush(timeout=5)
            before = _requests(backend)
            result = ConversationService.send_message(session_id=session.pk, message="go")
            backend.flush(timeout=10)
            requests = _requests(backend) - before
            sub.wait_for(lambda s: bool(s.events("stream_end")), timeout=30, what="stream_end")
            times = log.pop(result["message_id"])
            chunks = [e for e in sub.events("text_chunk") if e["data"]["message_id"] == result["message_id"]]
        text = _check_stream(chunks, len(times))
        assert text == result["response"], f"{kind}: the received text differs from the reply"
        latency = [
            event["received_ms"] - times[seq][0]
            for event in chunks
            for seq in range(
                event["data"].get("first_sequence", event["data"]["sequence"]), event["data"]["sequence"] + 1
            )
        ]
        return {
            "cost": [ns / 1000 for _, ns in times.values()],
            "latency": latency,
            "requests": [requests * 1000 / len(times)],
            "events": [len(chunks) * 1000 / len(times)],
        }
    finally:
        override.disable()
        reset_backend()


def _check_stream(chunks: list[dict], writes: int) -> str:
    """The text of one message's chunks; raises on a sequence or offset gap."""
    from django_ai.conversations.realtime.coalescer import utf16_len

    expected_sequence, expected_offset, parts = 1, 0, []
    for event in chunks:
        data = event["data"]
        first = data.get("first_sequence", data["sequence"])
        if first != expected_sequence:
            raise AssertionError(f"sequence gap: expected {expected_sequence}, got {first}")
        if data.get("offset", expected_offset) != expected_offset:
            raise AssertionError(f"offset gap: expected {expected_offset}, got {data['offset']}")
        expected_sequence = data["sequence"] + 1
        expected_offset += utf16_len(data["text"])
        parts.append(data["text"])
    if expected_sequence != writes + 1:
        raise AssertionError(f"stream ended at sequence {expected_sequence - 1}, {writes} writes were made")
    return "".join(parts)


def _load(
    streams: int, seconds: int, soketi: Any, web: Any, log: dict, log_lock: threading.Lock, extra: dict[str, Any]
) -> None:
    from django_ai.conversations.models import ConversationMessage
    from django_ai.conversations.owners import new_anonymous_id
    from django_ai.conversations.realtime import get_backend, reset_backend
    from django_ai.conversations.realtime.channels import session_channel
    from django_ai.conversations.service import ConversationService
    from tests.realtime_server.harness import NodeSubscriber

    visitor = new_anonymous_id()  # one visitor owning all the conversations: one subscriber process
    override = _configure("coalescing sender", soketi, extra)
    try:
        sessions = [ConversationService.create_session("bench-load", anonymous_id=visitor) for _ in range(streams)]
        channels = [session_channel(s.pk) for s in sessions]
        with NodeSubscriber(
            soketi=soketi,
            auth_endpoint=web.url + "/api/conversations/realtime/auth/",
            channels=channels,
            headers={"X-Conversation-Anonymous-Id": visitor},
        ) as sub:
            sub.wait_subscribed(streams, timeout=60)
            assert len(sub.messages("subscribed")) == streams, sub.messages("subscription_error")[:3]
            backend = get_backend()
            before = backend.sender.requests
            results: list[dict] = []
            lock = threading.Lock()

            def turn(session: Any) -> None:
                from django.db import connection

                try:
                    outcome = ConversationService.send_message(session_id=session.pk, message="go")
                    with lock:
                        results.append(outcome)
                finally:
                    connection.close()

            started = time.monotonic()
            threads = [threading.Thread(target=turn, args=(s,)) for s in sessions]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(seconds + 120)
            elapsed = time.monotonic() - started
            backend.flush(timeout=30)
            requests = backend.sender.requests - before
            sub.wait_for(lambda s: len(s.events("stream_end")) >= streams, timeout=60, what="every stream_end")
            received = sub.events("text_chunk")
        by_message: dict[str, list[dict]] = {}
        for event in received:
            by_message.setdefault(event["data"]["message_id"], []).append(event)
        gaps = 0
        total_writes = 0
        latency: list[float] = []
        costs: list[float] = []
        for outcome in results:
            times = log.pop(outcome["message_id"])
            total_writes += len(times)
            costs.extend(ns / 1000 for _, ns in times.values())
            chunks = by_message.get(outcome["message_id"], [])
            try:
                text = _check_stream(chunks, len(times))
            except AssertionError as exc:
                gaps += 1
                print(f"GAP in {outcome['message_id']}: {exc}")
                continue
            row = ConversationMessage.objects.get(pk=outcome["message_id"])
            if text != row.content:
                gaps += 1
                print(f"TEXT MISMATCH in {outcome['message_id']}")
            for event in chunks:
                data = event["data"]
                for seq in range(data["first_sequence"], data["sequence"] + 1):
                    latency.append(event["received_ms"] - times[seq][0])
        failed = [r for r in results if r["status"] != "success"]
    finally:
        override.disable()
        reset_backend()
    print()
    print(f"Load: {streams} concurrent streams, a write every 20 ms each, for {seconds} s (coalescing sender only).")
    print()
    print(
        "| streams | turns ok | writes | events received | HTTP requests | requests / 1,000 chunks "
        "| streams with a gap | write() median µs | p99 µs | latency p50 ms | p95 ms | p99 ms | wall s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {streams} | {len(results) - len(failed)} | {total_writes} | {len(received)} | {requests} | "
        f"{requests * 1000 / max(total_writes, 1):.1f} | {gaps} | {statistics.median(costs):.1f} | "
        f"{_pct(costs, 99):.1f} | "
        f"{_pct(latency, 50):.1f} | {_pct(latency, 95):.1f} | {_pct(latency, 99):.1f} | {elapsed:.1f} |"
    )
    if gaps or failed or len(results) != streams:
        raise SystemExit(
            f"load run failed: {gaps} stream(s) with gaps, {len(failed)} failed turn(s), "
            f"{len(results)}/{streams} finished"
        )
