"""The example agents of the README (the seed's README, SEED_README.md, whose Quick Start agent
today's README.md keeps) and of docs/*.md, once, as written there.

Tests that pin "the README works as written" (tests/test_seed_readme.py, test_litellm_example.py),
the docs examples (test_docs_examples.py) and any other test that wants a README agent import them
from here instead of keeping a copy. Only what the README leaves to the reader is filled in
(``your_ai_function``, ``fetch_user_data``); the code is otherwise the README's, its quotes and line
breaks included. Where the README shows only a ``get_response``, the class around it is ours.

``litellm``: the README's LiteLLM examples call the module-level name ``litellm``. Importing the
package takes seconds, so it is bound only by the tests that run those examples
(:func:`use_litellm`); elsewhere it is ``None``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.decorators import with_context
from django_ai.conversations.llm import LLMAgent, ToolError, run_tool_calls, stream_completion
from django_ai.conversations.tools import requires_approval, tool_schemas

litellm: Any = None


def use_litellm(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Bind this module's ``litellm`` to the real package for one test (skipped without it) and
    keep litellm from downloading its model price list. Returns the package."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP", "True"))
    package = pytest.importorskip("litellm", reason="litellm is in the 'llm' extra, installed by the 'dev' extra (CI)")
    monkeypatch.setattr(f"{__name__}.litellm", package)
    return package


# The README's code as written there, its quotes and line breaks included: the formatter leaves it be.
# fmt: off


# README, Quick Start, 1. Create a Chat Agent (your_app/chat_agents.py). docs/testing.md imports the
# same class ("from your_app.chat_agents import SupportAgent").
class SupportAgent(ConversationAgent):
    """Customer support agent"""

    class Context(BaseModel):
        user_id: int = 0
        support_tier: str = "basic"

    @classmethod
    def create_context(cls, request=None, **kwargs):
        """Build context when session starts"""
        user = request.user if request and request.user.is_authenticated else None
        return cls.Context(
            user_id=user.id if user else 0,
            support_tier=kwargs.get('tier', 'basic')
        )

    async def get_response(self, message, request=None, **kwargs):
        """Process user message and return response"""

        # Simple response (no streaming)
        if "hello" in message.lower():
            return "Hello! How can I help you today?"

        # Streaming response (real-time chunks via WebSocket)
        with ResponseStream() as stream:
            stream.write("Let me check that for you")
            # ... process request ...
            stream.write("Here's what I found...")

        return stream.content


# Seed README, Context Injection.
class SalesAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int
        account_tier: str

    @with_context()
    def check_eligibility(self, product_id: str, user_id: int, account_tier: str):
        """Context parameters auto-injected - LLM only needs to provide product_id"""
        if account_tier == "premium":
            return f"User {user_id} can access {product_id}"
        return "Upgrade required"

    async def get_response(self, message, request=None, **kwargs):
        # Use with LiteLLM, OpenAI, etc. - they only see product_id parameter
        result = self.check_eligibility(product_id="pro-features")
        return result


# docs/tools.md, its first example: the seed's SalesAgent with a Google-style docstring.
class ToolsDocSalesAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int
        account_tier: str

    @with_context()
    def check_eligibility(self, product_id: str, user_id: int, account_tier: str):
        """Whether the user may use a product.

        Args:
            product_id: The product to check.
            user_id: Injected.
        """
        if account_tier == "premium":
            return f"User {user_id} can access {product_id}"
        return "Upgrade required"

    async def get_response(self, message, request=None, **kwargs):
        return self.check_eligibility(product_id="pro-features")


async def your_ai_function(message):
    # Left to the reader in the README.
    return f"You asked about {message}"


# Seed README, Core Features: Real-Time Streaming.
class StreamingAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            stream.write("Processing your request")

            # Call your AI/LLM here
            result = await your_ai_function(message)

            # Stream response word by word
            for word in result.split():
                stream.write(word + " ")

        return stream.content  # Full accumulated response


# Seed README, Core Features: Context Management.
class MyAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int
        subscription_tier: str
        conversation_count: int = 0

    @classmethod
    def create_context(cls, request=None, **kwargs):
        """Called once per session"""
        return cls.Context(
            user_id=request.user.id,
            subscription_tier=kwargs.get('tier', 'free'),
            conversation_count=0
        )

    async def get_response(self, message, request=None, **kwargs):
        # Access context
        ctx = self.context
        ctx.conversation_count += 1

        return f"Message #{ctx.conversation_count} for user {ctx.user_id}"


# Seed README, Core Features: Rich UI Widgets.
class WidgetAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        from django_ai.conversations.context import display_widget

        if "book appointment" in message.lower():
            display_widget("appointment_form", {
                "available_slots": ["2024-01-15 10:00", "2024-01-15 14:00"],
                "callback_url": "/api/book-appointment"
            })

            return "Please select your preferred time above."
        return "Ask me to book an appointment."


# Seed README, Core Features: File Processing.
class FileAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        from django_ai.conversations.context import get_file_text

        if hasattr(self, 'files') and self.files:
            results = []

            for file in self.files:
                # Automatic extraction using Apache Tika + OCR
                text = get_file_text(file.id)

                if text:
                    results.append(f"From {file.filename}: {text[:200]}...")

            return "File analysis:\n" + "\n".join(results)

        return "Upload a file and I'll analyze it."


# Seed README, API Reference: Context Utilities.
class UtilitiesAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        from django_ai.conversations.context import (
            ResponseStream,  # Stream response chunks
            display_widget,  # Show UI component
            get_file_text    # Extract text from files
        )

        # Streaming
        with ResponseStream() as stream:
            stream.write("chunk")
            stream.write("another chunk")
        # stream.content has full text

        # Widgets
        display_widget("widget_type", {"data": "here"})

        # Files
        file_id = self.files[0].id
        text = get_file_text(file_id)
        return f"{stream.content}|{str(stream)}|{text}"


# Seed README, API Reference: ConversationAgent Base Class.
class YourAgent(ConversationAgent):
    class Context(BaseModel):
        """Define your context structure"""
        pass

    @classmethod
    def create_context(cls, request=None, **kwargs):
        """Create context when session starts"""
        return cls.Context()  # the README's ``cls.Context(...)``: "..." stands for your fields

    async def get_response(self, message, request=None, **kwargs):
        """Main handler - return string response"""
        return "response"


# Seed README, Examples: Basic Echo Agent.
class EchoAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        return f"You said: {message}"


# Seed README, LLM Integration (LiteLLM).
class AIAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            response = litellm.completion(
                model="gpt-4",
                messages=[{"role": "user", "content": message}],
                stream=True
            )

            for chunk in response:
                content = chunk.choices[0].delta.content or ""
                stream.write(content)

        return stream.content


def fetch_user_data(user_id, org_id):
    # Left to the reader in the README.
    return {"user_id": user_id, "org_id": org_id, "plan": "team"}


# Seed README, Examples: Function Calling with Context.
class SmartAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int
        org_id: int

    @with_context()
    def get_user_data(self, user_id: int, org_id: int):
        """Context injected automatically"""
        return fetch_user_data(user_id, org_id)

    async def get_response(self, message, request=None, **kwargs):
        # Use with LLM function calling
        tools = [self.get_user_data]
        response = litellm.completion(
            model="gpt-4",
            messages=[{"role": "user", "content": message}],
            tools=tools
        )
        # Context injected when LLM calls the function
        return response.choices[0].message.content


# docs/tools.md, The declared tool loop (ORDERS is left to the reader there).
ORDERS = {(7, 42): {"number": 42, "status": "shipped", "total": 120.0}}


class ShopAgent(LLMAgent):
    model = "gpt-4o-mini"                      # any litellm model name; or FakeModel(...) in tests
    system_prompt = "You are the shop's assistant. Answer in two sentences."
    tools = ["find_order", "refund"]           # method names (or the functions themselves)
    max_tool_rounds = 4
    tool_timeout = 30.0                        # seconds per tool call

    class Context(BaseModel):
        user_id: int = 0

    @with_context()
    def find_order(self, number: int, user_id: int) -> dict:
        """Find one of the customer's orders.

        Args:
            number: The order number.
        """
        order = ORDERS.get((user_id, number))
        if order is None:
            raise ToolError(f"You have no order {number}.")
        return order

    @requires_approval(when=lambda agent, arguments: arguments["amount"] > 100)
    @with_context()
    def refund(self, number: int, amount: float, user_id: int) -> str:
        """Refund part of an order.

        Args:
            number: The order number.
            amount: The amount to refund, in EUR.
        """
        return f"Refunded {amount} EUR on order {number}."


# docs/tools.md, A hand-written loop from the same pieces.
class HandWrittenShopAgent(ShopAgent):  # ShopAgent's tools and Context, a loop of its own
    async def get_response(self, message, request=None, **kwargs):
        tools = [self.find_order]
        messages = [{"role": "system", "content": "You are the shop's assistant."}, *self.history(max_messages=50)]
        stream = ResponseStream()
        try:
            for round in range(4):
                result = await stream_completion(
                    "gpt-4o-mini", messages, tools=tool_schemas(tools), stream=stream, round=round
                )
                if not result.tool_calls:
                    break
                messages.append(result.as_message())
                messages += await run_tool_calls(self, tools, result.tool_calls, round=round, tool_timeout=30)
        finally:
            stream.end()
        return stream.content
