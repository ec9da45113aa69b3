"""Many live clients on one web process (issue 16, part 3), in one run:

1. **Local backend (Server-Sent Events)**: the demo's ASGI application under uvicorn in a process
   of its own (``tests/bench/clients_app.py``); this process is the load generator, an asyncio HTTP/1.1
   client holding ``--clients`` streams (default 2,000). Each client is an anonymous visitor with a
   real conversation, reading its conversation's channel and its owner channel on one stream
   (``realtime/events/?channel=..&channel=..``), so every stream passes the real authorisation and
   counts under the real caps: the defaults (10 per visitor, 100 anonymous streams per client
   address), the clients being spread over loopback addresses 100 at a time. ``--streams`` of
   them (default 100) then get a real turn at once: a streaming agent writing ``--chunks`` chunks
   (default 100), one every 20 ms, each carrying its wall-clock time, so a client measures
   write-to-receipt latency (the coalescing window included) and event-to-receipt latency (from
   the event's ``timestamp``, i.e. from when the sender built it: the broker and the stream).
   Baselines in the same run: one client with one stream, and ``--streams`` clients all streaming
   with no idle client beside them, alternating with the full count over ``--rounds`` rounds
   (default 2); the process's RSS with no client (after the first baseline) against ``--clients``
   idle ones.
2. **soketi**: the same conversations and turns with the Pusher backend, read by ``--clients``
   pusher-js clients (``tests/realtime_server/many_clients.mjs``, one WebSocket each, one Node
   process), authorised through ``realtime/auth/`` of the same uvicorn process; memory is soketi's
   RSS. Skipped when Node, soketi or pusher-js is missing.

``python -m tests.bench clients`` (``--clients=N``, ``--streams=N``, ``--chunks=N``,
``--heartbeat=S``, ``--rounds=N``, ``--sse=0`` or ``--soketi=0`` to leave a part out,
``--source=publish`` for streams published by one thread of the web process through the backend's
sending path instead of real turns: the delivery alone, without the turns' work).
``--quick``: 20 clients, 5 streams, 20 chunks, one round.
SQLite file database unless ``DATABASE_URL`` is set. ``BENCH_CLIENTS_GC=off`` in the environment
runs the web process without the cyclic garbage collector, to see what it costs.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import django

from tests.bench.options import int_option, is_quick, option
from tests.servers import Server

AGENT = "bench-clients"
EVENTS = "/api/conversations/realtime/events/"
AUTH = "/api/conversations/realtime/auth/"
#: Clients per loopback source address: the default MAX_ANONYMOUS_STREAMS_PER_ADDRESS.
PER_ADDRESS = 100
ROOT = Path(__file__).resolve().parents[2]


def register_streamer() -> None:
    """Register the benchmark's agent (here and in the web process): it writes ``<chunks>`` chunks
    ``"@<epoch ms> "``, one every ``<pause>`` seconds (its message is ``"<chunks> <pause>"``)."""
    from django_ai.conversations import ConversationAgent
    from django_ai.conversations.context import ResponseStream
    from django_ai.conversations.registry import register_agent

    class Streamer(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            chunks, pause = message.split()
            with ResponseStream() as stream:
                for _ in range(int(chunks)):
                    stream.write(f"@{time.time() * 1000:.2f} ")
                    await asyncio.sleep(float(pause))
            return stream.content

    register_agent(AGENT, Streamer)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _iso_ms(value: str) -> float:
    return datetime.fromisoformat(value).timestamp() * 1000


@dataclass
class Receipts:
    """What the clients of one phase received."""

    write_latency: list[float] = field(default_factory=list)
    event_latency: list[float] = field(default_factory=list)
    stamps: dict[int, int] = field(default_factory=dict)  # client -> chunks received
    ended: set[int] = field(default_factory=set)

    def chunk(self, client: int, stamps: list[float], event_ms: float, received_ms: float) -> None:
        self.write_latency.extend(received_ms - s for s in stamps)
        self.event_latency.append(received_ms - event_ms)
        self.stamps[client] = self.stamps.get(client, 0) + len(stamps)


@dataclass
class Client:
    index: int
    session_id: str
    visitor: str
    channels: list[str]


class SSEClient:
    """One ``text/event-stream`` reader over a raw HTTP/1.1 connection (chunked transfer)."""

    def __init__(self, client: Client, receipts: Receipts):
        self.client = client
        self.receipts = receipts
        self.ready = asyncio.Event()
        self.ended = asyncio.Event()
        self.closed = asyncio.Event()
        self.heartbeats: list[float] = []
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, host: str, port: int) -> None:
        a = self.client.index // PER_ADDRESS
        source = f"127.1.{a // 250}.{a % 250 + 1}"
        reader, self.writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        query = "&".join(f"channel={name}" for name in self.client.channels)
        self.writer.write(
            f"GET {EVENTS}?{query} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
            f"X-Conversation-Anonymous-Id: {self.client.visitor}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            body = await reader.read(2000)
            raise RuntimeError(f"client {self.client.index}: HTTP {status} {body[:300]!r}")
        if b"transfer-encoding: chunked" not in head.lower():
            raise RuntimeError(f"client {self.client.index}: expected a chunked response, got {head!r}")
        self.task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        raw, text = b"", ""
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                now = time.time() * 1000
                raw += data
                while True:
                    end = raw.find(b"\r\n")
                    if end < 0:
                        break
                    size = int(raw[:end].split(b";")[0], 16)
                    if len(raw) < end + 4 + size:
                        break
                    text += decoder.decode(raw[end + 2 : end + 2 + size])
                    raw = raw[end + 4 + size :]
                    if size == 0:
                        return
                while "\n\n" in text:
                    frame, text = text.split("\n\n", 1)
                    self._frame(frame, now)
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            self.closed.set()

    def _frame(self, frame: str, now: float) -> None:
        event = data = None
        for line in frame.split("\n"):
            if line.startswith("retry:"):
                self.ready.set()
            elif line == ": ping":
                self.heartbeats.append(now)
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        if event == "text_chunk" and data is not None:
            payload = json.loads(data)
            stamps = [float(token[1:]) for token in payload["text"].split() if token.startswith("@")]
            self.receipts.chunk(self.client.index, stamps, _iso_ms(payload["timestamp"]), now)
        elif event == "stream_end":
            self.receipts.ended.add(self.client.index)
            self.ended.set()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def main(argv: list[str]) -> None:
    django.setup()
    from django.core.signals import request_started

    from django_ai.conversations.turns.sweeps import WEB_RECOVERY_UID
    from tests.bench.db import bench_database

    request_started.disconnect(dispatch_uid=WEB_RECOVERY_UID)
    quick = is_quick(argv)
    sizes = {
        "clients": int_option(argv, "clients", 20 if quick else 2000),
        "streams": int_option(argv, "streams", 5 if quick else 100),
        "chunks": int_option(argv, "chunks", 20 if quick else 100),
        "heartbeat": float(option(argv, "heartbeat", "0.5" if quick else "15")),
        # Seconds for the process to settle before its memory is read.
        "settle": 0.2 if quick else 2.0,
        "rounds": int_option(argv, "rounds", 1 if quick else 2),
        "source": option(argv, "source", "turns"),
    }
    sizes["streams"] = min(sizes["streams"], sizes["clients"])
    with bench_database() as label:
        from django.db import connection

        print(
            f"database: {label}; Python {platform.python_version()}; Django {django.get_version()}; "
            f"{os.cpu_count()} CPUs; load average at start {_loadavg()}",
            flush=True,
        )
        register_streamer()
        clients = _conversations(sizes["clients"])
        connection.close()
        db_name = str(connection.settings_dict["NAME"])
        if option(argv, "sse", "1") != "0":
            _sse_part(db_name, clients, sizes)
        if option(argv, "soketi", "1") != "0":
            _soketi_part(db_name, clients, sizes)
        print(f"\nload average at the end: {_loadavg()}")


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _conversations(count: int) -> list[Client]:
    from django_ai.conversations.owners import new_anonymous_id
    from django_ai.conversations.realtime.channels import owner_channel, session_channel
    from django_ai.conversations.service import ConversationService

    started = time.monotonic()
    clients = []
    for index in range(count):
        visitor = new_anonymous_id()
        session = ConversationService.create_session(AGENT, anonymous_id=visitor)
        channels = [session_channel(session.pk), owner_channel(anonymous_id=visitor)]
        clients.append(Client(index, str(session.pk), visitor, [c for c in channels if c]))
    print(f"{count} conversations created in {time.monotonic() - started:.1f} s", flush=True)
    return clients


@contextmanager
def web_process(db_name: str, realtime: dict[str, Any]) -> Iterator[WebProcess]:
    """The uvicorn process of ``clients_app``, with ``realtime`` as ``DJANGO_AI``."""
    from tests.realtime_server.harness import free_port

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "BENCH_CLIENTS_DB_NAME": db_name,
        "DJANGO_AI_SETTINGS_JSON": json.dumps(realtime),
        "BENCH_CLIENTS_GC": os.environ.get("BENCH_CLIENTS_GC", "on"),
        "PYTHONUNBUFFERED": "1",
    }
    log = tempfile.NamedTemporaryFile(prefix="bench-clients-", suffix=".log", delete=False)  # noqa: SIM115
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.bench.clients_app:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--backlog",
        "4096",
        "--timeout-graceful-shutdown",
        "2",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    web = WebProcess(process, port, Path(log.name))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                web.stats()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the web process did not start: {web.log_tail()}") from None
                time.sleep(0.2)
        yield web
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
        Path(log.name).unlink(missing_ok=True)


class WebProcess(Server):
    """The benchmark's uvicorn process (``tests/bench/clients_app.py``): a started server, with
    the app's own ``/bench/`` endpoints."""

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base + "/bench/stats", timeout=30) as response:
            return json.loads(response.read())

    source = "turns"

    def start_turns(self, clients: list[Client], chunks: int) -> None:
        body = json.dumps({"sessions": [c.session_id for c in clients], "message": f"{chunks} 0.02"}).encode()
        request = urllib.request.Request(f"{self.base}/bench/{self.source}", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def wait_subscriptions(self, count: int, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["subscriptions"] == count or time.monotonic() > deadline:
                return stats
            time.sleep(0.2)


# -- Part 1: Server-Sent Events ---------------------------------------------------------------


def _sse_part(db_name: str, clients: list[Client], sizes: dict[str, Any]) -> None:
    realtime = {
        "REALTIME": {
            "BACKEND": "django_ai.conversations.realtime.local.LocalBackend",
            "OPTIONS": {"HEARTBEAT_INTERVAL": sizes["heartbeat"]},
        }
    }
    with web_process(db_name, realtime) as web:
        web.source = sizes["source"]
        asyncio.run(_sse_run(web, clients, sizes))


async def _connect(web: WebProcess, clients: list[Client], receipts: Receipts) -> tuple[list[SSEClient], float]:
    gate = asyncio.Semaphore(32)
    readers = [SSEClient(c, receipts) for c in clients]
    started = time.monotonic()

    async def one(reader: SSEClient) -> None:
        async with gate:
            await reader.open("127.0.0.1", web.port)
            await asyncio.wait_for(reader.ready.wait(), 60)

    await asyncio.gather(*(one(r) for r in readers))
    return readers, time.monotonic() - started


async def _stream(web: WebProcess, readers: list[SSEClient], chunks: int) -> tuple[float, float, float]:
    """Stream a turn to each reader; meanwhile, the CPU used by the web process and by this one
    (1.0: one core), and the share of the time the web process spent collecting garbage."""
    before, mine, started = await asyncio.to_thread(web.stats), sum(os.times()[:2]), time.monotonic()
    await asyncio.to_thread(web.start_turns, [r.client for r in readers], chunks)
    try:
        await asyncio.wait_for(asyncio.gather(*(r.ended.wait() for r in readers)), 120 + chunks * 0.05)
    except TimeoutError:
        pass  # reported: the streams not complete
    after, elapsed = await asyncio.to_thread(web.stats), time.monotonic() - started
    return (
        (after["cpu_seconds"] - before["cpu_seconds"]) / elapsed,
        (sum(os.times()[:2]) - mine) / elapsed,
        (after["gc_seconds"] - before["gc_seconds"]) / elapsed,
    )


async def _close(web: WebProcess, readers: list[SSEClient]) -> dict[str, Any]:
    for reader in readers:
        reader.close()
    return await asyncio.to_thread(web.wait_subscriptions, 0)


def _phase_row(name: str, receipts: Receipts, clients: list[Client], chunks: int, cpu: tuple[float, ...] = ()) -> str:
    complete = sum(1 for c in clients if receipts.stamps.get(c.index) == chunks and c.index in receipts.ended)
    w, e = receipts.write_latency, receipts.event_latency
    return (
        f"| {name} | {complete}/{len(clients)} | {len(w):,} | {_pct(w, 50):.1f} | {_pct(w, 95):.1f} | "
        f"{_pct(w, 99):.1f} | {_pct(e, 50):.1f} | {_pct(e, 95):.1f} | {_pct(e, 99):.1f} | "
        + (" | ".join(f"{c:.2f}" for c in cpu) if cpu else " |  | ")
        + " |"
    )


LATENCY_HEADER = (
    "| clients open, streaming | streams complete | chunks | write→receipt p50 ms | p95 | p99 "
    "| event→receipt p50 ms | p95 | p99 | web process CPU (cores) | load generator CPU | web process GC share |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


async def _sse_run(web: WebProcess, clients: list[Client], sizes: dict[str, Any]) -> None:
    n, streams, chunks = len(clients), sizes["streams"], sizes["chunks"]
    rows = []
    # Baseline 1: one client, one stream.
    one = Receipts()
    readers, _ = await _connect(web, clients[:1], one)
    await _stream(web, readers, chunks)
    await _close(web, readers)
    rows.append(_phase_row("1, 1 (baseline)", one, clients[:1], chunks))
    # No client: the memory baseline (after the same code paths ran).
    empty = await asyncio.to_thread(web.wait_subscriptions, 0)
    # The streaming clients stay connected; the idle ones come and go, so that the rounds with and
    # without them alternate under the same load from other jobs.
    step = max(1, n // streams)
    streaming = clients[::step][:streams]
    chosen = {c.index for c in streaming}
    others = [c for c in clients if c.index not in chosen]
    few, many = Receipts(), Receipts()
    active, _ = await _connect(web, streaming, few)
    connect_seconds, lost = [], 0
    cpu: dict[str, list[tuple[float, float, float]]] = {"few": [], "many": []}
    for round_ in range(sizes["rounds"]):
        for reader in active:
            reader.receipts, reader.ended = few, asyncio.Event()
        cpu["few"].append(await _stream(web, active, chunks))
        if round_ == 0:
            # The memory baseline: the streaming clients alone, after their first turns ran.
            await asyncio.sleep(sizes["settle"])
            warm = await asyncio.to_thread(web.stats)
        idle_readers, seconds = await _connect(web, others, many)
        connect_seconds.append(seconds)
        await asyncio.sleep(sizes["settle"])
        if round_ == 0:
            idle = await asyncio.to_thread(web.stats)
            idle_started = time.time() * 1000
            await asyncio.sleep(sizes["heartbeat"] * 1.5)
            idle_ended = time.time() * 1000
            readers = active + idle_readers
        for reader in active:
            reader.receipts, reader.ended = many, asyncio.Event()
        cpu["many"].append(await _stream(web, active, chunks))
        if round_ == 0:
            loaded = await asyncio.to_thread(web.stats)
        lost += sum(1 for r in active + idle_readers if r.closed.is_set())
        for reader in idle_readers:
            reader.close()
        await asyncio.to_thread(web.wait_subscriptions, len(active))
    few_cpu, many_cpu = (tuple(sum(column) / len(column) for column in zip(*cpu[k], strict=True)) for k in cpu)
    rows.append(_phase_row(f"{streams}, {streams} (baseline)", few, streaming, chunks * sizes["rounds"], few_cpu))
    rows.append(_phase_row(f"{n:,}, {streams}", many, streaming, chunks * sizes["rounds"], many_cpu))
    after = await _close(web, active)

    beats = sorted(t for r in readers for t in r.heartbeats if idle_started <= t < idle_ended)
    window = idle_ended - idle_started
    buckets: dict[int, int] = {}
    for t in beats:
        buckets[int((t - idle_started) // 100)] = buckets.get(int((t - idle_started) // 100), 0) + 1
    busiest = max(buckets.values(), default=0)
    mean = len(beats) / (window / 100) if window else 0

    print(
        f"\n### Local backend (SSE) under uvicorn ({empty['server']}), one process, "
        f"heartbeat {sizes['heartbeat']} s, streams from {sizes['source']}\n"
    )
    print(
        f"{sizes['rounds']} rounds, alternating {streams} clients alone and {n:,} (figures pooled); the "
        f"{n - len(streaming):,} idle clients connected in {', '.join(f'{s:.1f}' for s in connect_seconds)} s; "
        f"{lost} stream(s) ended by the server while open."
    )
    print(f"load average after the run: {_loadavg()}\n")
    print(LATENCY_HEADER)
    print("\n".join(rows))
    print()
    print("| process | RSS MB | file descriptors | asyncio tasks | threads | subscriptions |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, s in (
        ("no client (after one stream)", empty),
        (f"{len(streaming)} clients, after their streams (baseline)", warm),
        (f"{n:,} idle clients", idle),
        (f"{n:,} clients, after the streams", loaded),
        ("all closed", after),
    ):
        print(
            f"| {name} | {s['rss_kb'] / 1024:.1f} | {s['fds']} | {s['tasks']} | {s['threads']} | {s['subscriptions']} |"
        )
    per_client = (idle["rss_kb"] - warm["rss_kb"]) / len(others)
    print(
        f"\nmemory per idle client: {per_client:.1f} KB (RSS delta / clients, {len(others):,} idle clients "
        f"beside the {len(streaming)} of the baseline)"
    )
    print(
        f"heartbeats over {window / 1000:.1f} s idle: {len(beats):,}; busiest 100 ms: {busiest} "
        f"({busiest / mean if mean else 0:.1f}x the mean {mean:.1f})"
    )


# -- Part 2: soketi and pusher-js -----------------------------------------------------------------


class NodeClients:
    """``many_clients.mjs``: pusher-js clients in one Node process; reads what it prints."""

    def __init__(self, *, soketi: Any, web: WebProcess, clients: list[Client], receipts: Receipts):
        from tests.realtime_server.harness import HERE

        config = {
            "key": soketi.key,
            "host": "127.0.0.1",
            "port": soketi.port,
            "authEndpoint": web.base + AUTH,
            "concurrency": 20,
            "clients": [{"visitor": c.visitor, "channels": c.channels} for c in clients],
        }
        self.config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        json.dump(config, self.config)
        self.config.close()
        self.receipts = receipts
        self.ready: set[int] = set()
        self.errors: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.process = subprocess.Popen(
            ["node", str(HERE / "many_clients.mjs"), self.config.name],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            item = json.loads(raw)
            with self._lock:
                kind = item["type"]
                if kind == "ready":
                    self.ready.add(item["client"])
                elif kind == "error":
                    self.errors.append(item)
                elif kind == "chunk":
                    self.receipts.chunk(item["client"], item["write_ms"], item["event_ms"], item["received_ms"])
                elif kind == "end":
                    self.receipts.ended.add(item["client"])

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        stderr = ""
        if self.process.poll() is not None and self.process.stderr is not None:
            stderr = self.process.stderr.read().decode(errors="replace")[-2000:]
        raise RuntimeError(f"pusher-js clients: timed out waiting for {what}: {self.errors[:3]} {stderr}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        Path(self.config.name).unlink(missing_ok=True)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _soketi_part(db_name: str, clients: list[Client], sizes: dict[str, Any]) -> None:
    from tests.realtime_server.harness import Soketi, node_available

    reason = node_available()
    if reason:
        print(f"\nsoketi part skipped: {reason}")
        return
    with Soketi() as soketi:
        realtime = {
            "REALTIME": {
                "BACKEND": "django_ai.conversations.realtime.pusher.PusherBackend",
                "OPTIONS": soketi.pusher_settings,
            }
        }
        with web_process(db_name, realtime) as web:
            web.source = sizes["source"]
            _soketi_run(soketi, web, clients, sizes)


def _soketi_phase(
    soketi: Any, web: WebProcess, clients: list[Client], streaming: list[Client], chunks: int, timeout: float
) -> tuple[Receipts, dict[str, Any]]:
    receipts = Receipts()
    node = NodeClients(soketi=soketi, web=web, clients=clients, receipts=receipts)
    try:
        started = time.monotonic()
        node.wait(lambda s: len(s.ready) + len(s.errors) >= len(clients), timeout, f"{len(clients)} clients")
        facts: dict[str, Any] = {"connect_seconds": time.monotonic() - started, "errors": len(node.errors)}
        time.sleep(2)
        facts["soketi_rss_kb"] = _rss_kb(soketi.process.pid)
        facts["node_rss_kb"] = _rss_kb(node.process.pid)
        web.start_turns(streaming, chunks)
        wanted = {c.index for c in streaming}
        try:
            node.wait(lambda s: wanted <= receipts.ended, 120 + chunks * 0.05, "every stream_end")
        except RuntimeError as exc:  # reported: the streams not complete
            print(f"{exc}; web process: {web.stats()}; log: {web.log_tail()}")
            for client in streaming:
                if client.index not in receipts.ended:
                    print(f"client {client.index}: {receipts.stamps.get(client.index, 0)} chunks, no stream_end")
        time.sleep(0.5)
        facts["sender"] = web.stats()["sender"]
    finally:
        node.stop()
    return receipts, facts


def _soketi_run(soketi: Any, web: WebProcess, clients: list[Client], sizes: dict[str, Any]) -> None:
    n, streams, chunks = len(clients), sizes["streams"], sizes["chunks"]
    empty = _rss_kb(soketi.process.pid)
    one, _ = _soketi_phase(soketi, web, clients[:1], clients[:1], chunks, 60)
    step = max(1, n // streams)
    streaming = clients[::step][:streams]
    empty_after = _rss_kb(soketi.process.pid)
    many, facts = _soketi_phase(soketi, web, clients, streaming, chunks, 60 + n * 0.2)
    print("\n### soketi 1.6 + pusher-js 8 (Pusher backend, the same uvicorn process authorising)\n")
    print(
        f"{n:,} pusher-js clients (one Node process) subscribed in {facts['connect_seconds']:.1f} s, "
        f"{facts['errors']} subscription error(s); Node client process RSS {facts['node_rss_kb'] / 1024:.0f} MB."
    )
    print(f"load average after the run: {_loadavg()}\n")
    print(LATENCY_HEADER)
    print(_phase_row("1, 1 (baseline)", one, clients[:1], chunks))
    print(_phase_row(f"{n:,}, {streams}", many, streaming, chunks))
    sender = facts["sender"]
    print(
        f"\nthe web process's Pusher sender over the whole part: {sender['requests']:,} requests, "
        f"{sender['events_sent']:,} events sent, {sender['failures']} failed requests, "
        f"{sender['dropped']:,} items dropped (MAX_PENDING reached)"
    )
    print()
    print("| soketi process | RSS MB |\n|---|---:|")
    print(f"| started | {empty / 1024:.1f} |\n| after the 1-client baseline | {empty_after / 1024:.1f} |")
    print(f"| {n:,} idle clients | {facts['soketi_rss_kb'] / 1024:.1f} |")
    print(f"\nsoketi memory per idle client: {(facts['soketi_rss_kb'] - empty_after) / n:.1f} KB (RSS delta / clients)")
