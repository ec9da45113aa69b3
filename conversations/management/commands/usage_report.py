"""``manage.py usage_report``: the tokens and cost of the turns that ended in the last days, by agent
and model (docs/observability.md, "Usage and cost")."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ...usage import ModelUsage, usage_by_agent_and_model

#: The longest window, in days (ten years).
MAX_DAYS = 3650


class Command(BaseCommand):
    help = (
        "Totals by agent and model (turns, prompt and completion tokens, cost in USD) of the turns that "
        "ended in the last --days days (default 1), read from their replies' metrics. A turn that "
        "reported no usage counts in a row of its agent with model '-'; a cost of '-' is unknown (no "
        "price for the model in MODEL_COSTS or litellm's list, and none reported)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, default=1.0, metavar="N", help="The last N days (default 1).")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print JSON instead of a table.")

    def handle(self, *args: Any, days: float, as_json: bool, **options: Any) -> None:
        if not 0 < days <= MAX_DAYS:
            raise CommandError(f"--days must be more than 0 and at most {MAX_DAYS}.")
        until = timezone.now()
        since = until - timedelta(days=days)
        report = usage_by_agent_and_model(since, until)
        if as_json:
            payload = {"since": since.isoformat(), "until": until.isoformat(), **report.as_json()}
            self.stdout.write(json.dumps(payload, indent=2))
            return
        self.stdout.write(f"Turns ended from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} {until:%Z}")
        if not report.rows:
            self.stdout.write("No turn ended in this window.")
            return
        table: list[tuple[str, ...]] = [("agent", "model", "turns", "prompt tokens", "completion tokens", "cost (USD)")]
        table += [_line(row.agent, row.model or "-", row.turns, row.usage) for row in report.rows]
        table.append(_line("total", "", report.turns, report.total))
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
        rule = "  ".join("-" * width for width in widths)
        for number, line in enumerate(table):
            if number == len(table) - 1:
                self.stdout.write(rule)
            cells = [
                cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            ]
            self.stdout.write("  ".join(cells).rstrip())
            if number == 0:
                self.stdout.write(rule)


def _line(agent: str, model: str, turns: int, usage: ModelUsage) -> tuple[str, ...]:
    cost = "-" if usage.cost is None else f"{usage.cost:.6f}"
    return (agent, model, str(turns), f"{usage.prompt_tokens:,}", f"{usage.completion_tokens:,}", cost)
