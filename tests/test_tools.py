"""Tool schemas from signatures and docstrings, and dispatch of a model's tool calls."""

import asyncio
import json
import threading
from typing import Annotated, ClassVar, Literal

import pytest
from asgiref.sync import async_to_sync
from pydantic import BaseModel, Field

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.decorators import with_context
from django_ai.conversations.exceptions import ConversationError
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FakeModel, FakeReply, FakeToolCall
from django_ai.conversations.tools import (
    ToolCall,
    ToolCallCollector,
    ToolCallError,
    ToolDefinitionError,
    adispatch_tool_call,
    dispatch_tool_call,
    tool_schema,
    tool_schemas,
)
from tests.example_agents import SalesAgent  # the README's context-injection agent


class Address(BaseModel):
    """A postal address."""

    street: str
    city: str = "Paris"


def search_products(
    query: str,
    tags: list[str] | None = None,
    sort: Literal["price", "date"] = "date",
    limit: Annotated[int, Field(ge=1, le=50, description="At most this many rows.")] = 10,
    ship_to: Address | None = None,
) -> list[str]:
    """Search the product catalogue.

    The search is case-insensitive. This second paragraph is not part of the description.

    Args:
        query: Words to look for,
            in any order.
        tags (list[str]): Only products with all these tags.
        limit: Overridden by the Field description.
    """
    return [f"{query}:{sort}:{limit}:{','.join(tags or [])}:{ship_to.city if ship_to else '-'}"]


def schedule(day: str, slot: int = 9) -> dict:
    """Book a slot.

    :param day: ISO date of the appointment.
    :param int slot: Hour of the day,
        24-hour clock.
    :returns: the booking.
    """
    return {"day": day, "slot": slot}


def convert(amount: float, currency: str = "EUR") -> str:
    """Convert money.

    Parameters
    ----------
    amount : float
        How much, in US dollars.
    currency : str
        Target currency code.

    Returns
    -------
    str
    """
    return f"{amount:.2f} {currency}"


def string_annotations(count: "int", labels: "list[str]") -> int:
    return count + len(labels)


def test_schema_snapshot_for_a_realistic_search_function():
    assert tool_schema(search_products) == {
        "type": "function",
        "function": {
            "name": "search_products",
            "description": "Search the product catalogue.",
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "query": {"type": "string", "description": "Words to look for, in any order."},
                    "tags": {
                        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                        "default": None,
                        "description": "Only products with all these tags.",
                    },
                    "sort": {"type": "string", "enum": ["price", "date"], "default": "date"},
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 50,
                        "default": 10,
                        "description": "At most this many rows.",
                    },
                    "ship_to": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": None},
                },
                "required": ["query"],
                "$defs": {
                    "Address": {
                        "type": "object",
                        "title": "Address",
                        "description": "A postal address.",
                        "properties": {"street": {"type": "string"}, "city": {"type": "string", "default": "Paris"}},
                        "required": ["street"],
                    }
                },
            },
        },
    }


def test_sphinx_and_numpy_parameter_docs():
    booking = tool_schema(schedule)["function"]
    assert booking["description"] == "Book a slot."
    assert booking["parameters"]["properties"] == {
        "day": {"type": "string", "description": "ISO date of the appointment."},
        "slot": {"type": "integer", "default": 9, "description": "Hour of the day, 24-hour clock."},
    }
    money = tool_schema(convert)["function"]
    assert money["parameters"]["properties"]["amount"] == {"type": "number", "description": "How much, in US dollars."}
    assert money["parameters"]["properties"]["currency"]["description"] == "Target currency code."
    assert money["parameters"]["required"] == ["amount"]


def wrapped_summary(a: int, b: int = 0) -> int:
    """Add two numbers,
    the second one optional.
    Args:
        a: The first.
        b: The second.
    """
    return a + b


def keyword_docs(**options) -> None:
    """Nothing here is a style.

    It has two paragraphs: the description is the first.
    """


def test_description_is_the_whole_first_paragraph_and_stops_at_a_section():
    function = tool_schema(wrapped_summary)["function"]
    assert function["description"] == "Add two numbers, the second one optional."
    assert function["parameters"]["properties"]["a"]["description"] == "The first."
    assert tool_schema(keyword_docs)["function"]["description"] == "Nothing here is a style."


def test_string_annotations_are_resolved_and_missing_docs_give_no_description():
    function = tool_schema(string_annotations)["function"]
    assert "description" not in function
    assert function["parameters"]["properties"] == {
        "count": {"type": "integer"},
        "labels": {"type": "array", "items": {"type": "string"}},
    }


def test_with_context_method_schema_shows_only_model_supplied_parameters():
    agent = SalesAgent(context=SalesAgent.Context(user_id=1, account_tier="premium"))
    assert tool_schema(agent.check_eligibility) == {
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


def test_tool_schemas_list_mapping_and_overrides():
    agent = SalesAgent(context=SalesAgent.Context(user_id=1, account_tier="premium"))
    names = [t["function"]["name"] for t in tool_schemas([search_products, agent.check_eligibility])]
    assert names == ["search_products", "check_eligibility"]
    renamed = tool_schemas({"find": search_products})
    assert renamed[0]["function"]["name"] == "find"
    custom = tool_schema(schedule, name="book", description="Book a meeting room.")["function"]
    assert (custom["name"], custom["description"]) == ("book", "Book a meeting room.")
    # Callers may edit what they get without changing the next schema.
    renamed[0]["function"]["parameters"]["properties"].clear()
    assert tool_schema(search_products)["function"]["parameters"]["properties"]


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (lambda x: x, "its name must be"),
        (SalesAgent.check_eligibility, "pass the bound method"),
        (min, "signature cannot be read"),
    ],
)
def test_functions_that_cannot_be_tools(func, message):
    with pytest.raises(ToolDefinitionError, match=message) as info:
        tool_schema(func)
    assert info.value.code == "invalid_tool_definition"


def test_star_args_unknown_types_and_duplicate_names_are_definition_errors():
    def many(*items: str): ...

    class Opaque:
        pass

    def opaque(thing: Opaque): ...

    def undefined(thing: "NotDefinedAnywhere"): ...  # noqa: F821

    with pytest.raises(ToolDefinitionError, match=r"\*items"):
        tool_schema(many)
    with pytest.raises(ToolDefinitionError, match=r"no JSON schema|opaque"):
        tool_schema(opaque)
    with pytest.raises(ToolDefinitionError, match="NotDefinedAnywhere"):
        tool_schema(undefined)

    def search_products(): ...

    with pytest.raises(ToolDefinitionError, match="Two tools are named 'search_products'"):
        tool_schemas([search_products, globals()["search_products"]])
    with pytest.raises(ToolDefinitionError, match="list of tools"):
        tool_schemas(schedule)
    with pytest.raises(ToolDefinitionError, match="must be 1-64"):
        tool_schema(schedule, name="book a room")


# --- dispatch -------------------------------------------------------------------------------------


def test_dispatch_with_json_arguments_validates_and_converts():
    done = dispatch_tool_call(
        [search_products, schedule],
        "search_products",
        '{"query": "boots", "tags": ["leather"], "limit": "5", "ship_to": {"street": "1 rue X"}}',
        call_id="call_1",
    )
    assert isinstance(done, ToolCall)
    assert done.result == ["boots:date:5:leather:Paris"]
    assert done.arguments["limit"] == 5
    assert done.arguments["ship_to"] == Address(street="1 rue X")
    assert done.raw_arguments["limit"] == "5"
    assert done.as_message() == {
        "role": "tool",
        "tool_call_id": "call_1",
        "name": "search_products",
        "content": '["boots:date:5:leather:Paris"]',
    }


def test_dispatch_accepts_model_tool_call_objects_and_dicts():
    model = FakeModel(replies=[FakeToolCall("schedule", {"day": "2024-01-15"}, id="call_9")])
    response = model.completion(
        model="m", messages=[{"role": "user", "content": "book"}], tools=tool_schemas([schedule])
    )
    call = response.choices[0].message.tool_calls[0]
    done = dispatch_tool_call([schedule], call)
    assert (done.id, done.name, done.result) == ("call_9", "schedule", {"day": "2024-01-15", "slot": 9})
    assert json.loads(done.content) == {"day": "2024-01-15", "slot": 9}
    as_dict = {
        "id": "c2",
        "type": "function",
        "function": {"name": "schedule", "arguments": '{"day": "d", "slot": 14}'},
    }
    assert dispatch_tool_call([schedule], as_dict).result == {"day": "d", "slot": 14}
    assert dispatch_tool_call({"book": schedule}, "book", {"day": "d"}).result == {"day": "d", "slot": 9}
    with pytest.raises(TypeError, match="not both"):
        dispatch_tool_call([schedule], as_dict, "{}")


def test_dispatch_of_a_with_context_method_injects_and_refuses_injected_arguments():
    agent = SalesAgent(context=SalesAgent.Context(user_id=4, account_tier="premium"))
    tools = [agent.check_eligibility]
    assert dispatch_tool_call(tools, "check_eligibility", {"product_id": "pro"}).result == "User 4 can access pro"
    with pytest.raises(ToolCallError) as info:
        dispatch_tool_call(tools, "check_eligibility", {"product_id": "pro", "user_id": 1})
    assert info.value.code == "invalid_tool_arguments"
    assert info.value.field == "user_id"
    assert info.value.errors == [
        {"field": "user_id", "message": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]


@pytest.mark.parametrize(
    ("arguments", "code", "fragment", "field"),
    [
        ("{not json", "invalid_tool_arguments", "not valid JSON", None),
        ("[1, 2]", "invalid_tool_arguments", "must be a JSON object, not list", None),
        ("{}", "invalid_tool_arguments", "query: Field required", "query"),
        (
            '{"query": "x", "limit": 500}',
            "invalid_tool_arguments",
            "limit: Input should be less than or equal to 50",
            "limit",
        ),
        ('{"query": "x", "sort": "name"}', "invalid_tool_arguments", "sort: Input should be 'price' or 'date'", "sort"),
        (
            '{"query": "x", "ship_to": {"city": "Lyon"}}',
            "invalid_tool_arguments",
            "ship_to.street: Field required",
            "ship_to.street",
        ),
    ],
)
def test_bad_arguments_are_reported_before_the_tool_runs(arguments, code, fragment, field):
    ran = []

    def search_products(
        query: str,
        sort: Literal["price", "date"] = "date",
        limit: Annotated[int, Field(le=50)] = 10,
        ship_to: Address | None = None,
    ):
        ran.append(query)

    with pytest.raises(ToolCallError) as info:
        dispatch_tool_call([search_products], "search_products", arguments, call_id="c7")
    error = info.value
    assert (error.code, error.field, error.status_code) == (code, field, 400)
    assert fragment in error.message
    assert isinstance(error, ConversationError)
    assert ran == []
    message = error.as_message()
    assert (message["role"], message["tool_call_id"], message["name"]) == ("tool", "c7", "search_products")
    assert json.loads(message["content"])["error"]["code"] == code


def test_unknown_tool_and_nameless_call():
    with pytest.raises(ToolCallError) as info:
        dispatch_tool_call([schedule, convert], "delete_everything", "{}")
    assert info.value.code == "unknown_tool"
    assert "available: convert, schedule" in info.value.message
    with pytest.raises(ToolCallError) as info:
        dispatch_tool_call([schedule], {"id": "c", "function": {"arguments": "{}"}})
    assert info.value.code == "invalid_tool_call"


def test_errors_raised_by_the_tool_itself_propagate_unchanged():
    def explode(reason: str):
        raise KeyError(reason)

    with pytest.raises(KeyError, match="boom"):
        dispatch_tool_call([explode], "explode", {"reason": "boom"})


def test_results_that_are_not_json_say_so():
    def gives_object() -> object:
        return object()

    done = dispatch_tool_call([gives_object], "gives_object", None)
    with pytest.raises(TypeError, match="cannot be sent to the model as JSON"):
        _ = done.content
    assert dispatch_tool_call([_address], "_address", {}).content == '{"street":"s","city":"Paris"}'


def _address() -> Address:
    return Address(street="s")


def test_sync_dispatch_runs_async_tools_and_refuses_inside_a_loop():
    async def lookup(code: str) -> str:
        await asyncio.sleep(0)
        return code.upper()

    assert dispatch_tool_call([lookup], "lookup", {"code": "ab"}).result == "AB"

    async def inside():
        dispatch_tool_call([lookup], "lookup", {"code": "ab"})

    with pytest.raises(RuntimeError, match="adispatch_tool_call"):
        asyncio.run(inside())


def test_adispatch_awaits_async_tools_and_runs_sync_tools_off_the_loop():
    seen = {}

    async def lookup(code: str) -> str:
        return code * 2

    def blocking(code: str) -> str:
        seen["thread"] = threading.get_ident()
        return code + "!"

    async def main():
        seen["loop_thread"] = threading.get_ident()
        first = await adispatch_tool_call([lookup, blocking], "lookup", {"code": "x"})
        second = await adispatch_tool_call([lookup, blocking], "blocking", '{"code": "y"}')
        return first.result, second.result

    # Like Django's async views: the sync tool goes back to the thread that called async_to_sync.
    assert async_to_sync(main)() == ("xx", "y!")
    assert seen["thread"] == threading.get_ident() != seen["loop_thread"]


def test_tool_call_collector_assembles_streamed_calls():
    model = FakeModel(
        replies=[
            FakeReply(
                text="Checking. ",
                tool_calls=[
                    FakeToolCall("schedule", {"day": "2024-02-01", "slot": 10}),
                    FakeToolCall("convert", {"amount": 3}),
                ],
            )
        ],
        chunk_size=5,
    )
    collector = ToolCallCollector()
    text = ""
    for chunk in model.completion(
        model="m", messages=[{"role": "user", "content": "go"}], tools=[schedule, convert], stream=True
    ):
        text += chunk.choices[0].delta.content or ""
        collector.add(chunk.choices[0].delta)
    assert text == "Checking. "
    assert len(collector) == 2
    assert [c["function"]["name"] for c in collector.calls] == ["schedule", "convert"]
    results = [dispatch_tool_call([schedule, convert], call).result for call in collector.calls]
    assert results == [{"day": "2024-02-01", "slot": 10}, "3.00 EUR"]
    assert [c["id"] for c in collector.calls] == ["call_1_0", "call_1_1"]


# --- an agent's tool loop inside a real turn ------------------------------------------------------


class ToolLoopAgent(ConversationAgent):
    """A typical LLM agent: offer tools, run the calls, send results back until the model answers."""

    class Context(BaseModel):
        user_id: int
        account_tier: str = "basic"

    model: ClassVar[FakeModel]

    @with_context()
    def check_eligibility(self, product_id: str, user_id: int, account_tier: str) -> dict:
        """Whether the user may use a product."""
        return {"user": user_id, "product": product_id, "eligible": account_tier == "premium"}

    def count_messages(self) -> int:
        """How many messages this conversation has (uses the ORM from the async agent)."""
        return ConversationMessage.objects.filter(session=self.session).count()

    async def get_response(self, message, request=None, **kwargs):
        tools = [self.check_eligibility, self.count_messages]
        messages = [{"role": "user", "content": message}]
        stream = ResponseStream()
        for _ in range(5):
            response = await self.model.acompletion(
                model="gpt-4", messages=messages, tools=tool_schemas(tools), stream=True
            )
            collector = ToolCallCollector()
            async for chunk in response:
                delta = chunk.choices[0].delta
                if delta.content:
                    stream.write(delta.content)
                collector.add(delta)
            if not collector:
                break
            messages.append({"role": "assistant", "content": None, "tool_calls": collector.calls})
            for call in collector.calls:
                try:
                    messages.append((await adispatch_tool_call(tools, call)).as_message())
                except ToolCallError as exc:
                    messages.append(exc.as_message())
        stream.end()
        return stream.content


@pytest.mark.django_db
def test_tool_loop_inside_a_real_turn(events):
    ToolLoopAgent.model = model = FakeModel(
        replies=[
            FakeReply(
                tool_calls=[
                    FakeToolCall("check_eligibility", {"product_id": "pro"}),
                    FakeToolCall("count_messages"),
                    # A model trying to act for another user is told no, and nothing runs.
                    FakeToolCall("check_eligibility", {"product_id": "pro", "user_id": 1}),
                ]
            ),
            "You are not eligible yet; upgrade to premium.",
        ]
    )
    register_agent("tools/loop", ToolLoopAgent)
    session = ConversationService.create_session("tools/loop", context={"user_id": 42})

    result = ConversationService.send_message(session_id=session.id, message="Can I use pro?")

    assert result["status"] == "success", result
    assert result["response"] == "You are not eligible yet; upgrade to premium."
    assert events.text() == result["response"]
    assert model.remaining == 0
    first, second = model.requests
    assert first.tool_names == ["check_eligibility", "count_messages"]
    assert first.tools[0]["function"]["parameters"]["properties"] == {"product_id": {"type": "string"}}
    tool_messages = [m for m in second.messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_1_0", "call_1_1", "call_1_2"]
    assert json.loads(tool_messages[0]["content"]) == {"user": 42, "product": "pro", "eligible": False}
    assert tool_messages[1]["content"] == "1"  # the user's message; the reply is not saved yet
    error = json.loads(tool_messages[2]["content"])["error"]
    assert error["code"] == "invalid_tool_arguments"
    assert error["errors"][0]["field"] == "user_id"
    agent_row = ConversationMessage.objects.get(session=session, message_type="agent")
    assert agent_row.content == result["response"]


class SyncToolAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int

    model: ClassVar[FakeModel]

    @with_context()
    def whoami(self, user_id: int) -> str:
        """The current user's id."""
        return f"user {user_id}"

    def get_response(self, message, request=None, **kwargs):
        tools = [self.whoami]
        response = self.model.completion(
            model="gpt-4", messages=[{"role": "user", "content": message}], tools=tool_schemas(tools)
        )
        calls = response.choices[0].message.tool_calls or []
        return "; ".join(dispatch_tool_call(tools, call).content for call in calls)


@pytest.mark.django_db
def test_sync_agent_dispatches_non_streamed_tool_calls():
    SyncToolAgent.model = FakeModel(replies=[FakeToolCall("whoami")])
    register_agent("tools/sync", SyncToolAgent)
    session = ConversationService.create_session("tools/sync", context={"user_id": 8})
    result = ConversationService.send_message(session_id=session.id, message="who am I?")
    assert result == {**result, "status": "success", "response": "user 8"}
