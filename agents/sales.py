"""A tool-calling agent: an LLM chooses tools, ``@with_context`` fills what the conversation knows.

Offline (the default) the "LLM" is the scripted :class:`~django_ai.conversations.testing.FakeModel`
(see :func:`offline_brain`), so the demo and the tests need no network and no key. Set
``DJANGO_AI_DEMO_MODEL`` (any litellm model name, e.g. ``gpt-4o-mini``) and the provider's key
(e.g. ``OPENAI_API_KEY``) to drive the same agent with a real model through litellm
(``pip install 'django-ai-first[llm]'``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream, display_widget, report_usage
from django_ai.conversations.decorators import with_context
from django_ai.conversations.testing import FakeModel, FakeRequest, FakeToolCall
from django_ai.conversations.tools import ToolCallCollector, ToolCallError, adispatch_tool_call, tool_schemas

MODEL_ENV = "DJANGO_AI_DEMO_MODEL"
MAX_TOOL_ROUNDS = 4

CATALOGUE: dict[str, dict[str, Any]] = {
    "pro-features": {"name": "Pro features", "price": "€12 / month", "tiers": ["premium"]},
    "team-seats": {"name": "Extra team seats", "price": "€5 / seat / month", "tiers": ["basic", "premium"]},
    "priority-support": {"name": "Priority support", "price": "€30 / month", "tiers": ["premium"]},
    "api-access": {"name": "API access", "price": "included", "tiers": ["basic", "premium"]},
}

SYSTEM_PROMPT = (
    "You are the sales assistant of a software company. Use search_products to find products and "
    "check_eligibility before saying whether the customer may buy one. Answer in two sentences at most."
)

Completion = Callable[..., Awaitable[Any]]


class SalesAgent(ConversationAgent):
    """Finds products and checks what your account may buy, with tools (offline model by default)."""

    display_name = "Sales (tools)"

    class Context(BaseModel):
        user_id: int = 0
        account_tier: str = "basic"

    class StartParams(BaseModel):
        """The demo page's plan selector; the user id comes from the request, never the client."""

        tier: Literal["basic", "premium"] = "basic"

    @classmethod
    def create_context(cls, request=None, **kwargs):
        user = request.user if request and request.user.is_authenticated else None
        return cls.Context(user_id=user.id if user else 0, account_tier=kwargs.get("tier", "basic"))

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

    def get_completion(self) -> tuple[str, Completion]:
        """The model name and the ``acompletion`` function. Override to plug another client."""
        name = os.environ.get(MODEL_ENV, "").strip()
        if name:
            try:
                import litellm
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f"{MODEL_ENV} is set to {name!r} but litellm is not installed: pip install 'django-ai-first[llm]'."
                ) from exc
            return name, litellm.acompletion
        return "offline-demo", FakeModel(replies=[offline_brain] * (MAX_TOOL_ROUNDS + 1)).acompletion

    async def get_response(self, message, request=None, **kwargs):
        tools: list[Callable[..., Any]] = [self.search_products, self.check_eligibility]
        schemas = tool_schemas(tools)
        model, acompletion = self.get_completion()
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": message},
        ]
        # The stream opens with the first text, so tool calls made before it show above the answer.
        stream: ResponseStream | None = None
        try:
            for _ in range(MAX_TOOL_ROUNDS):
                response = await acompletion(model=model, messages=messages, tools=schemas, stream=True)
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
                messages.append({"role": "assistant", "content": "".join(text) or None, "tool_calls": collector.calls})
                for call in collector.calls:
                    try:
                        done = await adispatch_tool_call(tools, call)
                    except ToolCallError as exc:
                        messages.append(exc.as_message())
                        continue
                    display_widget(
                        "tool_call",
                        {"name": done.name, "arguments": done.arguments, "result": done.result},
                    )
                    messages.append(done.as_message())
        finally:
            if stream is not None:
                stream.end()
        return stream.content if stream is not None else "I have nothing to add."


#: Words of a question that name no product: the search gets what is left ("" finds everything).
SEARCH_NOISE = {
    "what", "which", "do", "does", "you", "your", "we", "sell", "offer", "offers", "product", "products",
    "catalog", "catalogue", "search", "find", "price", "prices", "have", "any", "anything", "for", "the",
    "is", "are", "of", "me", "show", "list", "all", "can", "how", "much", "cost", "costs", "there",
}  # fmt: skip
ELIGIBLE = re.compile(r"^User \d+ can access (?P<product>[\w-]+)\.$")
UPGRADE = re.compile(r"^Upgrade required: (?P<product>[\w-]+) needs the (?P<plans>.+) plan\.$")


def offline_brain(request: FakeRequest) -> Any:
    """The scripted stand-in for an LLM: picks a tool from keywords, then words the tool's result
    for the customer (as a model would, instead of repeating it)."""
    last = request.messages[-1]
    if last.get("role") == "tool":
        return _word_result(last["content"])
    question = (request.last_user_message or "").lower()
    product = next((pid for pid in CATALOGUE if pid in question or pid.replace("-", " ") in question), None)
    if product:
        return FakeToolCall("check_eligibility", {"product_id": product})
    if re.search(r"\b(product|products|offer|sell|catalog|catalogue|search|find|price|prices)\b", question):
        words = [w for w in re.findall(r"[a-z]+", question) if len(w) > 2 and w not in SEARCH_NOISE]
        return FakeToolCall("search_products", {"query": " ".join(words)})
    return (
        "I can look through our products (“what do you sell?”) or check whether your account may use "
        "one (“can I use pro-features?”)."
    )


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
        return f"Sorry, I could not use that tool: {data['error']['message']}"
    text = str(data)
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
