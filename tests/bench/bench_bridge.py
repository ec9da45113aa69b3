"""Bridge benchmark: "the latest 50 messages of a conversation" through the bridge's query
endpoint versus a hand-written DRF ListAPIView returning the same rows, on a table of 1k messages
and on one of 1M messages (10k conversations, 100 messages each, 1000 users), PostgreSQL.

``DATABASE_URL=postgres://postgres@127.0.0.1:5432/test ./dev bench bridge [--requests=N]``

The data lives in two databases of their own (``django_ai_bench_bridge_1k`` / ``_1m`` on the
server of DATABASE_URL), filled once with COPY and reused by later runs; drop them to start over.
Both views are called in-process with DRF's APIRequestFactory (authenticated with
``force_authenticate``, responses rendered to JSON), so the figures are the views' own cost:
permission scoping, query compiling, SQL, serialization and rendering, without the HTTP server or
the session middleware. Requests alternate between the two views, over random conversations.

``--quick``: 360 messages (6 conversations of 60) in a throw-away database (``tests/bench/db.py``,
SQLite or PostgreSQL), 20 requests per view; nothing is kept.

The rows are written with every column of the models, unset ones at their model default, so a
column added to a model later needs no change here.
"""

from __future__ import annotations

import io
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import django

from tests.bench.options import Skipped, int_option, is_quick

DATASETS = (
    # label, database suffix, users, conversations, messages per conversation
    ("1k", "1k", 5, 10, 100),
    ("1M", "1m", 1000, 10_000, 100),
)
QUICK_DATASET = ("quick", None, 3, 6, 60)  # more than 50 messages a conversation: full pages
PAGE = 50


def _database_name(suffix: str) -> str:
    return f"django_ai_bench_bridge_{suffix}"


def _ensure_database(name: str) -> None:
    import psycopg
    from django.conf import settings

    params = settings.DATABASES["default"]
    conninfo = {
        "dbname": "postgres",
        "user": params.get("USER") or "postgres",
        "host": params.get("HOST") or "127.0.0.1",
        "port": params.get("PORT") or 5432,
    }
    if params.get("PASSWORD"):
        conninfo["password"] = params["PASSWORD"]
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def _use_database(name: str) -> str:
    """Point the connection at database ``name``; the name it had."""
    from django.db import connection

    connection.close()
    old, connection.settings_dict["NAME"] = connection.settings_dict["NAME"], name
    return old


def _insert(model: Any, rows: Any) -> None:
    """Insert ``rows`` (dicts of field name -> value) into ``model``'s table: COPY on PostgreSQL,
    ``bulk_create`` elsewhere. Fields a row leaves out get their model default."""
    from django.db import connection

    if connection.vendor != "postgresql":
        batch: list[Any] = []
        for row in rows:
            batch.append(model(**row))
            if len(batch) == 1000:
                model.objects.bulk_create(batch)
                batch = []
        model.objects.bulk_create(batch)
        return
    fields = model._meta.concrete_fields
    defaults = {f.attname: f.get_db_prep_save(f.get_default(), connection) for f in fields}
    raw = connection.cursor().cursor  # psycopg's cursor, for COPY
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with raw.copy(f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(
                [
                    f.get_db_prep_save(row[f.attname], connection) if f.attname in row else defaults[f.attname]
                    for f in fields
                ]
            )


def _load(users: int, conversations: int, per_conversation: int) -> float:
    """Fill the current database unless it holds exactly this data set; seconds spent."""
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection, transaction

    from django_ai.conversations.models import ConversationMessage, ConversationSession

    call_command("migrate", verbosity=0)
    expected = conversations * per_conversation
    if ConversationSession.objects.count() == conversations and ConversationMessage.objects.count() == expected:
        return 0.0
    started = time.monotonic()
    with transaction.atomic():
        ConversationMessage.objects.all().delete()
        ConversationSession.objects.all().delete()
        User.objects.filter(username__startswith="bench").delete()
        User.objects.bulk_create([User(username=f"bench{i}", password="!") for i in range(users)], batch_size=1000)
    user_ids = list(User.objects.filter(username__startswith="bench").order_by("id").values_list("id", flat=True))
    now = datetime.now(UTC)
    session_ids = [uuid.uuid4() for _ in range(conversations)]
    with transaction.atomic():
        _insert(
            ConversationSession,
            (
                {
                    "id": sid,
                    "agent_path": "bench",
                    "user_id": user_ids[i % len(user_ids)],
                    "title": f"Conversation {i}",
                    "status": "active",
                    "created_at": now,
                    "updated_at": now,
                }
                for i, sid in enumerate(session_ids)
            ),
        )

        def messages() -> Any:
            for sid in session_ids:
                start = now - timedelta(minutes=per_conversation)
                for j in range(per_conversation):
                    ts = start + timedelta(minutes=j)
                    yield {
                        "id": uuid.uuid4(),
                        "session_id": sid,
                        "message_type": "user" if j % 2 == 0 else "agent",
                        "content": f"Message {j} of the conversation, some words to carry.",
                        "processing_status": "completed",
                        "timestamp": ts,
                        "updated_at": ts,
                    }

        _insert(ConversationMessage, messages())
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {ConversationSession._meta.db_table}")
            cursor.execute(f"ANALYZE {ConversationMessage._meta.db_table}")
    return time.monotonic() - started


def _baseline_view() -> Any:
    """What a developer would write by hand with DRF for the same rows."""
    from rest_framework import generics, serializers

    from django_ai.conversations.models import ConversationMessage

    class MessageSerializer(serializers.ModelSerializer):
        class Meta:
            model = ConversationMessage
            fields = [
                "id",
                "session",
                "message_type",
                "content",
                "component_type",
                "component_data",
                "files",
                "processing_status",
                "reply_to",
                "stream_sequence",
                "timestamp",
                "updated_at",
            ]

    class LatestMessages(generics.ListAPIView):
        serializer_class = MessageSerializer

        def get_queryset(self) -> Any:
            return (
                ConversationMessage.objects.filter(session__user=self.request.user, session=self.kwargs["session"])
                .prefetch_related("files")
                .order_by("-timestamp", "-id")[: int(self.request.query_params.get("limit", PAGE))]
            )

    return LatestMessages.as_view()


def _bridge_call(factory: Any, view: Any, user: Any, session_id: str, limit: int = PAGE) -> Any:
    from rest_framework.test import force_authenticate

    body = {"filter": {"session": session_id}, "order_by": ["-timestamp"], "limit": limit}
    request = factory.post("/api/conversations/models/message/query/", body, format="json")
    force_authenticate(request, user=user)
    response = view(request, name="message")
    response.render()
    assert response.status_code == 200, response.content[:300]
    return response


def _baseline_call(factory: Any, view: Any, user: Any, session_id: str, limit: int = PAGE) -> Any:
    from rest_framework.test import force_authenticate

    request = factory.get(f"/bench/sessions/{session_id}/messages/", {"limit": limit})
    force_authenticate(request, user=user)
    response = view(request, session=session_id)
    response.render()
    assert response.status_code == 200, response.content[:300]
    return response


def _queries(call: Any) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        call()
    return len(captured)


def _measure(label: str, requests: int) -> dict[str, Any]:
    import json

    from django.contrib.auth.models import User
    from rest_framework.test import APIRequestFactory

    from django_ai.conversations.bridge.views import QueryView
    from django_ai.conversations.models import ConversationSession

    factory = APIRequestFactory()
    bridge = QueryView.as_view()
    baseline = _baseline_view()
    rng = random.Random(5)
    sessions = list(ConversationSession.objects.filter(agent_path="bench").values_list("id", "user_id")[:2000])
    users = {u.pk: u for u in User.objects.filter(pk__in={uid for _, uid in sessions})}
    picks = [rng.choice(sessions) for _ in range(requests)]

    # Same rows, same order.
    sid, uid = picks[0]
    a = json.loads(_bridge_call(factory, bridge, users[uid], str(sid)).content)
    b = json.loads(_baseline_call(factory, baseline, users[uid], str(sid)).content)
    assert a["data"] == [row["id"] for row in b], "bridge and baseline disagree"
    assert len(a["data"]) == PAGE

    queries = {
        limit: (
            _queries(lambda limit=limit: _bridge_call(factory, bridge, users[uid], str(sid), limit)),
            _queries(lambda limit=limit: _baseline_call(factory, baseline, users[uid], str(sid), limit)),
        )
        for limit in (10, 50, 100)
    }
    for sid, uid in picks[:20]:  # warm up
        _bridge_call(factory, bridge, users[uid], str(sid))
        _baseline_call(factory, baseline, users[uid], str(sid))
    timings: dict[str, list[float]] = {"bridge": [], "baseline": []}
    for index, (sid, uid) in enumerate(picks):
        order = (("bridge", _bridge_call, bridge), ("baseline", _baseline_call, baseline))
        for name, call, view in order if index % 2 == 0 else reversed(order):
            started = time.perf_counter()
            call(factory, view, users[uid], str(sid))
            timings[name].append((time.perf_counter() - started) * 1000)
    return {"label": label, "timings": timings, "queries": queries}


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str]) -> None:
    django.setup()
    from django.db import connection

    if is_quick(argv):
        from tests.bench.db import bench_database

        with bench_database() as label:
            _, _, users, conversations, per = QUICK_DATASET
            _load(users, conversations, per)
            print(
                f"quick: {conversations * per:,} messages, {conversations} conversations, {users} users; {label}",
                flush=True,
            )
            requests = int_option(argv, "requests", 20)
            _report([_measure(QUICK_DATASET[0], requests)], requests)
        return
    if connection.vendor != "postgresql":
        raise Skipped(
            "the bridge benchmark needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test "
            "(--quick runs on SQLite too)"
        )
    from django.test.utils import setup_test_environment, teardown_test_environment

    requests = int_option(argv, "requests", 300)
    setup_test_environment(debug=False)
    results = []
    try:
        for label, suffix, users, conversations, per in DATASETS:
            name = _database_name(suffix)
            _ensure_database(name)
            original = _use_database(name)
            try:
                spent = _load(users, conversations, per)
                note = f"loaded in {spent:.0f} s" if spent else "reused"
                with connection.cursor() as cursor:
                    cursor.execute("SHOW server_version")
                    version = cursor.fetchone()[0].split()[0]
                print(
                    f"{label}: {conversations * per:,} messages, {conversations:,} conversations, "
                    f"{users:,} users ({note}); PostgreSQL {version}",
                    flush=True,
                )
                results.append(_measure(label, requests))
            finally:
                _use_database(original)
    finally:
        teardown_test_environment()
    _report(results, requests)


def _report(results: list[dict[str, Any]], requests: int) -> None:
    out = io.StringIO()
    out.write(f"\nLatest {PAGE} messages of a conversation, {requests} requests per view, ms per request\n\n")
    out.write("| data set | bridge median | bridge p95 | ListAPIView median | ListAPIView p95 | ratio (median) |\n")
    out.write("|---|---:|---:|---:|---:|---:|\n")
    medians = {}
    for result in results:
        t = result["timings"]
        bm, lm = statistics.median(t["bridge"]), statistics.median(t["baseline"])
        medians[result["label"]] = (bm, lm)
        out.write(
            f"| {result['label']} | {bm:.2f} | {_p(t['bridge'], 0.95):.2f} | {lm:.2f} | "
            f"{_p(t['baseline'], 0.95):.2f} | {bm / lm:.2f}x |\n"
        )
    if len(results) > 1:
        first, last = results[0]["label"], results[-1]["label"]
        small, large = medians[first], medians[last]
        out.write(
            f"\nGrowth {first} -> {last} (median): bridge {large[0] / small[0]:.2f}x, "
            f"ListAPIView {large[1] / small[1]:.2f}x\n"
        )
    out.write(
        "\nSQL queries per request (page size 10 / 50 / 100)\n\n| data set | bridge | ListAPIView |\n|---|---|---|\n"
    )
    for result in results:
        q = result["queries"]
        out.write(
            f"| {result['label']} | {' / '.join(str(q[k][0]) for k in sorted(q))} | "
            f"{' / '.join(str(q[k][1]) for k in sorted(q))} |\n"
        )
    print(out.getvalue(), flush=True)
