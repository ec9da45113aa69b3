"""A ``@with_context()`` method passed as a tool reaches a provider as its JSON tool definition.

The seed README's line ``litellm.completion(..., tools=[self.get_user_data])`` is run with the real
``litellm`` package (and the real ``openai`` client) against a tiny HTTP server in the test that
stands in for the provider: it records each request body and answers a canned ``chat.completion``
(or its streamed chunks). The assertions are on the JSON the client really sent. Connections to
anything but this machine are refused during each test, so nothing reaches a real provider.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import pickle
import socket
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.decorators import BoundTool, with_context
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.tools import ToolDefinitionError, dispatch_tool_call, tool_schema, tool_schemas
from tests import example_agents
from tests.example_agents import SalesAgent, SmartAgent

pytestmark = [
    # litellm's own types trigger a pydantic notice about ReadOnly TypedDict items, and its service
    # logger asks for an event loop the old way: neither is this test's business.
    pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.filterwarnings("ignore:There is no current event loop:DeprecationWarning"),
]

#: What the seed's SmartAgent.get_user_data is to a model: both parameters are injected.
USER_DATA_TOOL = {
    "type": "function",
    "function": {
        "name": "get_user_data",
        "description": "Context injected automatically",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}
#: The README's SalesAgent.check_eligibility: product_id is the model's, user_id and account_tier injected.
ELIGIBILITY_TOOL = {
    "type": "function",
    "function": {
        "name": "check_eligibility",
        "description": "Context parameters auto-injected - LLM only needs to provide product_id",
        "parameters": {
            "type": "object",
            "properties": {"product_id": {"type": "string"}},
            "required": ["product_id"],
            "additionalProperties": False,
        },
    },
}


class ShopAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int
        currency: str = "EUR"

    @with_context()
    async def order_total(self, order_id: str, user_id: int, currency: str, with_tax: bool = True) -> str:
        """The total of one of the user's orders.

        Args:
            order_id: The order's number, e.g. "A-17".
            user_id: Whose order (injected).
            with_tax: Include VAT.
        """
        await asyncio.sleep(0)
        return f"{order_id} of user {user_id}: 42.00 {currency}{' incl. VAT' if with_tax else ''}"

    @with_context()
    def note(self, thing: socket.socket, user_id: int) -> str:
        """A method whose parameter type has no JSON schema: not a tool, still a method."""
        return f"{user_id}"

    def plain(self, query: str) -> str:
        """An undecorated method."""
        return query


ORDER_TOTAL_TOOL = {
    "type": "function",
    "function": {
        "name": "order_total",
        "description": "The total of one of the user's orders.",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "description": 'The order\'s number, e.g. "A-17".'},
                "with_tax": {"type": "boolean", "default": True, "description": "Include VAT."},
            },
            "required": ["order_id"],
            "additionalProperties": False,
        },
    },
}


class _Provider(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat completions endpoint: records the body, answers ``server.reply``."""

    server: ProviderServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body})
        message = {"role": "assistant", **self.server.reply}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        base = {"id": "chatcmpl-test", "created": 1_700_000_000, "model": body["model"]}
        if body.get("stream"):
            delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
            if message.get("tool_calls"):
                delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
            chunks = [
                {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]},
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                },
            ]
            data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self._answer(data.encode(), "text/event-stream")
        else:
            answer = {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            }
            self._answer(json.dumps(answer).encode(), "application/json")

    def _answer(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ProviderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Provider)
        self.requests: list[dict[str, Any]] = []
        self.reply: dict[str, Any] = {"content": "Your team plan includes 10 seats."}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]


@pytest.fixture
def local_only(monkeypatch):
    """Refuse connections to anything but this machine (the provider stand-in listens on 127.0.0.1)."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: Any) -> None:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"network access to {address!r} attempted during a provider-format test")

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def provider(local_only):
    server = ProviderServer()
    thread = threading.Thread(target=server.serve_forever, name="provider-stand-in", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=30)


@pytest.fixture
def litellm(monkeypatch):
    """The real litellm package, bound as the README agents' module-level ``litellm``."""
    return example_agents.use_litellm(monkeypatch)


def smart_agent() -> SmartAgent:
    return SmartAgent(context=SmartAgent.Context(user_id=3, org_id=77))


def test_local_only_fixture_refuses_other_hosts(local_only):
    with pytest.raises(OSError, match="network access"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)


# The request a provider receives


def test_seed_line_sends_the_tool_definition_through_litellm(provider, litellm):
    agent = smart_agent()

    response = litellm.completion(
        model="openai/gpt-4o-mini",
        api_base=provider.url,
        api_key="test",
        messages=[{"role": "user", "content": "What plan am I on?"}],
        tools=[agent.get_user_data],
    )

    assert response.choices[0].message.content == "Your team plan includes 10 seats."
    [request] = provider.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["tools"] == [USER_DATA_TOOL]
    assert request["body"]["tools"] == tool_schemas([agent.get_user_data])


def test_visible_parameters_only_reach_the_provider(provider, litellm):
    agent = SalesAgent(context=SalesAgent.Context(user_id=7, account_tier="premium"))

    litellm.completion(
        model="openai/gpt-4o-mini",
        api_base=provider.url,
        api_key="test",
        messages=[{"role": "user", "content": "Can I use pro-features?"}],
        tools=[agent.check_eligibility, smart_agent().get_user_data],
    )

    [body] = provider.bodies()
    assert body["tools"] == [ELIGIBILITY_TOOL, USER_DATA_TOOL]
    sent = json.dumps(body["tools"])
    assert "user_id" not in sent and "account_tier" not in sent and "org_id" not in sent


def test_async_completion_streams_with_an_async_tool(provider, litellm):
    agent = ShopAgent(context=ShopAgent.Context(user_id=5))

    async def ask() -> str:
        stream = await litellm.acompletion(
            model="openai/gpt-4o-mini",
            api_base=provider.url,
            api_key="test",
            messages=[{"role": "user", "content": "What did order A-17 cost?"}],
            tools=[agent.order_total],
            stream=True,
        )
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream])

    assert asyncio.run(ask()) == "Your team plan includes 10 seats."
    [body] = provider.bodies()
    assert body["stream"] is True
    assert body["tools"] == [ORDER_TOTAL_TOOL]


def test_the_openai_client_sends_the_definition_too(provider):
    openai = pytest.importorskip("openai", reason="the openai client comes with litellm (the 'llm' extra)")
    agent = ShopAgent(context=ShopAgent.Context(user_id=5))
    client = openai.OpenAI(base_url=provider.url, api_key="test", max_retries=0)

    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Order A-17?"}], tools=[agent.order_total]
    )

    [body] = provider.bodies()
    assert body["tools"] == [ORDER_TOTAL_TOOL]


@pytest.mark.django_db
def test_seed_function_calling_agent_runs_as_written_against_a_provider(provider, litellm, monkeypatch):
    """The seed's SmartAgent unchanged (model "gpt-4", no api_base): the provider is chosen the way a
    deployment chooses it, by OPENAI_BASE_URL and OPENAI_API_KEY."""
    monkeypatch.setenv("OPENAI_BASE_URL", provider.url)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    register_agent("smart", SmartAgent)
    session = ConversationService.create_session("smart", context={"user_id": 3, "org_id": 77})

    result = ConversationService.send_message(session_id=session.id, message="What plan am I on?")

    assert result["status"] == "success", result
    assert result["response"] == "Your team plan includes 10 seats."
    [body] = provider.bodies()
    assert body["model"] == "gpt-4"
    assert body["messages"] == [{"role": "user", "content": "What plan am I on?"}]
    assert body["tools"] == [USER_DATA_TOOL]


def test_a_tool_call_from_the_provider_dispatches_with_the_context(provider, litellm):
    agent = smart_agent()
    provider.reply = {
        "content": None,
        "tool_calls": [{"id": "call_7", "type": "function", "function": {"name": "get_user_data", "arguments": "{}"}}],
    }
    tools = [agent.get_user_data]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Who am I?"}]

    response = litellm.completion(
        model="openai/gpt-4o-mini", api_base=provider.url, api_key="test", messages=messages, tools=tools
    )
    [call] = response.choices[0].message.tool_calls
    done = dispatch_tool_call(tools, call)
    messages += [response.choices[0].message.model_dump(exclude_none=True), done.as_message()]
    provider.reply = {"content": "You are on the team plan."}
    litellm.completion(
        model="openai/gpt-4o-mini", api_base=provider.url, api_key="test", messages=messages, tools=tools
    )

    assert done.result == {"user_id": 3, "org_id": 77, "plan": "team"}
    first, second = provider.bodies()
    assert first["tools"] == second["tools"] == [USER_DATA_TOOL]
    assert second["messages"][-1] == done.as_message()
    assert (done.as_message()["tool_call_id"], json.loads(done.as_message()["content"])) == ("call_7", done.result)


# The object itself: a bound method and a tool definition at once


def test_it_is_the_definition_tool_schema_builds():
    agent = smart_agent()
    tool = agent.get_user_data
    assert isinstance(tool, BoundTool) and isinstance(tool, dict)
    assert tool == USER_DATA_TOOL == tool_schema(tool)
    assert json.loads(json.dumps(tool)) == USER_DATA_TOOL
    assert json.loads(json.dumps([ShopAgent(context=ShopAgent.Context(user_id=1)).order_total])) == [ORDER_TOTAL_TOOL]


def test_it_behaves_as_the_bound_method():
    agent = smart_agent()
    tool = agent.get_user_data
    assert tool() == {"user_id": 3, "org_id": 77, "plan": "team"}
    assert tool.__self__ is agent
    assert tool.__func__ is SmartAgent.get_user_data
    assert tool.__name__ == "get_user_data"
    assert tool.__qualname__ == SmartAgent.get_user_data.__qualname__
    assert tool.__module__ == "tests.example_agents"
    assert tool.__doc__ == "Context injected automatically"
    assert tool.__wrapped__ is SmartAgent.get_user_data.__wrapped__
    assert str(inspect.signature(tool)) == "()"
    assert not inspect.iscoroutinefunction(tool)
    assert repr(tool).startswith("<bound method SmartAgent.get_user_data of <tests.example_agents.SmartAgent")
    assert BoundTool.__module__ == "django_ai.conversations.decorators"
    assert BoundTool.__doc__.startswith("What ``agent.tool`` is")


def test_two_lookups_compare_equal_and_hash_alike():
    agent, other = smart_agent(), smart_agent()
    assert agent.get_user_data == agent.get_user_data
    assert (agent.get_user_data != agent.get_user_data) is False  # __ne__ agrees with __eq__
    assert hash(agent.get_user_data) == hash(agent.get_user_data)
    assert len({agent.get_user_data, agent.get_user_data}) == 1
    assert agent.get_user_data != other.get_user_data
    assert agent.get_user_data is not agent.get_user_data  # a new one per lookup, as a bound method


def test_each_lookup_is_its_own_dict():
    agent = smart_agent()
    tool = agent.get_user_data
    tool["function"]["parameters"]["properties"]["extra"] = {"type": "string"}
    tool["function"]["strict"] = True
    assert agent.get_user_data == USER_DATA_TOOL
    assert tool_schema(agent.get_user_data) == USER_DATA_TOOL


def test_the_same_method_looked_up_twice_is_one_tool():
    agent, other = smart_agent(), smart_agent()
    shop = ShopAgent(context=ShopAgent.Context(user_id=5))
    assert tool_schemas([agent.get_user_data, agent.get_user_data]) == [USER_DATA_TOOL]
    assert tool_schemas([shop.plain, shop.plain])[0]["function"]["name"] == "plain"
    assert dispatch_tool_call([agent.get_user_data, agent.get_user_data], "get_user_data", "{}").result["org_id"] == 77
    with pytest.raises(ToolDefinitionError, match="Two tools are named 'get_user_data'"):
        tool_schemas([agent.get_user_data, other.get_user_data])


def test_copies_are_plain_definitions():
    agent = smart_agent()
    for copied in (copy.copy(agent.get_user_data), copy.deepcopy(agent.get_user_data)):
        assert type(copied) is dict and copied == USER_DATA_TOOL
    assert copy.deepcopy([agent.get_user_data])[0]["function"] is not agent.get_user_data["function"]
    unpickled = pickle.loads(pickle.dumps(agent.get_user_data))
    assert type(unpickled) is dict and unpickled == USER_DATA_TOOL


def test_async_tool_stays_a_coroutine_function():
    agent = ShopAgent(context=ShopAgent.Context(user_id=5, currency="CHF"))
    tool = agent.order_total
    assert inspect.iscoroutinefunction(tool)
    assert str(inspect.signature(tool)) == "(order_id: str, with_tax: bool = True) -> str"
    assert asyncio.run(tool("A-17", with_tax=False)) == "A-17 of user 5: 42.00 CHF"
    assert "user_id" not in tool.__doc__


def test_a_method_without_a_json_schema_stays_a_plain_bound_method():
    agent = ShopAgent(context=ShopAgent.Context(user_id=5))
    assert isinstance(agent.note, types.MethodType)
    assert agent.note(thing=None) == "5"
    with pytest.raises(ToolDefinitionError, match="note cannot be a tool"):
        tool_schema(agent.note)


def test_plain_methods_are_offered_with_tool_schemas():
    """An undecorated method stays Python's bound method (not JSON): tool_schemas() describes it."""
    agent = ShopAgent(context=ShopAgent.Context(user_id=5))
    assert isinstance(agent.plain, types.MethodType)
    with pytest.raises(TypeError, match="not JSON serializable"):
        json.dumps([agent.plain])
    assert tool_schemas([agent.plain, agent.order_total])[1] == ORDER_TOTAL_TOOL
    assert tool_schemas([agent.plain])[0]["function"]["name"] == "plain"
