"""Usage and cost: a turn's tokens by model, priced; the sums per owner; the totals by agent and
model of the turns that ended in a window (docs/observability.md, "Usage and cost").

A turn's usage lives in two places. The agent message's ``metrics`` (the system notice's, when a
turn failed without a reply) get ``models`` (``{model: {"prompt_tokens", "completion_tokens",
"cost"}}``, the whole reply's, earlier runs of a reply resumed after an approval included) and
``cost`` (USD, the sum of the costs known); the session row's ``prompt_tokens``,
``completion_tokens`` and ``cost`` grow by each run's own usage in the transaction that records
the run (``turns.outcome``). So the session's sums count every run once, and a reply's metrics
say what the whole reply took.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.utils import timezone

from .constants import MessageType
from .models import ConversationMessage, ConversationSession
from .telemetry.cost import QUANTUM, cost_of

logger = logging.getLogger("django_ai.conversations.usage")

#: The most one run of a turn may cost (USD) for its cost to be counted.
MAX_RUN_COST = Decimal(1_000_000)

__all__ = [
    "ModelUsage",
    "UsageReport",
    "UsageRow",
    "merge_models",
    "models_metrics",
    "price_usage",
    "usage_by_agent_and_model",
    "usage_by_owner",
]


@dataclass
class ModelUsage:
    """One model's tokens and cost (USD; None when the model has no price and none was reported)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal | None = None

    def add(self, other: ModelUsage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        if other.cost is not None:
            self.cost = other.cost if self.cost is None else self.cost + other.cost

    def as_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": None if self.cost is None else float(self.cost),
        }


def _tokens(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        return 0
    return round(value)


def _cost(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    number = Decimal(str(value))
    return number.quantize(QUANTUM) if number.is_finite() and number >= 0 else None


def price_usage(model_usage: Mapping[str, Mapping[str, Any]]) -> dict[str, ModelUsage]:
    """A run's usage by model (``TurnState.model_usage``), priced: a cost the agent reported for a
    model wins; else ``telemetry.cost.cost_of`` (MODEL_COSTS, litellm's list); else None. A cost
    over MAX_RUN_COST (a price off by millions) counts as unknown, with a warning: the session's
    column could not hold it, and the turn must still be recorded."""
    priced = {}
    for model, numbers in model_usage.items():
        usage = ModelUsage(_tokens(numbers.get("prompt_tokens")), _tokens(numbers.get("completion_tokens")))
        reported = _cost(numbers.get("cost"))
        usage.cost = reported if reported is not None else cost_of(model, usage.prompt_tokens, usage.completion_tokens)
        if usage.cost is not None and usage.cost > MAX_RUN_COST:
            logger.warning(
                "The tokens of model %r in one turn would cost %s USD, more than %s: the cost is left unknown. "
                "Check its prices in DJANGO_AI['MODEL_COSTS'] (USD per million tokens).",
                model,
                usage.cost,
                MAX_RUN_COST,
            )
            usage.cost = None
        priced[model] = usage
    return priced


def parse_models(value: Any) -> dict[str, ModelUsage]:
    """The ``models`` of stored ``metrics`` back as :class:`ModelUsage` (what is malformed is skipped)."""
    if not isinstance(value, dict):
        return {}
    return {
        str(model): ModelUsage(
            _tokens(numbers.get("prompt_tokens")), _tokens(numbers.get("completion_tokens")), _cost(numbers.get("cost"))
        )
        for model, numbers in value.items()
        if isinstance(numbers, dict)
    }


def merge_models(*parts: Mapping[str, ModelUsage]) -> dict[str, ModelUsage]:
    """The sum by model of several runs' usage."""
    merged: dict[str, ModelUsage] = {}
    for part in parts:
        for model, usage in part.items():
            merged.setdefault(model, ModelUsage()).add(usage)
    return merged


def total(models: Mapping[str, ModelUsage]) -> ModelUsage:
    """All models together (cost: the sum of the costs known, None when none is)."""
    summed = ModelUsage()
    for usage in models.values():
        summed.add(usage)
    return summed


def models_metrics(models: Mapping[str, ModelUsage]) -> dict[str, Any]:
    """What a reply's ``metrics`` get: ``models``, and ``cost`` when a cost is known; {} without usage."""
    if not models:
        return {}
    metrics: dict[str, Any] = {"models": {model: usage.as_json() for model, usage in models.items()}}
    cost = total(models).cost
    if cost is not None:
        metrics["cost"] = float(cost)
    return metrics


def usage_by_owner(
    sessions: QuerySet[ConversationSession] | None = None,
) -> QuerySet[Any, Any]:
    """The conversations' sums per owner, most expensive first: rows (dicts) with ``user``
    (the user's pk, None for anonymous owners), ``anonymous_id``, ``conversations``,
    ``prompt_tokens``, ``completion_tokens`` and ``cost`` (Decimal). ``sessions`` narrows the
    conversations counted (default: all, those their owners deleted too: their tokens were spent)."""
    sessions = ConversationSession.objects.all() if sessions is None else sessions
    return (
        sessions.order_by()
        .values("user", "anonymous_id")
        .annotate(
            conversations=Count("pk"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
        .order_by("-cost", "-prompt_tokens", "user", "anonymous_id")
    )


@dataclass
class UsageRow:
    """Totals of one agent and model over a window. ``model`` is None for the turns that reported no
    usage; ``cost`` is None when no cost of the row is known."""

    agent: str
    model: str | None
    turns: int = 0
    usage: ModelUsage = field(default_factory=ModelUsage)

    def as_json(self) -> dict[str, Any]:
        return {"agent": self.agent, "model": self.model, "turns": self.turns, **self.usage.as_json()}


def _turn_models(metrics: Mapping[str, Any]) -> dict[str, ModelUsage]:
    models = parse_models(metrics.get("models"))
    if not models and (metrics.get("prompt_tokens") or metrics.get("completion_tokens")):
        # A reply recorded before usage was kept by model.
        models = {
            "unknown": ModelUsage(_tokens(metrics.get("prompt_tokens")), _tokens(metrics.get("completion_tokens")))
        }
    return models


@dataclass
class UsageReport:
    """:func:`usage_by_agent_and_model`'s answer: its rows, the number of turns (a turn that used
    two models is in two rows, and counts once here) and the totals of all."""

    rows: list[UsageRow]
    turns: int
    total: ModelUsage

    def as_json(self) -> dict[str, Any]:
        return {"rows": [row.as_json() for row in self.rows], "total": {"turns": self.turns, **self.total.as_json()}}


def usage_by_agent_and_model(since: datetime, until: datetime | None = None) -> UsageReport:
    """Totals by agent and model of the turns that ended from ``since`` to ``until`` (default now),
    read from their replies' ``metrics`` (the agent message's, or the notice's of a turn that failed
    without one). A user message answered more than once (the admin's re-run of a failed one)
    counts as one turn, that of its latest run (the reply whose ``metrics["attempt"]`` is the
    message's); the tokens and cost of its earlier runs count too (they were spent, and the
    session's sums have them)."""
    until = until or timezone.now()
    replies: Iterable[tuple[str, Any, Any]] = (
        ConversationMessage.objects.filter(
            message_type__in=[MessageType.AGENT, MessageType.SYSTEM],
            reply_to__finished_at__gte=since,
            reply_to__finished_at__lt=until,
        )
        .exclude(metrics={})
        .values_list("session__agent_path", "reply_to__attempts", "metrics")
        .order_by()
        .iterator()
    )
    rows: dict[tuple[str, str | None], UsageRow] = {}
    turns, everything = 0, ModelUsage()
    for agent, attempts, metrics in replies:
        if not isinstance(metrics, dict):
            continue
        latest = metrics.get("attempt", attempts) == attempts
        models = _turn_models(metrics)
        if not latest and not models:
            continue
        turns += latest
        for model, usage in models.items() or [(None, ModelUsage())]:
            row = rows.setdefault((agent, model), UsageRow(agent, model))
            row.turns += latest
            row.usage.add(usage)
            everything.add(usage)
    ordered = sorted(rows.values(), key=lambda row: (row.agent, row.model is None, row.model or ""))
    return UsageReport(ordered, turns, everything)
