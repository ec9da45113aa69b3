"""Turn overhead: one full turn through ``ConversationService.send_message`` against a baseline
that only saves the two message rows (the user's and the agent's), on the same database.

Rows:
- baseline: ``ConversationMessage.objects.create`` twice in one transaction (the app's post-save
  hooks, which queue ``model_change`` events, run here too);
- the README's async EchoAgent; the same echo as a sync agent; an async agent that streams its
  reply in 5 chunks;
- a sync agent with a realistic Context of about 2 KB (notes it keeps, one changed per turn): what
  a Context costs a turn, the snapshots included. Every turn stores the Context it started from
  and the one it ended with on its user message (``context_before`` / ``context_after``,
  docs/versions.md), in the UPDATEs that start and end the turn (no query of their own); a
  second table gives their bytes per turn (the JSON as stored), beside the echo's empty Context.

Each row runs ``--turns`` turns (default 200) in a fresh session per round, three rounds; the rows
are interleaved turn by turn (a baseline save, one turn of each agent, again), so that the load of
a shared machine hits all rows alike; the table shows the median of each row's single turns, its
ratio to the baseline's and the SQL queries of one turn (CaptureQueriesContext), then the
statements of one README echo turn.

``./dev bench turn`` (SQLite file database); ``DATABASE_URL=postgres://... ./dev bench turn`` for
PostgreSQL. ``--turns=50`` for a quick look; ``--quick``: 10 turns, one round.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import django
from pydantic import BaseModel

from tests.bench.options import int_option, is_quick


def main(argv: list[str]) -> None:
    django.setup()
    from tests.bench.db import bench_database

    quick = is_quick(argv)
    turns = int_option(argv, "turns", 10 if quick else 200)
    rounds = 1 if quick else 3
    with bench_database() as label:
        _run(label, turns, rounds)


def _run(label: str, turns: int, rounds: int) -> None:
    import platform

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from django_ai.conversations import ConversationAgent
    from django_ai.conversations.context import ResponseStream
    from django_ai.conversations.models import ConversationMessage
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService

    class EchoAgent(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            return f"You said: {message}"

    class SyncEchoAgent(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            return f"You said: {message}"

    class StreamingEchoAgent(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            with ResponseStream() as stream:
                for word in f"You said: {message} !".split():
                    stream.write(word + " ")
            return stream.content

    class NotesAgent(ConversationAgent):
        """Keeps 20 notes of ~90 characters and a counter (a ~2 KB Context); replaces one note a turn."""

        class Context(BaseModel):
            user_id: int = 0
            plan: str = ""
            turns: int = 0
            notes: list[str] = []

        def get_response(self, message, request=None, **kwargs):
            self.context.turns += 1
            notes = list(self.context.notes)
            notes[self.context.turns % len(notes)] = _note(self.context.turns, message)
            self.context.notes = notes
            return f"Noted: {message}"

    register_agent("bench/notes", NotesAgent)
    register_agent("bench/echo", EchoAgent)
    register_agent("bench/sync-echo", SyncEchoAgent)
    register_agent("bench/stream-echo", StreamingEchoAgent)

    def baseline_turn(session: Any, text: str) -> None:
        with transaction.atomic():
            user = ConversationMessage.objects.create(session=session, message_type="user", content=text)
            ConversationMessage.objects.create(
                session=session, message_type="agent", content=f"You said: {text}", reply_to=user
            )

    def service_turn(session: Any, text: str) -> None:
        result = ConversationService.send_message(session.pk, text)
        if result["status"] != "success":
            raise RuntimeError(f"benchmark turn failed: {result}")

    rows: list[tuple[str, str | None, Callable[[Any, str], None]]] = [
        ("baseline: save 2 message rows", None, baseline_turn),
        ("send_message, async echo (README)", "bench/echo", service_turn),
        ("send_message, sync echo", "bench/sync-echo", service_turn),
        ("send_message, async, 5 chunks streamed", "bench/stream-echo", service_turn),
        ("send_message, sync, ~2 KB Context (snapshots)", "bench/notes", service_turn),
    ]

    def new_session(path: str | None) -> Any:
        context = None
        if path == "bench/notes":
            context = {"user_id": 42, "plan": "pro", "turns": 0, "notes": [_note(n, "start") for n in range(20)]}
        return ConversationService.create_session(path or "bench/echo", context=context)

    # Warm up every path (imports, prepared statements, the realtime backend).
    for _, path, func in rows:
        session = new_session(path)
        for n in range(5):
            func(session, f"warm-up {n}")

    # Turn by turn, the rows in turn (a baseline save, then one turn of each agent, again and
    # again): the load of a shared machine changes within seconds, and interleaving single turns
    # exposes every row to the same load. Each row's figure is the median of its single turns.
    timings: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    for _ in range(rounds):
        sessions = [new_session(path) for _, path, _ in rows]
        for n in range(turns):
            for (name, _, func), session in zip(rows, sessions, strict=True):
                started = time.perf_counter()
                func(session, f"message {n}")
                timings[name].append(time.perf_counter() - started)

    queries: dict[str, list[str]] = {}
    for name, path, func in rows:
        session = new_session(path)
        func(session, "first")
        with CaptureQueriesContext(connection) as captured:
            func(session, "second")
        queries[name] = [q["sql"] for q in captured.captured_queries]

    base = statistics.median(timings[rows[0][0]])
    print(
        f"database: {label}; Python {platform.python_version()}; Django {django.get_version()}; "
        f"{turns} turns x {rounds} rounds per row, interleaved turn by turn\n"
    )
    print("| turn | ms/turn (median of single turns) | ratio to baseline | SQL queries/turn | of which |")
    print("|---|---:|---:|---:|---|")
    for name, _, _ in rows:
        per_turn = statistics.median(timings[name])
        kinds = Counter(_kind(sql) for sql in queries[name])
        detail = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
        print(f"| {name} | {per_turn * 1000:.2f} | {per_turn / base:.1f}x | {len(queries[name])} | {detail} |")

    # What each statement of the README echo turn is (docs/benchmarks.md's table per query).
    print("\n| # | statement of one README echo turn |")
    print("|---:|---|")
    for n, sql in enumerate(queries[rows[1][0]], 1):
        print(f"| {n} | {_describe(sql)} |")

    # The snapshots' size: the JSON of context_before + context_after of one turn, as stored.
    print("\n| agent | Context (bytes of JSON) | context_before + context_after per turn (bytes) |")
    print("|---|---:|---:|")
    for name, path in (("sync echo (empty Context)", "bench/sync-echo"), ("~2 KB Context", "bench/notes")):
        session = new_session(path)
        for n in range(5):
            service_turn(session, f"size {n}")
        snapshots = ConversationMessage.objects.filter(session=session, message_type="user").values_list(
            "context_before", "context_after"
        )
        sizes = [len(json.dumps(before)) + len(json.dumps(after)) for before, after in snapshots]
        session.refresh_from_db()
        print(f"| {name} | {len(json.dumps(session.context))} | {statistics.median(sizes):.0f} |")


def _note(n: int, message: str) -> str:
    return f"note {n:03d}: the customer asked about {message!r}; follow up by e-mail, ticket #{1000 + n}."[:90].ljust(
        90
    )


def _describe(sql: str) -> str:
    """``UPDATE conversationsession SET turn_token, active_turn``: the verb, the table, the columns
    written (for a SELECT only the table), without values."""
    import re

    verb = _kind(sql)
    if verb == "transaction":
        return sql.split(None, 1)[0].upper()
    table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql)
    name = table.group(1).removeprefix("django_ai_conversations_") if table else "?"
    if verb == "UPDATE":
        head = sql.split(" WHERE ")[0].split(" SET ", 1)[-1]
        columns = [c.split("=")[0].strip().strip('"`') for c in re.split(r',\s*(?=["`]?\w+["`]?\s*=)', head)]
        return f"UPDATE {name} SET {', '.join(columns)}"
    return f"{verb} {name}"


def _kind(sql: str) -> str:
    word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    if word in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"):
        return "transaction"
    return word
