"""Turns in the background: turns per second and queue latency (message saved -> turn started)
with the in-process backend (Django's ImmediateBackend, IN_PROCESS_TURN_THREADS background
threads) and with the worker backend (django-tasks-db: real ``db_worker`` processes, and this
app's ``ai_db_worker``, woken by NOTIFY and keeping its connection), against the baseline of
answering inline (``ConversationService.send_message``, no queue).

Table 1, throughput: ``--messages`` (default 200) messages, one per conversation, all saved at
once through the ORM (as the bridge saves them); the clock stops when the last one is answered.
Best of 2 rounds per row (the machine may be shared), each row in rounds alternating with the
inline baseline: its ratio is to the inline rounds beside it.
Table 2, a single message to an idle worker (``--interval 0.1``): 20 messages, one at a time, each
after a random pause of 0.15 to 0.35 s (so the message lands anywhere in a polling worker's sleep).
Table 3, latency as load grows: bursts where 1, 10 and 100 conversations each get one message at
the same moment; per-message latency percentiles.
Table 4, where a worker's time goes: each step of a task, timed in this process with the code the
worker runs (medians of 50), beside the inline turn.

Queue latency is ``started_at - timestamp`` of each user message: from the moment the message was
saved to the moment a turn started answering it (task enqueue, pickup, lease, status update).

``DATABASE_URL=postgres://postgres@127.0.0.1:5432/test DJANGO_TEST_DB_NAME=bench_tasks ./dev bench tasks``
(the figures in docs/benchmarks.md); ``--parts=throughput,singles,bursts,steps`` runs some tables,
``--only=x1`` only the worker rows whose name contains it; without DATABASE_URL it runs on a SQLite file (no NOTIFY:
``ai_db_worker`` polls there). ``--messages=60`` for a quick look. ``--quick``: 10 messages, one
round, one configuration of each backend, 3 single messages, bursts of 1 and 3 conversations.
"""

from __future__ import annotations

import importlib.util
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import django

from django_ai.conversations import ConversationAgent
from tests.bench.options import Skipped, int_option, is_quick, option

AGENT = "bench/echo"
WORKER_INTERVAL = 0.1  # db_worker --interval: how long an idle worker sleeps between polls
SINGLES = 20  # table 2: single messages to an idle worker
STEPS = 50  # table 4: tasks timed per step


class EchoAgent(ConversationAgent):
    """The README's echo agent (imported by the workers through DJANGO_AI['AGENTS'])."""

    async def get_response(self, message, request=None, **kwargs):
        return f"You said: {message}"


# The tables --parts=... may choose (all by default): on a busy machine, measure one at a time.
PARTS = ("throughput", "singles", "bursts", "steps")

# Burst sizes (conversations that get a message at the same moment) and the rounds of each.
BURSTS = {1: 20, 10: 4, 100: 1}
QUICK_BURSTS = {1: 2, 3: 1}


def main(argv: list[str]) -> None:
    django.setup()
    from tests.bench.db import bench_database

    if importlib.util.find_spec("django_tasks_db") is None:
        raise Skipped("django-tasks-db is not installed: pip install 'django-ai-first[worker]'")
    quick = is_quick(argv)
    messages = int_option(argv, "messages", 10 if quick else 200)
    parts = set(option(argv, "parts", ",".join(PARTS)).split(","))
    if not parts <= set(PARTS):
        raise SystemExit(f"--parts takes some of {','.join(PARTS)}")
    only = option(argv, "only", "")
    with bench_database() as label:
        _run(label, messages, quick=quick, parts=parts, only=only)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# (name, kind, workers, CONN_MAX_AGE in the settings, extra arguments) of the worker rows.
WORKER_ROWS = (
    ("db_worker x1", "db", 1, 0, []),
    ("db_worker x1, CONN_MAX_AGE=60", "db", 1, 60, []),
    ("ai_db_worker x1", "ai_db", 1, 0, []),
    ("db_worker x2, CONN_MAX_AGE=60", "db", 2, 60, []),
    ("ai_db_worker x2", "ai_db", 2, 0, []),
)
QUICK_WORKER_ROWS = (("db_worker x1", "db", 1, 0, []), ("ai_db_worker x1", "ai_db", 1, 0, []))
# Table 2: a single message to one idle worker.
SINGLE_ROWS = (
    ("db_worker x1", "db", 1, 0, []),
    ("ai_db_worker x1 --no-wakeup (polls)", "ai_db", 1, 0, ["--no-wakeup"]),
    ("ai_db_worker x1", "ai_db", 1, 0, []),
)


def _run(label: str, total: int, *, quick: bool, parts: set[str], only: str = "") -> None:
    import platform

    from django.conf import settings
    from django.test import override_settings

    from django_ai.conversations.internal.tasks_compat import ImmediateBackend, task_backends
    from django_ai.conversations.testing import task_worker
    from django_ai.conversations.turns.inprocess import in_process_runner

    immediate = {"default": {"BACKEND": settings.TASKS["default"]["BACKEND"]}}
    if "immediate" not in immediate["default"]["BACKEND"].lower():
        immediate = {"default": {"BACKEND": f"{ImmediateBackend.__module__}.{ImmediateBackend.__name__}"}}
    database = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    ai = {**settings.DJANGO_AI, "AGENTS": {AGENT: "tests.bench.bench_tasks.EchoAgent"}, "IN_PROCESS_TURN_THREADS": 4}

    bursts_of = QUICK_BURSTS if quick else BURSTS
    rounds = 1 if quick else 2
    worker_rows = QUICK_WORKER_ROWS if quick else WORKER_ROWS
    if only:  # --only=x1: the worker rows whose name contains it, and no in-process row
        worker_rows = tuple(row for row in worker_rows if only in row[0])
    singles = 3 if quick else SINGLES
    steps = 5 if quick else STEPS

    print(
        f"{label}; Python {platform.python_version()}, Django {django.get_version()}; "
        f"{total} messages, one per conversation; echo agent; workers --interval {WORKER_INTERVAL}; "
        f"load average before: {_loadavg()}\n"
    )

    rows: list[tuple[str, dict[str, float]]] = []
    single_rows: list[tuple[str, dict[str, float]]] = []
    bursts: list[tuple[str, int, dict[str, float]]] = []
    step_times: dict[str, float] = {}
    throughput = "throughput" in parts
    with override_settings(DJANGO_AI=ai):
        from django_ai.conversations.registry import register_agent

        register_agent(AGENT, EchoAgent)
        if throughput:
            rows.append(("inline send_message (baseline, no queue)", _best(_inline, total, rounds)))
        with override_settings(TASKS=immediate):
            task_backends["default"]
            if throughput and not quick and not only:
                rows.append(("in-process: ImmediateBackend + 4 threads", _beside_inline(_queued, total, rounds)))
            with _conn_max_age(60):
                name = "in-process, 4 threads, CONN_MAX_AGE=60"
                if throughput and not only:
                    rows.append((name, _beside_inline(_queued, total, rounds)))
                if "singles" in parts:
                    single_rows.append((name, _singles(singles)))
                if "bursts" in parts:
                    for conversations, burst_rounds in bursts_of.items():
                        bursts.append((name, conversations, _bursts(conversations, burst_rounds)))
                in_process_runner().stop(10)  # closes the threads' kept connections
        with override_settings(TASKS=database):
            for index, (name, kind, workers, max_age, args) in enumerate(worker_rows):
                last = index == len(worker_rows) - 1
                if not throughput and not (last and "bursts" in parts):
                    continue
                with _workers(task_worker, kind, workers, max_age, args):
                    if throughput:
                        rows.append((name, _beside_inline(_queued, total, rounds)))
                    if last and "bursts" in parts:
                        for conversations, burst_rounds in bursts_of.items():
                            bursts.append((name, conversations, _bursts(conversations, burst_rounds)))
            if "singles" in parts:
                for name, kind, workers, max_age, args in SINGLE_ROWS[:: 2 if quick else 1]:
                    with _workers(task_worker, kind, workers, max_age, args):
                        single_rows.append((name, _singles(singles)))
            if "steps" in parts:
                step_times = _steps(steps)
        if throughput:
            rows.append(("inline send_message (again, after the workers)", _best(_inline, total, rounds)))

    if rows:
        _print_throughput(rows)
    if single_rows:
        print(f"A single message to an idle worker (--interval {WORKER_INTERVAL}), {singles} messages one at a time:\n")
        print(
            "| backend | queue latency p50 ms | p95 ms | max ms | saved -> task stored, median ms "
            "| -> task claimed | -> turn started |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, r in single_rows:
            split = " | ".join(_ms(r[k]) for k in ("enqueue", "pickup", "start"))
            print(f"| {name} | {r['p50']:.1f} | {r['p95']:.1f} | {r['max']:.1f} | {split} |")
        print()
    if bursts:
        _print_bursts(bursts)
    if step_times:
        _print_steps(step_times, steps)
    print(f"\nload average after: {_loadavg()}")


def _print_throughput(rows: list[tuple[str, dict[str, float]]]) -> None:
    base = rows[0][1]["turns_per_s"]
    print(
        "| backend | turns/s | inline beside it, turns/s | ratio to inline beside | ratio to the first inline "
        "| ms per turn | queue latency p50 ms | p95 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        latency = (f"{r['p50']:.0f} | {r['p95']:.0f}") if "p50" in r else "- | -"
        beside = (f"{r['inline']:.1f} | {r['turns_per_s'] / r['inline']:.2f}x") if "inline" in r else "- | -"
        print(
            f"| {name} | {r['turns_per_s']:.1f} | {beside} | {r['turns_per_s'] / base:.2f}x "
            f"| {1000 / r['turns_per_s']:.1f} | {latency} |"
        )
    print()


def _print_bursts(bursts: list[tuple[str, int, dict[str, float]]]) -> None:
    print(
        "| backend | conversations active at once | messages | latency p50 ms | p95 ms | max ms "
        "| p50 ratio to 1 conversation |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    single: dict[str, float] = {}
    for name, conversations, r in bursts:
        if conversations == 1:
            single[name] = r["p50"]
        print(
            f"| {name} | {conversations} | {r['n']:.0f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['max']:.0f} | "
            f"{r['p50'] / max(single[name], 0.5):.1f}x |"
        )
    print()


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


@contextmanager
def _conn_max_age(seconds: int) -> Iterator[None]:
    """CONN_MAX_AGE for the threads of this process and the workers started inside (they copy this
    process's database settings). 0 closes the connection after every task."""
    from django.db import connection

    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = seconds  # the dict every thread's connection shares
    try:
        yield
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = saved


@contextmanager
def _workers(
    task_worker: Callable[..., Any], kind: str, count: int, conn_max_age: int, args: list[str]
) -> Iterator[None]:
    with (
        _conn_max_age(conn_max_age),
        task_worker(kind=kind, interval=WORKER_INTERVAL, queue="default", args=args) as start,
    ):
        for _ in range(count):
            start()
        yield


def _best(measure: Callable[[int], dict[str, float]], total: int, rounds: int = 2) -> dict[str, float]:
    """The round with the highest throughput: other jobs on a shared machine only slow runs down."""
    return max((measure(total) for _ in range(rounds)), key=lambda r: r["turns_per_s"])


def _beside_inline(measure: Callable[[int], dict[str, float]], total: int, rounds: int = 2) -> dict[str, float]:
    """``measure`` and the inline baseline in alternate rounds, the best of each: the ratio of the
    two is measured under the same load (it moves by 2x within a run on a busy machine)."""
    best: dict[str, float] = {}
    inline = 0.0
    for _ in range(rounds):
        inline = max(inline, _inline(total)["turns_per_s"])
        result = measure(total)
        if result["turns_per_s"] > best.get("turns_per_s", 0.0):
            best = result
    return {**best, "inline": inline}


def _sessions(count: int) -> list[Any]:
    from django_ai.conversations.service import ConversationService

    return [ConversationService.create_session(AGENT) for _ in range(count)]


def _inline(total: int) -> dict[str, float]:
    from django_ai.conversations.service import ConversationService

    sessions = _sessions(total)
    started = time.perf_counter()
    for i in range(total):
        ConversationService.send_message(sessions[i].pk, f"message {i}")
    return {"turns_per_s": total / (time.perf_counter() - started)}


def _post(session: Any, text: str) -> Any:
    from django_ai.conversations.models import ConversationMessage

    return ConversationMessage.objects.create(
        session=session, message_type="user", content=text, processing_status="pending"
    )


def _wait_answered(ids: list[Any], timeout: float = 120.0) -> None:
    from django_ai.conversations.models import ConversationMessage

    deadline = time.monotonic() + timeout
    while ConversationMessage.objects.filter(pk__in=ids, processing_status="completed").count() < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"turns not answered within {timeout} s")
        time.sleep(0.01 if len(ids) < 20 else 0.05)  # a long wait looks less often: it competes for CPU


def _latencies(ids: list[Any]) -> list[float]:
    from django_ai.conversations.models import ConversationMessage

    rows = ConversationMessage.objects.filter(pk__in=ids).values_list("timestamp", "started_at")
    return [(started - saved).total_seconds() * 1000 for saved, started in rows]


def _queued(total: int) -> dict[str, float]:
    sessions = _sessions(total)
    started = time.perf_counter()
    ids = [_post(sessions[i], f"message {i}").pk for i in range(total)]
    _wait_answered(ids)
    elapsed = time.perf_counter() - started
    latencies = _latencies(ids)
    return {"turns_per_s": total / elapsed, "p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95)}


def _bursts(conversations: int, rounds: int) -> dict[str, float]:
    latencies: list[float] = []
    for _ in range(rounds):
        sessions = _sessions(conversations)
        ids = [_post(session, "hello").pk for session in sessions]
        _wait_answered(ids)
        latencies += _latencies(ids)
        time.sleep(WORKER_INTERVAL * 2)  # idle workers between bursts, as between real messages
    return {
        "n": len(latencies),
        "p50": _percentile(latencies, 0.5),
        "p95": _percentile(latencies, 0.95),
        "max": max(latencies),
    }


def _singles(count: int) -> dict[str, float]:
    """One message at a time to an idle backend, each after a random pause (a polling worker's
    sleep is then caught anywhere in its interval). With a worker, the latency is split at the
    task row's times: saved -> task stored (``enqueued_at``), -> claimed (``started_at``), -> turn
    started (the message's ``started_at``)."""
    from django_ai.conversations.internal.tasks_compat import task_backends
    from django_ai.conversations.models import ConversationMessage

    stored = "django_tasks_db" in type(task_backends["default"]).__module__
    latencies: list[float] = []
    parts: dict[str, list[float]] = {"enqueue": [], "pickup": [], "start": []}
    for _ in range(count):
        time.sleep(random.uniform(1.5 * WORKER_INTERVAL, 3.5 * WORKER_INTERVAL))
        session = _sessions(1)[0]
        ids = [_post(session, "hello").pk]
        _wait_answered(ids)
        latencies += _latencies(ids)
        if stored:
            from django_tasks_db.models import DBTaskResult

            task = DBTaskResult.objects.filter(args_kwargs__args__0=str(session.pk)).earliest("enqueued_at")
            message = ConversationMessage.objects.get(pk=ids[0])
            assert task.started_at is not None and message.started_at is not None
            parts["enqueue"].append((task.enqueued_at - message.timestamp).total_seconds())
            parts["pickup"].append((task.started_at - task.enqueued_at).total_seconds())
            parts["start"].append((message.started_at - task.started_at).total_seconds())
    result = {"p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95), "max": max(latencies)}
    result.update({k: _median_ms(v) if v else float("nan") for k, v in parts.items()})
    return result


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def _steps(count: int) -> dict[str, float]:
    """Each step a worker takes for a turn, timed here with the code it runs (medians, ms)."""
    from django.db import close_old_connections, connection
    from django_tasks_db.models import DBTaskResult
    from django_tasks_db.utils import exclusive_transaction

    from django_ai.conversations.management.commands.ai_db_worker import WakingWorker
    from django_ai.conversations.models import ConversationMessage
    from django_ai.conversations.service import ConversationService
    from django_ai.conversations.turns.hooks import answered_by_caller
    from django_ai.conversations.turns.scheduling import turn_task
    from django_ai.conversations.turns.wakeup import TaskListener

    times: dict[str, list[float]] = {
        k: [] for k in ("connect", "enqueue", "notify", "claim", "claim1", "lookup", "body", "result", "inline")
    }
    worker = WakingWorker(
        listener=TaskListener(backend="default", queues=["*"], enabled=False),
        queue_names=["*"],
        interval=WORKER_INTERVAL,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="bench",
        excluded_queue_names=[],
    )
    for session in _sessions(count):
        started = time.perf_counter()
        ConversationService.send_message(session.pk, "hello")
        times["inline"].append(time.perf_counter() - started)
    sessions = _sessions(2 * count)  # half claimed as db_worker does, half as ai_db_worker does
    task = turn_task()
    for session in sessions:
        with answered_by_caller():  # the task is enqueued below, timed
            ConversationMessage.objects.create(
                session=session, message_type="user", content="hello", processing_status="pending"
            )
        started = time.perf_counter()
        task.enqueue(str(session.pk))  # INSERT (+ NOTIFY on PostgreSQL)
        times["enqueue"].append(time.perf_counter() - started)
    if connection.vendor == "postgresql":
        for _ in range(count):
            started = time.perf_counter()
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify('django_ai_bench', '')")
            times["notify"].append(time.perf_counter() - started)
    ready = DBTaskResult.objects.ready().filter(backend_name="default")
    for index in range(2 * count):
        connection.close()  # CONN_MAX_AGE=0: every task opens a connection
        started = time.perf_counter()
        connection.ensure_connection()
        times["connect"].append(time.perf_counter() - started)
        started = time.perf_counter()
        if index < count:
            with exclusive_transaction(ready.db):
                db_result = ready.get_locked()
                assert db_result is not None
                db_result.claim("bench")
        else:
            db_result = worker._claim()[0]
            assert db_result is not None
        claimed = time.perf_counter()
        db_task, task_result = db_result.task, db_result.task_result
        looked_up = time.perf_counter()
        value = db_task.call(*task_result.args, **task_result.kwargs)
        ran = time.perf_counter()
        db_result.set_successful(value)
        done = time.perf_counter()
        close_old_connections()
        times["claim" if index < count else "claim1"].append(claimed - started)
        times["lookup"].append(looked_up - claimed)
        times["body"].append(ran - looked_up)
        times["result"].append(done - ran)
    return {k: _median_ms(v) if v else float("nan") for k, v in times.items()}


def _print_steps(t: dict[str, float], count: int) -> None:
    poll = WORKER_INTERVAL * 1000 / 2
    print(f"Where a worker's time goes (medians of {count} tasks, ms; measured in this process):\n")
    print("| step | ms | db_worker (CONN_MAX_AGE=0) | ai_db_worker |")
    print("|---|---:|---|---|")
    lines = (
        ("inline turn (send_message: the baseline's whole turn)", t["inline"], "-", "-"),
        ("turn task body (answer_pending: lease, turn, next look)", t["body"], "yes", "yes"),
        ("enqueue: INSERT of the task row (web process, after the commit)", t["enqueue"], "yes", "yes"),
        ("  of which NOTIFY (PostgreSQL)", t["notify"], "no", "yes"),
        ("new database connection per task", t["connect"], "yes", "no (kept)"),
        ("claim: BEGIN, SELECT ... FOR UPDATE SKIP LOCKED, UPDATE, COMMIT", t["claim"], "yes", "SQLite"),
        ("claim, ai_db_worker on PostgreSQL: one UPDATE ... RETURNING", t["claim1"], "no", "PostgreSQL"),
        ("task lookup (import, validation, TaskResult)", t["lookup"], "yes", "yes"),
        ("result: UPDATE of the task row", t["result"], "yes", "yes"),
        (f"idle worker's poll sleep (average, --interval {WORKER_INTERVAL})", poll, "yes", "no (NOTIFY)"),
    )
    for name, ms, old, new in lines:
        print(f"| {name} | {_ms(ms, 2)} | {old} | {new} |")


def _ms(value: float, places: int = 1) -> str:
    return "-" if value != value else f"{value:.{places}f}"  # NaN: not measured here
