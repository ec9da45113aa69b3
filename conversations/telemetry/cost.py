"""What tokens cost: the price of a model's prompt and completion tokens, in USD
(docs/observability.md, "Usage and cost").

Prices come from ``DJANGO_AI["MODEL_COSTS"]`` first (USD per million tokens:
``{"gpt-4o": {"input": 2.5, "output": 10}}``), else from litellm's bundled price list
(``litellm.model_cost``: USD per token) when litellm is already imported by the agent's code or
the LLM loop. This module never imports litellm: importing it may fetch the price list over the
network (unless ``LITELLM_LOCAL_MODEL_COST_MAP`` is set), and a price is not worth a second of
import or a request. A model found in neither has no price: its cost is None, not 0.

Amounts are ``Decimal`` rounded to 8 places, the precision of the session's ``cost`` column.
"""

from __future__ import annotations

import sys
from decimal import Decimal, localcontext
from typing import Any

from ..conf import ai_settings

__all__ = ["UNKNOWN_MODEL", "cost_of", "model_prices"]

#: The model a usage counts under when it names none and the agent has no ``model`` attribute.
UNKNOWN_MODEL = "unknown"

#: The cost column's precision (``ConversationSession.cost``: 8 decimal places).
QUANTUM = Decimal("0.00000001")

MILLION = Decimal(1_000_000)


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    number = Decimal(str(value))
    return number if number.is_finite() and number >= 0 else None


def _configured(model: str) -> tuple[Decimal, Decimal] | None:
    costs = ai_settings.MODEL_COSTS
    entry = costs.get(model) if isinstance(costs, dict) else None
    if not isinstance(entry, dict):
        return None
    prices = _decimal(entry.get("input")), _decimal(entry.get("output"))
    if prices[0] is None or prices[1] is None:
        return None  # a malformed entry: the system check django_ai.E031 says so at start-up
    return prices[0] / MILLION, prices[1] / MILLION


def _litellm(model: str) -> tuple[Decimal, Decimal] | None:
    module = sys.modules.get("litellm")
    # vars(): the module's own globals, not its lazy __getattr__ (which may import more).
    table = vars(module).get("model_cost") if module is not None else None
    if not isinstance(table, dict):
        return None
    names = [model]
    if "/" in model:
        names.append(model.split("/", 1)[1])  # "openai/gpt-4o" is listed as "gpt-4o"
    for name in names:
        entry = table.get(name)
        if isinstance(entry, dict):
            prices = _decimal(entry.get("input_cost_per_token")), _decimal(entry.get("output_cost_per_token"))
            if prices[0] is not None and prices[1] is not None:
                return prices[0], prices[1]
    return None


def model_prices(model: str) -> tuple[Decimal, Decimal] | None:
    """USD per prompt token and per completion token of ``model``, or None when it has no price."""
    if not isinstance(model, str) or not model:
        return None
    return _configured(model) or _litellm(model)


def cost_of(model: str, prompt_tokens: int | float, completion_tokens: int | float) -> Decimal | None:
    """What ``prompt_tokens`` and ``completion_tokens`` of ``model`` cost in USD (8 decimal
    places), or None when the model has no price (neither in MODEL_COSTS nor in litellm's list)."""
    prices = model_prices(model)
    if prices is None:
        return None
    prompt, completion = _decimal(prompt_tokens) or Decimal(0), _decimal(completion_tokens) or Decimal(0)
    with localcontext() as exact:
        exact.prec = 60  # the default 28 digits cannot quantize a huge product to 8 places
        return (prices[0] * prompt + prices[1] * completion).quantize(QUANTUM)
