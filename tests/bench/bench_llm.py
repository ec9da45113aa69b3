"""The declared tool loop (``LLMAgent``) against a hand-written one, and ``history()`` by length.

Loop rows: full turns through ``ConversationService.send_message`` with the same scripted
``FakeModel`` (a callable reply: tool calls for the first ``R`` model rounds, 2 parallel calls a
round, then the final text) and the same two tools as the demo's sales agent (a plain method and
a ``@with_context()`` one). The hand-written agent is the pre-issue ``agents/sales.py`` loop
(``git show a7a497b:agents/sales.py``): ``tool_schemas``, ``acompletion(stream=True)``,
``ToolCallCollector``, ``adispatch_tool_call`` one call after the other, a ``tool_call`` widget per
call, ``report_usage``. The declared agent is ``LLMAgent`` with ``tools = [...]``: tool steps as
rows, parallel calls, the three tool events, the system prompt plus ``self.history()``. Every turn
runs in a new conversation, so both send the model the same messages. Each row runs ``--turns``
turns (default 50) three times, one turn of each row after the other; the table gives the median
of those turns and the SQL queries of one turn; the summary subtracts the text-only rows to give
the cost of one tool round.

History rows: ``history()`` of a conversation of 10, 100 and 1,000 messages (turns cloned from
real turns of the declared agent: three of four plain, one with a tool step), unbounded and with
``LLMAgent``'s default bounds, against the baseline of reading every row of the conversation as
the unbounded call's one query does (``.values()``); a bounded call reads only the newest rows.

``./dev bench llm`` (SQLite file); ``DATABASE_URL=postgres://... ./dev bench llm``;
``--turns=20``, ``--rounds=3`` (tool rounds of the long rows). ``--quick``: 3 turns per row, one
round, each history measured a few times.
"""

from __future__ import annotations

import re
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import django

from tests.bench.options import int_option, is_quick

CALLS_PER_ROUND = 2
FINAL_TEXT = "Priority support is available with your plan, at 30 EUR a month."


def main(argv: list[str]) -> None:
    django.setup()
    from tests.bench.db import bench_database

    quick = is_quick(argv)
    turns = int_option(argv, "turns", 3 if quick else 50)
    tool_rounds = int_option(argv, "rounds", 3)
    repeats = 1 if quick else 3
    with bench_database() as label:
        _run(label, turns, tool_rounds, repeats, (10, 100, 1000))


def _run(label: str, turns: int, tool_rounds: int, repeats: int, sizes: tuple[int, ...]) -> None:
    import platform

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService
    from django_ai.conversations.testing import FakeModel

    hand_written, declared, brain = _agents()
    register_agent("bench/llm-hand-written", hand_written)
    register_agent("bench/llm-declared", declared)

    rows: list[tuple[str, str, int]] = [
        ("hand-written loop, text only", "bench/llm-hand-written", 0),
        ("declared LLMAgent, text only", "bench/llm-declared", 0),
        (f"hand-written loop, {tool_rounds} tool rounds", "bench/llm-hand-written", tool_rounds),
        (f"declared LLMAgent, {tool_rounds} tool rounds", "bench/llm-declared", tool_rounds),
    ]

    def sessions(path: str, count: int) -> list[Any]:
        context = {"user_id": 7, "account_tier": "premium"}
        return [ConversationService.create_session(path, context=context) for _ in range(count)]

    def turn(session: Any, rounds: int) -> None:
        brain.use(FakeModel(replies=[brain] * (rounds + 1)))
        result = ConversationService.send_message(session.pk, f"Can I get priority support? rounds={rounds}")
        if result["status"] != "success" or not result["response"].endswith(FINAL_TEXT):
            raise RuntimeError(f"benchmark turn failed: {result}")

    for _, path, rounds in rows:  # warm up: imports, schemas, prepared statements
        for session in sessions(path, 3):
            turn(session, rounds)

    # Turn by turn, the rows in turn: the load of a shared machine changes within seconds, and
    # this way it weighs on every row alike; the median of all turns leaves out the spikes.
    timings: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    for _ in range(repeats):
        fresh = {name: sessions(path, turns) for name, path, _ in rows}
        for n in range(turns):
            for name, _, rounds in rows:
                started = time.perf_counter()
                turn(fresh[name][n], rounds)
                timings[name].append(time.perf_counter() - started)

    queries: dict[str, list[str]] = {}
    for name, path, rounds in rows:
        [session] = sessions(path, 1)
        with CaptureQueriesContext(connection) as captured:
            turn(session, rounds)
        queries[name] = [q["sql"] for q in captured.captured_queries]
    model_calls = brain.calls

    print(
        f"database: {label}; Python {platform.python_version()}; Django {django.get_version()}; "
        f"{turns * repeats} turns per row, interleaved; {CALLS_PER_ROUND} parallel tool calls per tool round\n"
    )
    print("| turn (new conversation each) | ms/turn (median) | SQL queries/turn | of which |")
    print("|---|---:|---:|---|")
    per_turn = {name: statistics.median(timings[name]) for name, _, _ in rows}
    for name, _, _ in rows:
        kinds = Counter(_kind(sql) for sql in queries[name])
        detail = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
        print(f"| {name} | {per_turn[name] * 1000:.2f} | {len(queries[name])} | {detail} |")

    if tool_rounds:
        names = [name for name, _, _ in rows]

        def per_round(short: str, long: str) -> tuple[float, float]:
            ms = (per_turn[long] - per_turn[short]) / tool_rounds * 1000
            return ms, (len(queries[long]) - len(queries[short])) / tool_rounds

        hand_ms, hand_queries = per_round(names[0], names[2])
        ours_ms, ours_queries = per_round(names[1], names[3])
        print()
        print("| one tool round (long row minus text-only row, / rounds) | ms | SQL queries |")
        print("|---|---:|---:|")
        print(f"| hand-written loop | {hand_ms:.2f} | {hand_queries:g} |")
        print(f"| declared LLMAgent | {ours_ms:.2f} | {ours_queries:g} |")
        print(f"| declared minus hand-written | {ours_ms - hand_ms:+.2f} | {ours_queries - hand_queries:+g} |")
    print(f"\n(model calls answered by the script: {model_calls})\n")

    _history_rows(declared, brain, sizes, repeats)


def _history_rows(declared: type, brain: _Brain, sizes: tuple[int, ...], repeats: int) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_ai.conversations.models import ConversationMessage

    templates = _template_turns(brain)
    fields = ("id", "message_type", "content", "processing_status", "reply_to_id", "component_data")

    print("| history of | measured ms | baseline ms (reading every row) | ratio | queries | messages sent |")
    print("|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        session, current = _conversation(templates, size)
        agent = declared(context=declared.Context(user_id=7, account_tier="premium"), session=session, message=current)

        def baseline(session: Any = session) -> Any:
            return list(
                ConversationMessage.objects.filter(session=session, message_type__in=("user", "agent", "tool"))
                .order_by("timestamp", "id")
                .values(*fields)
            )

        variants: list[tuple[str, Callable[[], Any]]] = [
            ("unbounded", lambda agent=agent: agent.history()),
            (
                f"max_messages={declared.history_messages}, max_tokens={declared.history_tokens}",
                lambda agent=agent: agent.history(
                    max_messages=declared.history_messages, max_tokens=declared.history_tokens
                ),
            ),
        ]
        number = max(3, 1000 // size) if repeats > 1 else 2
        best = _best_of([baseline, *(call for _, call in variants)], number, 5 if repeats > 1 else 1)
        for (variant, call), measured in zip(variants, best[1:], strict=True):
            with CaptureQueriesContext(connection) as captured:
                sent = call()
            print(
                f"| {size} messages, {variant} | {measured:.3f} | {best[0]:.3f} | {measured / best[0]:.1f}x | "
                f"{len(captured.captured_queries)} | {len(sent)} |"
            )


def _best_of(funcs: list[Callable[[], Any]], number: int, repeats: int) -> list[float]:
    """The best ms per call of each function, timed one after the other in each repeat."""
    best = [float("inf")] * len(funcs)
    for _ in range(repeats):
        for i, func in enumerate(funcs):
            started = time.perf_counter()
            for _ in range(number):
                func()
            best[i] = min(best[i], (time.perf_counter() - started) / number * 1000)
    return best


def _template_turns(brain: _Brain) -> list[list[Any]]:
    """The rows of two real turns of the declared agent: one plain, one with a round of tool steps."""
    from django_ai.conversations.models import ConversationMessage
    from django_ai.conversations.service import ConversationService
    from django_ai.conversations.testing import FakeModel

    templates = []
    for rounds in (0, 1):
        brain.use(FakeModel(replies=[brain] * (rounds + 1)))
        session = ConversationService.create_session(
            "bench/llm-declared", context={"user_id": 7, "account_tier": "premium"}
        )
        result = ConversationService.send_message(session.pk, f"Can I get priority support? rounds={rounds}")
        if result["status"] != "success":
            raise RuntimeError(f"template turn failed: {result}")
        rows = list(ConversationMessage.objects.filter(session=session).order_by("timestamp", "id"))
        templates.append([r for r in rows if r.message_type in ("user", "agent", "tool")])
    plain, with_tool = templates
    if [r.message_type for r in with_tool].count("tool") != CALLS_PER_ROUND:
        raise RuntimeError(f"the template turn has no tool steps: {[r.message_type for r in with_tool]}")
    return [plain, plain, plain, with_tool]


def _conversation(templates: list[list[Any]], size: int) -> tuple[Any, Any]:
    """A conversation of ``size`` messages: cloned turns, then the message being answered."""
    from django.utils import timezone

    from django_ai.conversations.models import ConversationMessage, ConversationSession

    session = ConversationSession.objects.create(
        agent_path="bench/llm-declared", context={"user_id": 7, "account_tier": "premium"}
    )
    start = timezone.now() - timedelta(days=1)
    made: list[Any] = []
    n = 0
    while len(made) < size - 1:
        template = templates[n % len(templates)]
        n += 1
        if len(made) + len(template) > size - 1:
            template = templates[0][: size - 1 - len(made)]
        ids = {row.pk: uuid.uuid4() for row in template}
        for row in template:
            made.append(
                ConversationMessage(
                    id=ids[row.pk],
                    session=session,
                    message_type=row.message_type,
                    content=row.content,
                    component_type=row.component_type,
                    component_data=row.component_data,
                    processing_status=row.processing_status,
                    reply_to_id=ids.get(row.reply_to_id),
                    stream_sequence=row.stream_sequence,
                    metadata=row.metadata,
                    timestamp=start + timedelta(milliseconds=len(made)),
                    started_at=row.started_at,
                    finished_at=row.finished_at,
                )
            )
    current = ConversationMessage(
        session=session,
        message_type="user",
        content="And what about team seats?",
        processing_status="processing",
        timestamp=start + timedelta(milliseconds=len(made)),
    )
    ConversationMessage.objects.bulk_create([*made, current], batch_size=500)
    return session, current


class _Brain:
    """The scripted model: tool calls for the first ``rounds=N`` model rounds, then FINAL_TEXT."""

    def __init__(self) -> None:
        self.calls = 0
        self.model: Any = None

    def use(self, model: Any) -> None:
        """The FakeModel of the next turn (a new one per turn: its script is that turn's)."""
        self.model = model

    def __call__(self, request: Any) -> Any:
        from django_ai.conversations.testing import FakeReply, FakeToolCall

        self.calls += 1
        messages = request.messages
        last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        wanted = int(re.search(r"rounds=(\d+)", messages[last_user]["content"])[1])
        done = sum(1 for m in messages[last_user:] if m.get("role") == "assistant" and m.get("tool_calls"))
        if done < wanted:
            return FakeReply(
                text="Let me check. " if done == 0 else "",
                tool_calls=[
                    FakeToolCall("search_products", {"query": "support"}),
                    FakeToolCall("check_eligibility", {"product_id": "priority-support"}),
                ][:CALLS_PER_ROUND],
            )
        return FINAL_TEXT


def _agents() -> tuple[type, type, _Brain]:
    from pydantic import BaseModel

    from django_ai.conversations import ConversationAgent
    from django_ai.conversations.context import ResponseStream, display_widget, report_usage
    from django_ai.conversations.decorators import with_context
    from django_ai.conversations.llm import LLMAgent
    from django_ai.conversations.testing import FakeModel
    from django_ai.conversations.tools import ToolCallCollector, ToolCallError, adispatch_tool_call, tool_schemas

    brain = _Brain()
    brain.use(FakeModel(replies=[brain]))

    catalogue = {
        "priority-support": {"name": "Priority support", "price": "30 EUR / month", "tiers": ["premium"]},
        "team-seats": {"name": "Extra team seats", "price": "5 EUR / seat / month", "tiers": ["basic", "premium"]},
    }

    class Tools(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 0
            account_tier: str = "basic"

        def search_products(self, query: str) -> list[dict[str, str]]:
            """Search the product catalogue.

            Args:
                query: Words to look for in product names and ids.
            """
            return [
                {"product_id": pid, "name": p["name"], "price": p["price"]}
                for pid, p in catalogue.items()
                if query in pid or query in p["name"].lower()
            ]

        @with_context()
        def check_eligibility(self, product_id: str, user_id: int, account_tier: str) -> str:
            """Whether the customer's account may use a product.

            Args:
                product_id: The product's id, as search_products returns it.
            """
            product = catalogue.get(product_id)
            if product is None:
                return f"There is no product {product_id!r}."
            if account_tier in product["tiers"]:
                return f"User {user_id} can access {product_id}."
            return f"Upgrade required: {product_id} needs the {' or '.join(product['tiers'])} plan."

    system_prompt = "You are the sales assistant of a software company."

    class HandWritten(Tools):
        """The pre-issue agents/sales.py loop (a7a497b), with the same model and tools."""

        async def get_response(self, message, request=None, **kwargs):
            tools: list[Callable[..., Any]] = [self.search_products, self.check_eligibility]
            schemas = tool_schemas(tools)
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": message},
            ]
            stream: ResponseStream | None = None
            try:
                for _ in range(8):
                    response = await brain.model.acompletion(
                        model="bench", messages=messages, tools=schemas, stream=True
                    )
                    collector = ToolCallCollector()
                    text = []
                    async for chunk in response:
                        if not chunk.choices:
                            continue
                        delta = chunk.choices[0].delta
                        if getattr(delta, "content", None):
                            if stream is None:
                                stream = ResponseStream().start()
                            stream.write(delta.content)
                            text.append(delta.content)
                        collector.add(delta)
                        usage = getattr(chunk, "usage", None)
                        if usage:
                            report_usage(
                                prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                                completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                            )
                    if not collector:
                        break
                    messages.append(
                        {"role": "assistant", "content": "".join(text) or None, "tool_calls": collector.calls}
                    )
                    for call in collector.calls:
                        try:
                            done = await adispatch_tool_call(tools, call)
                        except ToolCallError as exc:
                            messages.append(exc.as_message())
                            continue
                        display_widget(
                            "tool_call", {"name": done.name, "arguments": done.arguments, "result": done.result}
                        )
                        messages.append(done.as_message())
            finally:
                if stream is not None:
                    stream.end()
            return stream.content if stream is not None else "I have nothing to add."

    class Declared(Tools, LLMAgent):
        model = brain.model  # the declaration needs one; get_model gives the turn's

        def get_model(self) -> Any:
            return brain.model

        system_prompt = "You are the sales assistant of a software company."
        tools = ["search_products", "check_eligibility"]
        max_tool_rounds = 8

    return HandWritten, Declared, brain


def _kind(sql: str) -> str:
    word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    if word in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"):
        return "transaction"
    return word
