"""Cost of ``@with_context()`` injection and of validated tool-call dispatch.

Each row runs the measured code and its baseline in the same process: a plain method call with
the context values passed by hand, and ``json.loads`` + a direct call for dispatch.
``--quick``: a hundredth of the calls, one repeat.
"""

from __future__ import annotations

import asyncio
import json
import timeit
from typing import Literal

import django

from tests.bench.options import is_quick


def main(argv: list[str]) -> None:
    django.setup()
    scale, repeat = (100, 1) if is_quick(argv) else (1, 5)
    from pydantic import BaseModel

    from django_ai.conversations import ConversationAgent
    from django_ai.conversations.decorators import with_context
    from django_ai.conversations.tools import _build_spec, adispatch_tool_call, dispatch_tool_call, tool_schema

    class Agent(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 7
            account_tier: str = "premium"

        @with_context()
        def check(self, product_id: str, user_id: int, account_tier: str) -> str:
            return product_id if account_tier == "premium" else ""

        def check_plain(self, product_id: str, user_id: int, account_tier: str) -> str:
            return product_id if account_tier == "premium" else ""

        @with_context()
        def search(
            self,
            query: str,
            user_id: int,
            tags: list[str] | None = None,
            sort: Literal["price", "date"] = "date",
            limit: int = 10,
        ) -> list[str]:
            return [query] * min(limit, 2)

        def search_plain(
            self, query: str, user_id: int, tags: list[str] | None = None, sort: str = "date", limit: int = 10
        ) -> list[str]:
            return [query] * min(limit, 2)

        @with_context()
        async def lookup(self, code: str, user_id: int) -> str:
            return code

        async def lookup_plain(self, code: str, user_id: int) -> str:
            return code

    agent = Agent()
    ctx = agent.context
    tools = [agent.check, agent.search, agent.lookup]
    search_args = '{"query": "boots", "tags": ["leather", "brown"], "sort": "price", "limit": 5}'
    tool_schema(agent.search)  # warm the per-function cache, as the first request of a process does

    def per_call(stmt, number):
        number = max(1, number // scale)
        best = min(timeit.repeat(stmt, number=number, repeat=repeat))
        return best / number * 1e6

    async def async_loop(fn, number):
        for _ in range(number):
            await fn()

    def per_async_call(make, number):
        number = max(1, number // scale)
        best = min(asyncio.run(_timed(async_loop, make, number)) for _ in range(repeat))
        return best / number * 1e6

    rows = []
    n = 50_000
    rows.append(
        (
            "with_context call (2 injected)",
            per_call(lambda: agent.check(product_id="p"), n),
            per_call(lambda: agent.check_plain("p", ctx.user_id, ctx.account_tier), n),
        )
    )
    rows.append(
        (
            "async with_context call",
            per_async_call(lambda: agent.lookup(code="c"), n),
            per_async_call(lambda: agent.lookup_plain("c", ctx.user_id), n),
        )
    )
    n = 20_000

    def baseline_dispatch():
        args = json.loads(search_args)
        return agent.search_plain(args["query"], ctx.user_id, args["tags"], args["sort"], args["limit"])

    rows.append(
        (
            "dispatch_tool_call (JSON + pydantic)",
            per_call(lambda: dispatch_tool_call(tools, "search", search_args), n),
            per_call(baseline_dispatch, n),
        )
    )

    async def baseline_async():
        args = json.loads('{"code": "x"}')
        return await agent.lookup_plain(args["code"], ctx.user_id)

    rows.append(
        (
            "adispatch_tool_call (async tool)",
            per_async_call(lambda: adispatch_tool_call(tools, "lookup", '{"code": "x"}'), n),
            per_async_call(baseline_async, n),
        )
    )
    rows.append(
        (
            "tool_schema, cached vs first build",
            per_call(lambda: tool_schema(agent.search), 2_000),
            per_call(lambda: _build_spec(agent.search), 200),
        )
    )

    print("| operation | measured µs/call | baseline µs/call | ratio |")
    print("|---|---:|---:|---:|")
    for name, measured, baseline in rows:
        ratio = measured / baseline
        print(
            f"| {name} | {measured:.2f} | {baseline:.2f} | {ratio:.1f}x |"
            if ratio >= 1
            else f"| {name} | {measured:.2f} | {baseline:.2f} | {ratio:.3f}x |"
        )
    print()
    print("Baselines: a plain method given the context values by hand; json.loads + a direct call;")
    print("for tool_schema, building the pydantic model and JSON schema (done once per function).")


async def _timed(loop, make, number):
    import time

    start = time.perf_counter()
    await loop(make, number)
    return time.perf_counter() - start
