"""A tool-calling agent, declared: an LLM chooses tools, ``@with_context`` fills what the
conversation knows, and a discount waits for the user's approval before it is applied.

Offline (the default) the "LLM" is the scripted :class:`~django_ai.conversations.testing.FakeModel`
(see :func:`offline_brain`), so the demo and the tests need no network and no key; it reads the
conversation's history as a model would (a follow-up such as "and the other one?" works). Set
``DJANGO_AI_DEMO_MODEL`` (any litellm model name, e.g. ``gpt-4o-mini``) and the provider's key
(e.g. ``OPENAI_API_KEY``) to drive the same agent with a real model through litellm
(``pip install 'django-ai-first[llm]'``).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Literal

from pydantic import BaseModel

from django_ai.conversations.decorators import with_context
from django_ai.conversations.llm import LLMAgent
from django_ai.conversations.testing import FakeModel, FakeRequest, FakeToolCall
from django_ai.conversations.tools import requires_approval

MODEL_ENV = "DJANGO_AI_DEMO_MODEL"
MAX_TOOL_ROUNDS = 4
#: Discounts above this many percent wait for the user's approval.
APPROVAL_ABOVE_PERCENT = 10

CATALOGUE: dict[str, dict[str, Any]] = {
    "pro-features": {"name": "Pro features", "price": "€12 / month", "tiers": ["premium"]},
    "team-seats": {"name": "Extra team seats", "price": "€5 / seat / month", "tiers": ["basic", "premium"]},
    "priority-support": {"name": "Priority support", "price": "€30 / month", "tiers": ["premium"]},
    "api-access": {"name": "API access", "price": "included", "tiers": ["basic", "premium"]},
}

SYSTEM_PROMPT = (
    "You are the sales assistant of a software company. Use search_products to find products, "
    "check_eligibility before saying whether the customer may buy one, and apply_discount when the "
    "customer asks for a discount. Answer in two sentences at most."
)


class SalesAgent(LLMAgent):
    """Finds products, checks what your account may buy and applies discounts, with tools (offline
    model by default; a discount over 10 % asks for your approval first)."""

    display_name = "Sales (tools)"
    system_prompt = SYSTEM_PROMPT
    tools = ["search_products", "check_eligibility", "apply_discount"]
    max_tool_rounds = MAX_TOOL_ROUNDS

    class Context(BaseModel):
        user_id: int = 0
        account_tier: str = "basic"
        #: Discounts applied, in percent by product id.
        discounts: dict[str, int] = {}

    class StartParams(BaseModel):
        """The demo page's plan selector; the user id comes from the request, never the client."""

        tier: Literal["basic", "premium"] = "basic"

    @classmethod
    def create_context(cls, request=None, **kwargs):
        user = request.user if request and request.user.is_authenticated else None
        return cls.Context(user_id=user.id if user else 0, account_tier=kwargs.get("tier", "basic"))

    def get_model(self) -> Any:
        """A litellm model name from ``DJANGO_AI_DEMO_MODEL``, else the offline scripted model."""
        name = os.environ.get(MODEL_ENV, "").strip()
        if name:
            return name
        return FakeModel(replies=[offline_brain] * (MAX_TOOL_ROUNDS + 1), model="offline-demo")

    def search_products(self, query: str) -> list[dict[str, str]]:
        """Search the product catalogue.

        Args:
            query: Words to look for in product names and ids, e.g. "support".
        """
        words = [w for w in re.findall(r"[a-z]+", query.lower()) if len(w) > 2]
        found = [
            {"product_id": pid, "name": p["name"], "price": p["price"]}
            for pid, p in CATALOGUE.items()
            if not words or any(w in pid or w in p["name"].lower() for w in words)
        ]
        return found or [{"product_id": pid, "name": p["name"], "price": p["price"]} for pid, p in CATALOGUE.items()]

    @with_context()
    def check_eligibility(self, product_id: str, user_id: int, account_tier: str) -> str:
        """Whether the customer's account may use a product.

        Args:
            product_id: The product's id, as search_products returns it.
        """
        product = CATALOGUE.get(product_id)
        if product is None:
            return f"There is no product {product_id!r}."
        if account_tier in product["tiers"]:
            return f"User {user_id} can access {product_id}."
        return f"Upgrade required: {product_id} needs the {' or '.join(product['tiers'])} plan."

    @requires_approval(when=lambda agent, arguments: arguments["percent"] > APPROVAL_ABOVE_PERCENT)
    @with_context()
    def apply_discount(self, product_id: str, percent: int, discounts: dict[str, int]) -> str:
        """Apply a discount on a product to the customer's account.

        Args:
            product_id: The product's id, as search_products returns it.
            percent: The discount in percent, 1 to 50.
        """
        product = CATALOGUE.get(product_id)
        if product is None:
            return f"There is no product {product_id!r}."
        if not 1 <= percent <= 50:
            return "Discounts go from 1 to 50 %."
        discounts[product_id] = percent  # the Context's dict: saved with the turn
        return f"Discount applied: {percent} % off {product_id}."


#: Words of a question that name no product: the search gets what is left ("" finds everything).
SEARCH_NOISE = {
    "what", "which", "do", "does", "you", "your", "we", "sell", "offer", "offers", "product", "products",
    "catalog", "catalogue", "search", "find", "price", "prices", "have", "any", "anything", "for", "the",
    "is", "are", "of", "me", "show", "list", "all", "can", "how", "much", "cost", "costs", "there",
}  # fmt: skip
ELIGIBLE = re.compile(r"^User \d+ can access (?P<product>[\w-]+)\.$")
DISCOUNT = re.compile(r"^Discount applied: (?P<percent>\d+) % off (?P<product>[\w-]+)\.$")
UPGRADE = re.compile(r"^Upgrade required: (?P<product>[\w-]+) needs the (?P<plans>.+) plan\.$")


def offline_brain(request: FakeRequest) -> Any:
    """The scripted stand-in for an LLM: picks a tool from keywords, then words the tool's result
    for the customer (as a model would, instead of repeating it). It reads the whole conversation
    it is sent: "and the other one?" checks the product mentioned earlier and not checked yet."""
    last = request.messages[-1]
    if last.get("role") == "tool":
        return _word_result(last["content"])
    question = (request.last_user_message or "").lower()
    named = _products_in(question)
    if "discount" in question:
        product = named[0] if named else next(iter(reversed(_mentioned(request.messages))), None)
        if product is None:
            return "Which product would you like a discount on?"
        percent = re.search(r"(\d+)\s*(%|percent)", question)
        return FakeToolCall("apply_discount", {"product_id": product, "percent": int(percent[1]) if percent else 15})
    if named:
        return FakeToolCall("check_eligibility", {"product_id": named[0]})
    if re.search(r"\bother\b", question):
        checked = _checked(request.messages)
        left = [p for p in _mentioned(request.messages) if p not in checked]
        if left:
            return FakeToolCall("check_eligibility", {"product_id": left[0]})
        return "Which product do you mean? Ask me what we sell."
    if re.search(r"\b(product|products|offer|sell|catalog|catalogue|search|find|price|prices)\b", question):
        words = [w for w in re.findall(r"[a-z]+", question) if len(w) > 2 and w not in SEARCH_NOISE]
        return FakeToolCall("search_products", {"query": " ".join(words)})
    return (
        "I can look through our products (“what do you sell?”), check whether your account may use "
        "one (“can I use pro-features?”) or apply a discount (“a 20 % discount on team-seats”)."
    )


def _products_in(text: str) -> list[str]:
    """Product ids a text names (by id or by id with spaces), in the order they appear."""
    found = []
    for pid in CATALOGUE:
        positions = [i for i in (text.find(pid), text.find(pid.replace("-", " "))) if i >= 0]
        if positions:
            found.append((min(positions), pid))
    return [pid for _, pid in sorted(found)]


def _mentioned(messages: list[Any]) -> list[str]:
    """Products the conversation has mentioned so far (user messages, tool arguments and results)."""
    seen: list[str] = []
    for message in messages:
        if message.get("role") == "system":
            continue
        texts = [str(message.get("content") or "").lower()]
        texts += [c["function"]["arguments"] for c in message.get("tool_calls") or ()]
        for text in texts:
            seen += [p for p in _products_in(text) if p not in seen]
    return seen


def _checked(messages: list[Any]) -> set[str]:
    """Products check_eligibility was already called for."""
    checked = set()
    for message in messages:
        for call in message.get("tool_calls") or ():
            if call["function"]["name"] == "check_eligibility":
                checked.add(json.loads(call["function"]["arguments"] or "{}").get("product_id"))
    return checked


def _word_result(content: str) -> str:
    try:
        data = json.loads(content)
    except ValueError:
        data = content
    if isinstance(data, list):
        names = ", ".join(f"{p['name']} ({p['product_id']}, {p['price']})" for p in data)
        opening = "Here is what we offer" if len(data) == len(CATALOGUE) else "Here is what I found"
        return f"{opening}: {names}. Ask me whether you can use one of them."
    if isinstance(data, dict) and "error" in data:
        if data["error"].get("code") in ("tool_rejected", "approval_expired"):
            return "Understood: I did not apply that discount."
        return f"Sorry, I could not use that tool: {data['error']['message']}"
    text = str(data)
    if match := DISCOUNT.match(text):
        product = CATALOGUE[match["product"]]
        return f"Done: {match['percent']} % off {product['name']} is applied to your account."
    if match := ELIGIBLE.match(text):
        product = CATALOGUE[match["product"]]
        return f"Yes: {product['name']} is available with your current plan ({product['price']})."
    if match := UPGRADE.match(text):
        product = CATALOGUE[match["product"]]
        return (
            f"Not with your current plan: {product['name']} needs the {match['plans']} plan. "
            f"Upgrade your account to use it ({product['price']})."
        )
    if text.startswith("There is no product"):
        return "We have no such product. Ask me what we sell."
    return text
