"""Turns in the background: turns per second and queue latency (message saved -> turn started)
with the in-process backend (Django's ImmediateBackend, IN_PROCESS_TURN_THREADS background
threads) and with the worker backend (django-tasks-db, real ``db_worker`` processes), against
the baseline of answering inline (``ConversationService.send_message``, no queue).

Table 1, throughput: ``--messages`` (default 200) messages, one per conversation, all saved at
once through the ORM (as the bridge saves them); the clock stops when the last one is answered.
Best of 2 rounds per row (the machine may be shared).
Table 2, latency as load grows: bursts where 1, 10 and 100 conversations each get one message at
the same moment; per-message latency percentiles.

Queue latency is ``started_at - timestamp`` of each user message: from the moment the message was
saved to the moment a turn started answering it (task enqueue, pickup, lease, status update).

``DATABASE_URL=postgres://postgres@127.0.0.1:5432/test DJANGO_TEST_DB_NAME=bench_tasks ./dev bench tasks``
(the figures in docs/benchmarks.md); without DATABASE_URL it runs on a SQLite file.
``--messages=60`` for a quick look. ``--quick``: 10 messages, one round, one configuration of each
backend (in-process, one db_worker) and bursts of 1 and 3 conversations.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import django

from django_ai.conversations import ConversationAgent
from tests.bench.options import Skipped, int_option, is_quick

AGENT = "bench/echo"
WORKER_INTERVAL = 0.1  # db_worker --interval: how long an idle worker sleeps between polls


class EchoAgent(ConversationAgent):
    """The README's echo agent (imported by the workers through DJANGO_AI['AGENTS'])."""

    async def get_response(self, message, request=None, **kwargs):
        return f"You said: {message}"


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
    with bench_database() as label:
        _run(label, messages, quick=quick)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _run(label: str, total: int, *, quick: bool = False) -> None:
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
    # (workers, CONN_MAX_AGE) of the db_worker rows; bursts are measured on the last one.
    worker_rows = ((1, 60),) if quick else ((1, 0), (2, 0), (2, 60))

    print(
        f"{label}; Python {platform.python_version()}, Django {django.get_version()}; "
        f"{total} messages, one per conversation; echo agent; db_worker --interval {WORKER_INTERVAL}\n"
    )

    rows: list[tuple[str, dict[str, float]]] = []
    bursts: list[tuple[str, int, dict[str, float]]] = []
    with override_settings(DJANGO_AI=ai):
        from django_ai.conversations.registry import register_agent

        register_agent(AGENT, EchoAgent)
        rows.append(("inline send_message (baseline, no queue)", _best(_inline, total, rounds)))
        with override_settings(TASKS=immediate):
            task_backends["default"]
            if not quick:
                rows.append(("in-process: ImmediateBackend + 4 threads", _best(_queued, total, rounds)))
            with _conn_max_age(60):
                name = "in-process, 4 threads, CONN_MAX_AGE=60"
                rows.append((name, _best(_queued, total, rounds)))
                for conversations, burst_rounds in bursts_of.items():
                    bursts.append((name, conversations, _bursts(conversations, burst_rounds)))
                in_process_runner().stop(10)  # closes the threads' kept connections
        with override_settings(TASKS=database):
            for index, (workers, max_age) in enumerate(worker_rows):
                with _workers(task_worker, workers, max_age):
                    name = f"db_worker x{workers}" + (f", CONN_MAX_AGE={max_age}" if max_age else "")
                    rows.append((name, _best(_queued, total, rounds)))
                    if index == len(worker_rows) - 1:
                        for conversations, burst_rounds in bursts_of.items():
                            bursts.append((name, conversations, _bursts(conversations, burst_rounds)))

    base = rows[0][1]["turns_per_s"]
    print("| backend | turns/s | ratio to inline | queue latency p50 ms | p95 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        latency = (f"{r['p50']:.0f} | {r['p95']:.0f}") if "p50" in r else "- | -"
        print(f"| {name} | {r['turns_per_s']:.1f} | {r['turns_per_s'] / base:.2f}x | {latency} |")
    print()
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
def _workers(task_worker: Callable[..., Any], count: int, conn_max_age: int) -> Iterator[None]:
    with _conn_max_age(conn_max_age), task_worker(interval=WORKER_INTERVAL, queue="default") as start:
        for _ in range(count):
            start()
        yield


def _best(measure: Callable[[int], dict[str, float]], total: int, rounds: int = 2) -> dict[str, float]:
    """The round with the highest throughput: other jobs on a shared machine only slow runs down."""
    return max((measure(total) for _ in range(rounds)), key=lambda r: r["turns_per_s"])


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
        time.sleep(0.01)


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
