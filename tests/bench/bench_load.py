"""A multi-process deployment under load, on loopback: 2 uvicorn web processes, 2 task workers
(``ai_db_worker`` as docs/deployment.md runs them; ``--worker=db_worker`` for django-tasks-db's
own), soketi and PostgreSQL, with simulated visitors in Node (``load_client.mjs``).

``--conversations`` visitors (default 200) each start a conversation through ``start/`` and send
``--messages`` messages (default 5) through the bridge (``POST models/message/``), one after the
other, each once the previous reply has ended; every reply is received over pusher-js (one
connection per visitor, authorised by ``realtime/auth/``). Requests alternate between the two web
processes as a round-robin load balancer sends them; half the visitors are stateless (the
anonymous id header), half keep cookies (Django session, CSRF token). The agent streams
``--chunks`` writes (default 10) ``--pause-ms`` apart (default 10 ms), each write carrying its wall
clock time, so pusher-js can time every write's receipt.

When ``--kill-at`` of the turns (default 0.4) are answered, a worker that is streaming a reply is
SIGKILLed, and started again a second later (systemd's ``Restart=always``). The run uses a short
lease (``TURN_HEARTBEAT_INTERVAL`` 1 s, ``STALE_TURN_TIMEOUT`` ``--stale`` = 5 s, 3 s with
``--quick``, sweep every second, ``STALE_TURN_ACTION = "retry"``): the sweep fails the
half-streamed reply and answers the message again. Beside it (full size, unless ``--one``), the
same load runs on a fresh database with a lease longer than any wait in the queue and no kill,
and the two are printed side by side: a short lease also makes recovery enqueue again every
message that waited longer than it (docs/benchmarks.md, "Multi-process load").

Measured: turns per second (first message sent to last reply ended), tasks per turn, queue
latency (message saved -> its turn started, from the rows), a write's receipt latency in
pusher-js, a reply's latency as the visitor sees it (POST -> first chunk, POST -> end of stream),
HTTP latencies, the PostgreSQL connections open at once.

Checked, and the command fails (AssertionError, exit 1) when anything is off: every conversation
has exactly its messages, every message completed with exactly one completed reply whose text
holds every write in order, every visitor received each of its messages' ``completed`` status
exactly once, every completed reply's stream (sequences and offsets without a gap,
``stream_end`` once) and its text equal to the saved row, no event twice, the interrupted reply's
received chunks a prefix of its text without a gap, and at least one turn interrupted by the kill
and answered again.

``DATABASE_URL=postgres://postgres@127.0.0.1:5432/test DJANGO_TEST_DB_NAME=bench_load
./dev bench load`` (PostgreSQL only: several processes write at once). ``--quick``: 10
conversations x 2 messages, the kill included. Options: ``--no-kill``; ``--think-ms=N`` (visitors
read before their next message); ``--worker=db_worker`` (``--interval`` 0.1; ``ai_db_worker``'s
is 1); ``--web-pool=N`` (the web processes' connection pool, 16; 0: none) and
``--web-conn-max-age=N`` (without a pool); ``--logs=DIR`` keeps the processes' logs and the
visitors' JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import django

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream
from tests.bench.options import Skipped, int_option, is_quick, option

AGENT = "bench/load-stream"
LONG_LEASE = 300.0  # STALE_TURN_TIMEOUT of the run beside: longer than any wait in the queue
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WRITE = re.compile(r"w(\d+)@([\d.]+) ")


class LoadAgent(ConversationAgent):
    """Streams ``BENCH_LOAD_CHUNKS`` writes ``BENCH_LOAD_PAUSE_MS`` apart, as a model streams tokens;
    each write is ``w<n>@<wall clock ms> ``, so the receiver can time it and check the text."""

    async def get_response(self, message, request=None, **kwargs):
        chunks = int(os.environ.get("BENCH_LOAD_CHUNKS", "10"))
        pause = float(os.environ.get("BENCH_LOAD_PAUSE_MS", "10")) / 1000
        with ResponseStream() as stream:
            for n in range(1, chunks + 1):
                stream.write(f"w{n}@{time.time() * 1000:.3f} ")
                await asyncio.sleep(pause)
        return stream.content


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _row(values: list[float]) -> str:
    return f"{_pct(values, 50):.0f} | {_pct(values, 95):.0f} | {_pct(values, 99):.0f} | {max(values):.0f}"


def main(argv: list[str]) -> None:
    django.setup()
    import importlib.util

    from django.db import connection

    from tests.realtime_server.harness import node_available

    reason = node_available()
    if reason:
        raise Skipped(f"soketi and pusher-js cannot run: {reason}")
    if importlib.util.find_spec("django_tasks_db") is None:
        raise Skipped("django-tasks-db is not installed: pip install 'django-ai-first[worker]'")
    if connection.vendor != "postgresql":
        raise Skipped("needs PostgreSQL (DATABASE_URL): several processes write at once")
    if int_option(argv, "web-pool", 16) and importlib.util.find_spec("psycopg_pool") is None:
        raise Skipped("psycopg's connection pool is not installed: pip install 'django-ai-first[postgres]'")
    from tests.bench.db import bench_database
    from tests.realtime_server.harness import Soketi

    logs = option(argv, "logs", "")
    stale = float(option(argv, "stale", "3" if is_quick(argv) else "5"))
    kill_at = None if "--no-kill" in argv else float(option(argv, "kill-at", "0.4"))
    runs = [(f"lease {stale:g} s" + (", a worker killed" if kill_at is not None else ""), stale, kill_at)]
    if not is_quick(argv) and "--one" not in argv:
        runs.append((f"lease {LONG_LEASE:g} s (longer than the backlog), no kill", LONG_LEASE, None))
    summaries: list[dict[str, Any]] = []
    failed: list[str] = []
    for index, (name, run_stale, run_kill_at) in enumerate(runs):
        print(f"\n### {name}\n", flush=True)
        with (
            bench_database() as label,
            Soketi() as soketi,
            tempfile.TemporaryDirectory(prefix="bench-load-") as tmp,
        ):
            directory = Path(logs or tmp) / str(index + 1)
            directory.mkdir(parents=True, exist_ok=True)
            summary, problems = _run(argv, label, soketi, directory, stale=run_stale, kill_at=run_kill_at)
        summaries.append({"name": name, **summary})
        if problems:
            failed.append(f"{name}: {len(problems)} problem(s)")
    if len(summaries) > 1:
        print("\n### side by side\n")
        print(
            "| run | turns/s | tasks per turn | queue p50 ms | p95 | receipt p50 ms | p95 | p99 "
            "| POST -> stream_end p50 ms | p95 | load average |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in summaries:
            print(
                f"| {r['name']} | {r['turns_per_s']:.1f} | {r['tasks_per_turn']:.2f} | {r['queue'][0]:.0f} "
                f"| {r['queue'][1]:.0f} | {r['receipt'][0]:.0f} | {r['receipt'][1]:.0f} | {r['receipt'][2]:.0f} "
                f"| {r['to_end'][0]:.0f} | {r['to_end'][1]:.0f} | {r['load']} |"
            )
    if failed:
        raise AssertionError("lost, duplicated or incomplete turns (PROBLEM lines above): " + "; ".join(failed))


class Deployment:
    """The web and worker processes, all on this machine's loopback, sharing one settings JSON."""

    def __init__(
        self,
        *,
        soketi: Any,
        directory: Path,
        interval: float,
        chunks: int,
        pause_ms: float,
        web_conn_max_age: int,
        web_pool: int,
        stale: float,
        command: str,
    ):
        from django.db import connection

        database = {k: v for k, v in connection.settings_dict.items() if k != "TEST"}
        # docs/deployment.md's PostgreSQL settings for the workers: connections kept between tasks.
        database.update(CONN_MAX_AGE=60, CONN_HEALTH_CHECKS=True)
        # The web processes: under ASGI each request runs its sync code in a thread of its own,
        # with a connection of its own. Kept connections pile up, one per request until they age
        # out (--web-conn-max-age=60 --web-pool=0: PostgreSQL's 100 connections run out within
        # seconds), and without them every request in flight still holds one: 200 visitors at
        # once are more than PostgreSQL's 100 (--web-pool=0). Django's connection pool
        # (psycopg_pool) bounds them; a request waits for a free connection.
        self.web_database = {**database, "CONN_MAX_AGE": web_conn_max_age}
        if web_pool:
            options = {**database.get("OPTIONS", {}), "pool": {"min_size": 2, "max_size": web_pool, "timeout": 60}}
            self.web_database.update(CONN_MAX_AGE=0, OPTIONS=options)
        self.django_ai = {
            "PUSHER": soketi.pusher_settings,
            "AGENTS": {AGENT: "tests.bench.bench_load.LoadAgent"},
            # A short lease, so that the killed worker's turn is recovered within seconds.
            "TURN_HEARTBEAT_INTERVAL": 1.0,
            "STALE_TURN_TIMEOUT": stale,
            "TURN_RECOVERY_INTERVAL": 1.0,
            "STALE_TURN_ACTION": "retry",
            # Every simulated visitor comes from 127.0.0.1: the per-address bounds (all anonymous
            # writes; a first start/, which has no visitor id yet) would count them all as one
            # machine. The per-visitor rate of messages stays.
            "THROTTLE_RATES": {"anonymous_address": None, "session_start": None},
        }
        self.settings = {
            "DATABASES": {"default": database},
            "TASKS": {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
            "DJANGO_AI": self.django_ai,
        }
        self.directory = directory
        self.interval = interval
        self.command = command
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.bench.load_settings",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "PYTHONUNBUFFERED": "1",
            "BENCH_LOAD_CHUNKS": str(chunks),
            "BENCH_LOAD_PAUSE_MS": str(pause_ms),
        }
        self.env.pop("DATABASE_URL", None)
        self.webs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.workers: list[Any] = []
        self.worker_ids: list[str] = []

    def _env(self, *, worker: bool) -> dict[str, str]:
        values = dict(self.settings)
        if not worker:
            values["DATABASES"] = {"default": self.web_database}
        if worker:  # docs/deployment.md, Crash recovery: the workers' settings say they are workers
            values["DJANGO_AI"] = {**self.django_ai, "TURN_RECOVERY_LOOP": True}
        return {**self.env, "BENCH_LOAD_SETTINGS": json.dumps(values, default=str)}

    def start_web(self) -> str:
        from tests.realtime_server.harness import free_port

        port = free_port()
        log = open(self.directory / f"web-{port}.log", "wb")  # noqa: SIM115 - the child holds it
        args = [sys.executable, "-m", "uvicorn", "backend.asgi:application", "--host", "127.0.0.1"]
        args += ["--port", str(port), "--log-level", "warning", "--no-access-log", "--lifespan", "off"]
        try:
            process = subprocess.Popen(args, env=self._env(worker=False), cwd=ROOT, stdout=log, stderr=log)
        finally:
            log.close()
        url = f"http://127.0.0.1:{port}"
        self.webs.append((url, process))
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {(self.directory / f'web-{port}.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/api/conversations/schema/", timeout=2) as response:
                    if response.status == 200:
                        return url
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not answer within 60 s")
            time.sleep(0.1)

    def start_worker(self) -> Any:
        from django_ai.conversations.testing import TaskWorker

        n = len(self.workers) + 1
        args = [sys.executable, "-m", "django", self.command, "--queue-name", "default"]
        args += ["--interval", str(self.interval), "--worker-id", f"load-worker-{n}"]
        args += ["--no-startup-delay", "--no-reload", "--verbosity", "1"]
        worker = TaskWorker(
            args=args, env=self._env(worker=True), log_path=self.directory / f"worker-{n}.log", cwd=str(ROOT)
        )
        self.workers.append(worker)
        self.worker_ids.append(f"load-worker-{n}")
        return worker.start()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=10)
        for _, process in self.webs:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in self.webs:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _connections() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def _streaming(session_id: Any) -> bool:
    """Whether a reply of the conversation is being streamed (or was, by a worker now dead)."""
    from django_ai.conversations.constants import MessageType, ProcessingStatus
    from django_ai.conversations.models import ConversationMessage

    return ConversationMessage.objects.filter(
        session_id=session_id, message_type=MessageType.AGENT, processing_status=ProcessingStatus.STREAMING
    ).exists()


def _busy_turn(worker_id: str) -> str | None:
    """A conversation whose reply the worker ``worker_id`` is streaming now, or None."""
    from django_tasks_db.models import DBTaskResult

    running = DBTaskResult.objects.filter(status="RUNNING", worker_ids__contains=[worker_id])
    for args_kwargs in running.values_list("args_kwargs", flat=True):
        session_id = (args_kwargs.get("args") or [None])[0] or args_kwargs.get("kwargs", {}).get("session_id")
        if session_id and _streaming(session_id):
            return str(session_id)
    return None


def _run(
    argv: list[str], label: str, soketi: Any, directory: Path, *, stale: float, kill_at: float | None
) -> tuple[dict[str, Any], list[str]]:
    import platform

    from django_ai.conversations.constants import MessageType, ProcessingStatus
    from django_ai.conversations.models import ConversationMessage

    quick = is_quick(argv)
    conversations = int_option(argv, "conversations", 10 if quick else 200)
    messages = int_option(argv, "messages", 2 if quick else 5)
    chunks = int_option(argv, "chunks", 10)
    pause_ms = float(option(argv, "pause-ms", "10"))
    command = option(argv, "worker", "ai_db_worker")
    # docs/deployment.md: ai_db_worker is woken by NOTIFY, --interval is only its fallback poll.
    interval = float(option(argv, "interval", "1" if command == "ai_db_worker" else "0.1"))
    web_pool = int_option(argv, "web-pool", 16)
    think_ms = int_option(argv, "think-ms", 0)
    total = conversations * messages
    deployment = Deployment(
        soketi=soketi,
        directory=directory,
        interval=interval,
        chunks=chunks,
        pause_ms=pause_ms,
        web_conn_max_age=int_option(argv, "web-conn-max-age", 0),
        web_pool=web_pool,
        stale=stale,
        command=command,
    )
    load_before = os.getloadavg()
    print(
        f"{label}; Python {platform.python_version()}, Django {django.get_version()}; {os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} before the run\n"
        f"2 uvicorn web processes ("
        + (f"a pool of at most {web_pool} connections each" if web_pool else "no connection pool")
        + f"), 2 {command} (--interval {interval:g}), soketi, pusher-js (Node); "
        f"{conversations} conversations x {messages} messages = {total} turns; "
        f"agent streams {chunks} writes {pause_ms:g} ms apart; "
        + (f"visitors wait ~{think_ms} ms before their next message; " if think_ms else "")
        + (f"a worker SIGKILLed after {kill_at:.0%} of the turns" if kill_at is not None else "no kill")
        + f"; STALE_TURN_TIMEOUT {stale:g} s",
        flush=True,
    )
    kill: dict[str, Any] = {}
    connections_peak = 0
    try:
        webs = [deployment.start_web(), deployment.start_web()]
        deployment.start_worker()
        deployment.start_worker()
        config = {
            "key": soketi.key,
            "host": "127.0.0.1",
            "port": soketi.port,
            "webUrls": webs,
            "prefix": "/api/conversations/",
            "agent": AGENT,
            "conversations": conversations,
            "messages": messages,
            # A visitor gives up on a reply after 10 minutes: a slow reply is not a lost one, and a
            # saturated queue can make one wait minutes (the run still reports the wait).
            "timeoutMs": 600_000,
            "thinkMs": think_ms,
        }
        output_path = directory / "client.jsonl"
        with open(output_path, "wb") as output, open(directory / "client.err", "wb") as errors:
            client = subprocess.Popen(
                ["node", str(HERE / "load_client.mjs"), json.dumps(config)], cwd=HERE, stdout=output, stderr=errors
            )
        started = time.monotonic()
        deadline = started + 900 + total * 2
        while client.poll() is None:
            if time.monotonic() > deadline:
                client.kill()
                raise AssertionError("the visitors did not finish in time")
            connections_peak = max(connections_peak, _connections())
            if kill_at is not None and not kill:
                answered = ConversationMessage.objects.filter(
                    message_type=MessageType.USER, processing_status=ProcessingStatus.COMPLETED
                ).count()
                if answered >= kill_at * total:
                    index = next(i for i, worker in enumerate(deployment.workers) if worker.alive())
                    victim, victim_id = deployment.workers[index], deployment.worker_ids[index]
                    session_id = _busy_turn(victim_id)
                    if session_id is not None:
                        victim.kill()  # SIGKILL: no cleanup, as in a crash
                        if _streaming(session_id):  # else the turn ended just before: kill again later
                            kill.update(at=time.time() * 1000, session_id=session_id, worker=victim_id)
                        print(
                            f"SIGKILLed {victim_id} while it streamed a reply of {session_id}"
                            + ("" if kill else " (it ended first: another kill follows)"),
                            flush=True,
                        )
                        time.sleep(1.0)  # systemd's Restart=always (RestartSec= 100 ms, plus start-up)
                        deployment.start_worker()
                        continue
            time.sleep(0.05)
        load_after = os.getloadavg()
        stderr = (directory / "client.err").read_text(errors="replace")
        if client.returncode != 0:
            raise AssertionError(f"the Node visitors exited with {client.returncode}: {stderr[-2000:]}")
        lines = [json.loads(line) for line in output_path.read_text().splitlines() if line.strip()]
    finally:
        deployment.stop()
    print(f"\nPostgreSQL connections to the benchmark's database, most seen at once: {connections_peak}")
    return _report(lines, conversations, messages, chunks, kill, kill_at is not None, load_before, load_after)


def _report(
    lines: list[dict[str, Any]],
    conversations: int,
    messages: int,
    chunks: int,
    kill: dict[str, Any],
    killed: bool,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> tuple[dict[str, Any], list[str]]:
    from django_tasks_db.models import DBTaskResult

    from django_ai.conversations.constants import MessageType, ProcessingStatus
    from django_ai.conversations.models import ConversationMessage, ConversationSession
    from django_ai.conversations.realtime.coalescer import utf16_len

    problems: list[str] = []
    total = conversations * messages
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_type[line["type"]].append(line)
    for error in by_type["error"][:5]:
        problems.append(f"visitor {error['client']}: {error['error'][:500]}")
    if len(by_type["error"]) > 5:
        problems.append(f"... and {len(by_type['error']) - 5} more visitor errors")
    session_of = {line["client"]: line["session_id"] for line in by_type["started"]}
    sent = {(line["client"], line["n"]): line for line in by_type["sent"]}
    done = {(line["client"], line["n"]): line for line in by_type["done"]}
    not_completed = [key for key, line in done.items() if line["status"] != "completed"]
    if len(done) != total or not_completed:
        problems.append(
            f"{len(done)} of {total} messages ended for the visitors; not completed: "
            f"{[(k, done[k]['status']) for k in not_completed[:5]]}"
        )

    # The rows: exactly the messages sent, each answered by exactly one completed reply.
    sessions = set(ConversationSession.objects.filter(agent_path=AGENT).values_list("pk", flat=True))
    if len(sessions) != conversations or {str(s) for s in sessions} != set(session_of.values()):
        problems.append(f"{len(sessions)} conversations saved, {len(session_of)} started by the visitors")
    rows: list[dict[str, Any]] = [
        dict(row)
        for row in ConversationMessage.objects.filter(session_id__in=sessions).values(
            "pk",
            "session_id",
            "message_type",
            "processing_status",
            "reply_to_id",
            "content",
            "stream_sequence",
            "metadata",
            "timestamp",
            "started_at",
            "attempts",
        )
    ]
    users = {row["pk"]: row for row in rows if row["message_type"] == MessageType.USER}
    replies = [row for row in rows if row["message_type"] == MessageType.AGENT]
    others = [row for row in rows if row["message_type"] not in (MessageType.USER, MessageType.AGENT)]
    completed_replies: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    interrupted = []
    for row in replies:
        if row["processing_status"] == ProcessingStatus.COMPLETED:
            completed_replies[row["reply_to_id"]].append(row)
        elif (row["metadata"] or {}).get("interrupted"):
            interrupted.append(row)
        else:
            problems.append(f"reply {row['pk']} is {row['processing_status']}, not completed nor interrupted")
    if len(users) != total:
        problems.append(f"{len(users)} user messages saved, {total} sent")
    if others:
        shown = [(r["message_type"], r["content"][:80]) for r in others[:3]]
        problems.append(f"{len(others)} other rows (notices?): {shown}")
    expected_text = "".join(f"w{n}@" for n in range(1, chunks + 1))
    for pk, user in users.items():
        answers = completed_replies.get(pk, [])
        if user["processing_status"] != ProcessingStatus.COMPLETED or len(answers) != 1:
            problems.append(f"message {pk}: {user['processing_status']} with {len(answers)} completed replies")
            continue
        writes = WRITE.findall(answers[0]["content"])
        if "".join(f"w{n}@" for n, _ in writes) != expected_text or answers[0]["stream_sequence"] != chunks:
            problems.append(f"reply {answers[0]['pk']}: the saved text does not hold writes 1..{chunks} in order")

    # What each visitor received.
    events_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in by_type["event"]:
        events_of[line["client"]].append(line)
    receipt: list[float] = []
    first_chunk: dict[str, float] = {}
    stream_end_at: dict[str, float] = {}
    received_text: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for client, events in events_of.items():
        ids = Counter(e["data"]["id"] for e in events)
        twice = [i for i, count in ids.items() if count > 1]
        if twice:
            problems.append(f"visitor {client} received {len(twice)} events twice")
        completions = Counter(
            e["data"]["message_id"]
            for e in events
            if e["event"] == "message_status"
            and e["data"]["message_type"] == "user"
            and e["data"]["status"] == "completed"
        )
        mine = [str(line["message_id"]) for key, line in sent.items() if key[0] == client]
        for message_id in mine:
            if completions.get(message_id, 0) != 1:
                count = completions.get(message_id, 0)
                problems.append(f"visitor {client}: message {message_id} completed {count} times")
        for event in events:
            data = event["data"]
            if event["event"] == "text_chunk":
                received_text[data["message_id"]].append(data)
                first_chunk.setdefault(data["message_id"], event["received_ms"])
                for _, stamp in WRITE.findall(data["text"]):
                    receipt.append(event["received_ms"] - float(stamp))
            elif event["event"] == "stream_end":
                if data["message_id"] in stream_end_at:
                    problems.append(f"reply {data['message_id']}: stream_end twice")
                stream_end_at[data["message_id"]] = event["received_ms"]

    def check_stream(message_id: str, complete: bool, row: dict[str, Any]) -> None:
        next_sequence, offset, text = 1, 0, []
        for data in received_text.get(message_id, []):
            if data["first_sequence"] != next_sequence or data["offset"] != offset:
                problems.append(
                    f"reply {message_id}: gap, expected write {next_sequence} at {offset}, got "
                    f"{data['first_sequence']} at {data['offset']}"
                )
                return
            next_sequence, offset = data["sequence"] + 1, offset + utf16_len(data["text"])
            text.append(data["text"])
        if complete:
            if next_sequence != chunks + 1 or message_id not in stream_end_at:
                problems.append(f"reply {message_id}: stream ended at write {next_sequence - 1} of {chunks}")
            elif "".join(text) != row["content"]:
                problems.append(f"reply {message_id}: the received text differs from the saved reply")
        elif not (row["content"].startswith("".join(text)) or "".join(text).startswith(row["content"])):
            problems.append(f"interrupted reply {message_id}: received chunks do not match its saved text")

    for answers in completed_replies.values():
        for row in answers:
            check_stream(str(row["pk"]), True, row)
    for row in interrupted:
        check_stream(str(row["pk"]), False, row)
    if killed and not interrupted:
        problems.append("the kill interrupted no turn")

    # Timings.
    recovered = {row["reply_to_id"] for row in interrupted}
    queue = [
        (u["started_at"] - u["timestamp"]).total_seconds() * 1000
        for pk, u in users.items()
        if u["started_at"] and pk not in recovered
    ]
    recovered_ids = {str(pk) for pk in recovered}
    reply_of = {str(pk): str(answers[0]["pk"]) for pk, answers in completed_replies.items() if answers}
    to_first, to_end, create_ms, recovery_ms, after_kill_ms = [], [], [], [], []
    for line in sent.values():
        create_ms.append(line["created_ms"] - line["sent_ms"])
        reply = reply_of.get(str(line["message_id"]))
        if reply in first_chunk and reply in stream_end_at:
            if line["message_id"] in recovered_ids:
                recovery_ms.append(stream_end_at[reply] - line["sent_ms"])
                if kill:
                    after_kill_ms.append(stream_end_at[reply] - kill["at"])
                continue
            to_first.append(first_chunk[reply] - line["sent_ms"])
            to_end.append(stream_end_at[reply] - line["sent_ms"])
    start_ms = [line["ms"] for line in by_type["started"]]
    first_sent = min((line["sent_ms"] for line in sent.values()), default=0)
    last_done = max((line["done_ms"] for line in done.values()), default=0)
    seconds = (last_done - first_sent) / 1000 or float("nan")
    tasks = DBTaskResult.objects.count()
    retries = sum(1 for u in users.values() if u["attempts"] > 1)
    resent = Counter(line["path"] for line in by_type["retry"])

    print()
    print(
        f"{len(done)} turns answered in {seconds:.1f} s: **{len(done) / seconds:.1f} turns/s**; "
        f"{tasks} tasks for {total} turns ({tasks / max(total, 1):.2f} per turn); "
        f"load average after the run {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    if resent:
        print(f"requests sent again after the server had closed their kept-alive connection: {dict(resent)}")
    if kill:
        print(
            f"{kill['worker']} SIGKILLed mid-stream: {len(interrupted)} reply interrupted and answered again "
            f"({retries} messages started more than once); sent -> recovered reply ended: "
            + ", ".join(f"{ms / 1000:.1f} s" for ms in sorted(recovery_ms))
            + "; kill -> recovered reply ended: "
            + ", ".join(f"{ms / 1000:.1f} s" for ms in sorted(after_kill_ms))
        )
    print()
    print("| latency (ms) | n | p50 | p95 | p99 | max |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values in (
        ("queue: message saved -> turn started", queue),
        ("receipt: write() -> pusher-js", receipt),
        ("visitor: POST message -> first chunk", to_first),
        ("visitor: POST message -> stream_end", to_end),
        ("HTTP: POST models/message/ (201)", create_ms),
        ("HTTP: POST start/ (201)", start_ms),
    ):
        if values:
            print(f"| {name} | {len(values)} | {_row(values)} |")
    print()
    if problems:
        for problem in problems[:40]:
            print(f"PROBLEM: {problem}")
    else:
        print(
            f"checked: {total} messages each completed once with one complete reply ({chunks} writes, no gap, "
            f"stream_end once, text = row), {len(receipt)} writes received, no event twice"
        )
    summary = {
        "turns_per_s": len(done) / seconds,
        "tasks_per_turn": tasks / max(total, 1),
        "queue": [_pct(queue, q) for q in (50, 95, 99)],
        "receipt": [_pct(receipt, q) for q in (50, 95, 99)],
        "to_end": [_pct(to_end, q) for q in (50, 95, 99)],
        "load": f"{load_before[0]:.1f} -> {load_after[0]:.1f}",
    }
    return summary, problems
