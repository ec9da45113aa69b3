"""The declared tool loop (``LLMAgent``): what the model is sent (system prompt, history, tools),
rounds of tool calls run in parallel, errors and timeouts fed back to the model, the round limit,
cancel during a tool, and the declaration's checks. Real turns (``send_message``) with
``FakeModel`` as the model, SQLite / PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading

import pytest
from django.core.exceptions import ImproperlyConfigured
from pydantic import BaseModel

from django_ai.conversations import register_agent
from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.decorators import with_context
from django_ai.conversations.exceptions import ImproperlyDeclaredAgent
from django_ai.conversations.llm import LLMAgent, ToolError, completion_function, run_tool_calls
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.registry import registry
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FakeModel, FakeReply, FakeToolCall
from tests.turns_support import Background

pytestmark = pytest.mark.django_db

#: Generous: CI is a busy 2-core machine; waits end as soon as the awaited state is there.
WAIT = 20


def start(agent_cls: type[LLMAgent], context: dict | None = None):
    register_agent("under-test", agent_cls)
    return ConversationService.create_session("under-test", context=context)


def send(session, text: str) -> dict:
    return ConversationService.send_message(session.id, text)


def steps_of(session) -> list[ConversationMessage]:
    rows = ConversationMessage.objects.filter(session=session, message_type=MessageType.TOOL)
    return sorted(rows, key=lambda r: (r.timestamp, r.component_data["round"], r.component_data["index"]))


def test_the_second_question_reaches_the_model_with_the_first_turn():
    model = FakeModel(replies=["Pro features cost 12 EUR a month.", "Team seats cost 5 EUR a seat."])

    class Shop(LLMAgent):
        system_prompt = "You sell software."

    Shop.model = model
    session = start(Shop)
    assert send(session, "How much are pro features?")["response"] == "Pro features cost 12 EUR a month."
    assert send(session, "And the other one?")["response"] == "Team seats cost 5 EUR a seat."
    assert model.requests[1].messages == [
        {"role": "system", "content": "You sell software."},
        {"role": "user", "content": "How much are pro features?"},
        {"role": "assistant", "content": "Pro features cost 12 EUR a month."},
        {"role": "user", "content": "And the other one?"},
    ]
    assert model.requests[0].stream is True and model.requests[0].tools is None  # no tools declared


def test_system_prompt_may_be_a_method_that_reads_the_context():
    model = FakeModel(replies=["Hi Ada."])

    class Greeter(LLMAgent):
        class Context(BaseModel):
            name: str = "Ada"

        def system_prompt(self) -> str:
            return f"The customer is {self.context.name}."

    Greeter.model = model
    send(start(Greeter), "hello")
    assert model.requests[0].messages[0] == {"role": "system", "content": "The customer is Ada."}


def test_three_rounds_of_tool_calls_with_parallel_calls_in_a_round():
    """Round 1: two async tools that each wait for the other (they finish only if they run at the
    same time); round 2: two sync tools meeting at a barrier (same); round 3: one call; then the
    answer. Every result reaches the model, in call order."""
    met: dict[str, asyncio.Event] = {}
    barrier = threading.Barrier(2, timeout=WAIT)

    class Parallel(LLMAgent):
        tools = ["left", "right", "north", "south", "total"]

        async def left(self) -> str:
            """Left."""
            return await self._meet("left", "right")

        async def right(self) -> str:
            """Right."""
            return await self._meet("right", "left")

        async def _meet(self, me: str, other: str) -> str:
            met.setdefault(me, asyncio.Event()).set()
            await asyncio.wait_for(met.setdefault(other, asyncio.Event()).wait(), WAIT)
            return f"{me} met {other}"

        def north(self) -> str:
            """North."""
            barrier.wait()
            return "north passed"

        def south(self) -> str:
            """South."""
            barrier.wait()
            return "south passed"

        def total(self, count: int) -> dict:
            """Total."""
            return {"count": count}

    model = FakeModel(
        replies=[
            [FakeToolCall("left", {}, id="c1"), FakeToolCall("right", {}, id="c2")],
            [FakeToolCall("north", {}, id="c3"), FakeToolCall("south", {}, id="c4")],
            FakeToolCall("total", {"count": "4"}, id="c5"),
            "All four met.",
        ]
    )
    Parallel.model = model
    session = start(Parallel)
    result = send(session, "go")
    assert result["status"] == "success" and result["response"] == "All four met."
    assert len(model.requests) == 4
    last = model.requests[3].messages
    tool_messages = [(m["tool_call_id"], m["content"]) for m in last if m["role"] == "tool"]
    assert tool_messages == [
        ("c1", "left met right"),
        ("c2", "right met left"),
        ("c3", "north passed"),
        ("c4", "south passed"),
        ("c5", '{"count": 4}'),  # validated: "4" became 4
    ]
    assistants = [m for m in last if m["role"] == "assistant"]
    assert [[c["id"] for c in m["tool_calls"]] for m in assistants] == [["c1", "c2"], ["c3", "c4"], ["c5"]]
    steps = steps_of(session)
    assert [(s.component_data["round"], s.component_data["index"]) for s in steps] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (2, 0),
    ]
    assert {s.processing_status for s in steps} == {ProcessingStatus.COMPLETED}


def test_a_tool_error_is_told_to_the_model_and_the_turn_goes_on(caplog):
    class Failing(LLMAgent):
        tools = ["lookup", "find_order"]

        def lookup(self, key: str) -> str:
            """Look up."""
            raise RuntimeError("connection to db://admin:hunter2@db failed")

        async def find_order(self, number: int) -> str:
            """Find an order."""
            raise ToolError(f"There is no order {number}.")

    model = FakeModel(
        replies=[
            [FakeToolCall("lookup", {"key": "a"}, id="a"), FakeToolCall("find_order", {"number": 42}, id="b")],
            "Sorry, I could not find it.",
        ]
    )
    Failing.model = model
    session = start(Failing)
    assert send(session, "where is my order?")["response"] == "Sorry, I could not find it."
    told = {m["tool_call_id"]: m["content"] for m in model.requests[1].messages if m["role"] == "tool"}
    assert told == {
        "a": '{"error": {"code": "tool_error", "message": "The tool failed."}}',
        "b": '{"error": {"code": "tool_error", "message": "There is no order 42."}}',
    }
    lookup, find = steps_of(session)
    assert lookup.processing_status == find.processing_status == ProcessingStatus.FAILED
    assert lookup.component_data["error"] == {"code": "tool_error", "message": "The tool failed."}
    assert find.component_data["error"] == {"code": "tool_error", "message": "There is no order 42."}
    # The exception's text is in the log (with its traceback), never in the rows or the model's messages.
    assert "hunter2" in caplog.text
    assert not ConversationMessage.objects.filter(session=session, content__contains="hunter2").exists()
    assert "hunter2" not in str(lookup.component_data)


def test_bad_arguments_are_answered_with_their_error_without_running_the_tool():
    ran = []

    class Strict(LLMAgent):
        tools = ["add"]

        def add(self, a: int, b: int) -> int:
            """Add."""
            ran.append((a, b))
            return a + b

    model = FakeModel(
        replies=[
            [FakeToolCall("add", {"a": "x", "b": 1}, id="bad-args"), FakeToolCall("add", "{no", id="nj")],
            "Let me try again.",
        ]
    )
    Strict.model = model
    session = start(Strict)
    send(session, "add")
    assert ran == []
    told = {m["tool_call_id"]: m["content"] for m in model.requests[1].messages if m["role"] == "tool"}
    assert '"invalid_tool_arguments"' in told["bad-args"] and "a:" in told["bad-args"]
    assert '"invalid_tool_arguments"' in told["nj"] and "not valid JSON" in told["nj"]
    bad, not_json = steps_of(session)
    assert bad.component_data["arguments"] == {"a": "x", "b": 1}  # as the model sent them
    assert not_json.component_data["arguments"] == {}
    assert bad.component_data["error"]["code"] == "invalid_tool_arguments"
    assert bad.processing_status == not_json.processing_status == ProcessingStatus.FAILED


def test_an_unknown_tool_is_answered_with_unknown_tool():
    """FakeModel will not script a call of a tool it was not offered: the call goes to
    run_tool_calls directly, inside a real turn."""
    captured: dict = {}

    class Direct(LLMAgent):
        model = FakeModel()
        tools = ["known"]

        def known(self) -> str:
            """Known."""
            return "ok"

        async def get_response(self, message, request=None, **kwargs):
            call = {"id": "u1", "type": "function", "function": {"name": "subtract", "arguments": "{}"}}
            captured["messages"] = await run_tool_calls(self, self.get_tools(), [call])
            return "done"

    session = start(Direct)
    send(session, "go")
    [message] = captured["messages"]
    assert message["tool_call_id"] == "u1" and '"unknown_tool"' in message["content"]
    [step] = steps_of(session)
    assert step.component_data["error"]["code"] == "unknown_tool" and step.component_data["name"] == "subtract"


def test_a_tool_that_runs_too_long_times_out_and_the_model_is_told():
    release = threading.Event()

    class Slow(LLMAgent):
        tools = ["wait_async", "wait_sync"]
        tool_timeout = 0.3

        async def wait_async(self) -> str:
            """Wait."""
            await asyncio.Event().wait()
            return "never"

        def wait_sync(self) -> str:
            """Wait in a thread."""
            release.wait(WAIT)
            return "late"

    model = FakeModel(replies=[[FakeToolCall("wait_async", id="a"), FakeToolCall("wait_sync", id="s")], "Too slow."])
    Slow.model = model
    session = start(Slow)
    try:
        assert send(session, "go")["response"] == "Too slow."
    finally:
        release.set()  # the abandoned thread finishes
    told = [m["content"] for m in model.requests[1].messages if m["role"] == "tool"]
    message = "The tool did not finish within 0.3 seconds."
    assert told == [f'{{"error": {{"code": "tool_timeout", "message": "{message}"}}}}'] * 2
    for step in steps_of(session):
        assert step.processing_status == ProcessingStatus.FAILED
        assert step.component_data["error"] == {"code": "tool_timeout", "message": message}
        assert step.component_data["duration_ms"] >= 300


def test_after_max_tool_rounds_further_calls_are_not_run_and_the_reply_says_so():
    calls = []

    class Loops(LLMAgent):
        tools = ["again"]
        max_tool_rounds = 2

        def again(self) -> str:
            """Again."""
            calls.append(1)
            return "more"

    model = FakeModel(replies=[FakeReply(text="Trying. ", tool_calls=[FakeToolCall("again")])] * 3)
    Loops.model = model
    session = start(Loops)
    result = send(session, "loop")
    assert len(calls) == 2 and len(model.requests) == 3
    assert result["response"] == "Trying. Trying. Trying. \n\n" + Loops.rounds_exceeded_text
    last = steps_of(session)[-1]
    assert last.component_data["round"] == 2 and last.processing_status == ProcessingStatus.FAILED
    assert last.component_data["error"]["code"] == "tool_rounds_exceeded"


def test_context_is_injected_into_tools_and_changes_are_saved():
    class Counter(LLMAgent):
        tools = ["bump"]

        class Context(BaseModel):
            user_id: int = 7
            count: int = 0

        @with_context()
        def bump(self, by: int, user_id: int) -> str:
            """Bump the counter."""
            self.context.count += by
            return f"user {user_id} at {self.context.count}"

    model = FakeModel(replies=[FakeToolCall("bump", {"by": 2}), "Bumped."])
    Counter.model = model
    session = start(Counter)
    send(session, "bump")
    assert model.requests[0].tools[0]["function"]["parameters"]["properties"] == {"by": {"type": "integer"}}
    [step] = steps_of(session)
    assert step.component_data["arguments"] == {"by": 2} and step.content == "user 7 at 2"
    session.refresh_from_db()
    assert session.context["count"] == 2


def test_usage_of_every_round_is_summed_on_the_reply():
    class Tooling(LLMAgent):
        tools = ["ping"]

        def ping(self) -> str:
            """Ping."""
            return "pong"

    model = FakeModel(
        replies=[
            FakeReply(tool_calls=[FakeToolCall("ping")], usage={"prompt_tokens": 10, "completion_tokens": 3}),
            FakeReply(text="pong it is", usage={"prompt_tokens": 20, "completion_tokens": 4}),
        ]
    )
    Tooling.model = model
    result = send(start(Tooling), "ping")
    reply = ConversationMessage.objects.get(pk=result["message_id"])
    assert reply.metrics["prompt_tokens"] == 30 and reply.metrics["completion_tokens"] == 7


@pytest.mark.django_db(transaction=True)
def test_cancel_during_a_tool_stops_it_and_no_further_tool_or_model_call_starts():
    started = threading.Event()
    later = []

    class Cancellable(LLMAgent):
        tools = ["slow", "later"]

        async def slow(self) -> str:
            """Slow."""
            started.set()
            await asyncio.Event().wait()
            return "never"

        def later(self) -> str:
            """Later."""
            later.append(1)
            return "ran"

    model = FakeModel(replies=[FakeReply(text="Working on it. ", tool_calls=[FakeToolCall("slow")]), "x"])
    Cancellable.model = model
    session = start(Cancellable)
    turn = Background(lambda: send(session, "go"))
    turn.start()
    assert started.wait(WAIT)
    assert ConversationService.cancel_turn(session.id)["status"] == "cancelling"
    result = turn.outcome(WAIT)
    assert result["status"] == "cancelled" and result["response"] == "Working on it. "
    [step] = steps_of(session)
    assert step.processing_status == ProcessingStatus.CANCELLED and step.finished_at is not None
    assert later == [] and len(model.requests) == 1


def test_litellm_model_names_call_litellm_and_a_missing_litellm_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    name, call = completion_function("gpt-4o-mini")
    assert name == "gpt-4o-mini" and call is litellm.acompletion
    fake = FakeModel(model="scripted")
    assert completion_function(fake) == ("scripted", fake.acompletion)
    monkeypatch.setitem(sys.modules, "litellm", None)  # as if the extra were not installed
    with pytest.raises(ImproperlyConfigured, match=r"pip install 'django-ai-first\[llm\]'"):
        completion_function("gpt-4o-mini")
    with pytest.raises(ImproperlyConfigured, match="model must be"):
        completion_function(42)


def test_litellm_mock_response_drives_the_loop(monkeypatch):
    """litellm itself (its streaming mock: ``mock_response``; no network), not FakeModel."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    pytest.importorskip("litellm")

    class Mocked(LLMAgent):
        model = "gpt-4o-mini"
        completion_kwargs = {"mock_response": "Hello from litellm's mock."}

    session = start(Mocked)
    result = send(session, "hi")
    assert result["status"] == "success" and result["response"] == "Hello from litellm's mock."


def test_litellm_mock_response_with_tool_calls_drives_a_tool_round(monkeypatch):
    """litellm's own mock again (no network), with tools: a ``mock_response`` that is a
    ``ModelResponse`` holding text and two tool calls, which litellm streams as a provider's chunks,
    then a text answer. The calls run as steps of the reply and the model's answer follows them."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm")
    calls = [
        {"id": f"call_{key}", "type": "function", "function": {"name": "lookup", "arguments": json.dumps({"key": key})}}
        for key in ("a", "b")
    ]
    message = {"role": "assistant", "content": "Looking. ", "tool_calls": calls}
    scripted = [
        litellm.ModelResponse(
            model="gpt-4o-mini", choices=[{"index": 0, "finish_reason": "tool_calls", "message": message}]
        ),
        "Found both.",
    ]

    class Mocked(LLMAgent):
        model = "gpt-4o-mini"
        tools = ["lookup"]

        def lookup(self, key: str) -> str:
            """Look up."""
            return f"{key}!"

        def get_completion_kwargs(self) -> dict:
            return {"mock_response": scripted.pop(0)}  # one mocked answer per model call

    session = start(Mocked)
    result = send(session, "find a and b")
    assert result["status"] == "success" and result["response"] == "Looking. Found both."
    assert scripted == []  # the model was called twice: the tool round, then the answer
    steps = steps_of(session)
    assert [(s.component_data["call_id"], s.component_data["arguments"], s.content) for s in steps] == [
        ("call_a", {"key": "a"}, "a!"),
        ("call_b", {"key": "b"}, "b!"),
    ]
    assert {s.processing_status for s in steps} == {ProcessingStatus.COMPLETED}
    assert [s.component_data["text_offset"] for s in steps] == [len("Looking. ")] * 2


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({}, "declares no model"),
        ({"model": "m", "tools": ["nope"]}, "names 'nope'"),
        ({"model": "m", "tools": "search"}, "must be a list"),
        ({"model": "m", "max_tool_rounds": -1}, "max_tool_rounds"),
        ({"model": "m", "tool_timeout": 0}, "tool_timeout"),
    ],
)
def test_declaration_errors_name_the_fix(attributes, message):
    agent_cls = type("Declared", (LLMAgent,), dict(attributes))
    with pytest.raises(ImproperlyDeclaredAgent, match=message):
        register_agent("declared", agent_cls)


def test_a_declared_agent_is_async():
    class Declared(LLMAgent):
        model = "gpt-4o-mini"

    register_agent("declared", Declared)
    assert registry.get("declared").is_async is True


def test_an_async_tool_uses_the_async_orm_on_the_turns_connection():
    """The ORM from an ``async def`` tool runs on the turn's thread: inside this test's transaction
    it sees the test's rows."""

    class Counting(LLMAgent):
        tools = ["count_messages"]

        async def count_messages(self) -> int:
            """Count."""
            return await ConversationMessage.objects.filter(session=self.session).acount()

    model = FakeModel(replies=[FakeToolCall("count_messages"), "Counted."])
    Counting.model = model
    session = start(Counting)
    send(session, "count")
    assert model.requests[1].messages[-1]["content"] == "2"  # the user message and this step


def test_the_docs_shop_agents_run_as_written(monkeypatch):
    """docs/tools.md's ShopAgent and HandWrittenShopAgent (tests/example_agents.py), their litellm
    model name answered by FakeModel through ``FakeModel.patch("litellm")``."""
    from tests.example_agents import HandWrittenShopAgent, ShopAgent, use_litellm

    use_litellm(monkeypatch)
    for agent_cls in (ShopAgent, HandWrittenShopAgent):
        model = FakeModel(
            replies=[
                FakeReply(text="Let me see. ", tool_calls=[FakeToolCall("find_order", {"number": 42})]),
                "Order 42 has shipped.",
                FakeToolCall("find_order", {"number": 7}),
                "You have no order 7.",
            ]
        )
        register_agent("shop", agent_cls)
        session = ConversationService.create_session("shop", context={"user_id": 7})
        with model.patch("litellm"):
            assert send(session, "Where is order 42?")["response"] == "Let me see. Order 42 has shipped."
            assert send(session, "And order 7?")["response"] == "You have no order 7."
        assert [r.model for r in model.requests] == ["gpt-4o-mini"] * 4
        assert model.requests[0].messages[0]["role"] == "system"
        assert model.requests[1].messages[-1]["content"] == '{"number": 42, "status": "shipped", "total": 120.0}'
        assert model.requests[3].messages[-1]["content"] == (
            '{"error": {"code": "tool_error", "message": "You have no order 7."}}'
        )
        assert "user_id" not in str(model.requests[0].tools)


def test_the_docs_refund_waits_for_approval_above_100(monkeypatch):
    from tests.example_agents import ShopAgent, use_litellm

    use_litellm(monkeypatch)
    model = FakeModel(replies=[FakeToolCall("refund", {"number": 42, "amount": 150})])
    register_agent("shop", ShopAgent)
    session = ConversationService.create_session("shop", context={"user_id": 7})
    with model.patch("litellm"):
        send(session, "Refund 150 EUR on order 42")
    [step] = steps_of(session)
    assert step.processing_status == ProcessingStatus.AWAITING_APPROVAL
    assert step.component_data["arguments"] == {"number": 42, "amount": 150}


def test_the_docs_show_the_example_agents_as_tests_run_them():
    """docs/tools.md prints ShopAgent and HandWrittenShopAgent exactly as tests/example_agents.py
    holds them (the tests above run those)."""
    import inspect
    import re
    from pathlib import Path

    from tests import example_agents

    docs = (Path(__file__).resolve().parent.parent / "docs" / "tools.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, re.S)
    for agent_cls in (example_agents.ShopAgent, example_agents.HandWrittenShopAgent):
        source = inspect.getsource(agent_cls)
        assert any(source in block for block in blocks), f"{agent_cls.__name__} differs from docs/tools.md"


@pytest.mark.django_db(transaction=True)
def test_cancel_while_the_model_streams_stops_between_chunks_before_any_tool():
    from django_ai.conversations.testing import wait_until

    ran = []

    class Streaming(LLMAgent):
        tools = ["later"]

        def later(self) -> str:
            """Later."""
            ran.append(1)
            return "ran"

    model = FakeModel(replies=[FakeReply(text="word " * 2000, tool_calls=[FakeToolCall("later")])], chunk_delay=0.01)
    Streaming.model = model
    session = start(Streaming)
    turn = Background(lambda: send(session, "go"))
    turn.start()
    wait_until(
        lambda: ConversationMessage.objects.filter(session=session, message_type=MessageType.AGENT).exists(),
        timeout=WAIT,
        message="the reply never started streaming",
    )
    ConversationService.cancel_turn(session.id)
    result = turn.outcome(WAIT)
    assert result["status"] == "cancelled"
    assert result["response"].startswith("word ") and len(result["response"]) < len("word " * 2000)
    assert ran == [] and not steps_of(session)


def test_an_llm_agent_module_imports_before_the_app_registry_is_ready():
    """Agent modules declare LLMAgents at import, possibly while Django loads its apps: importing
    the llm package (and declaring an agent) loads no model. A fresh interpreter, no settings."""
    import subprocess
    from pathlib import Path

    code = (
        "import sys\n"
        "from django_ai.conversations.llm import LLMAgent\n"
        "class Declared(LLMAgent):\n"
        "    model = 'gpt-4o-mini'\n"
        "    tools = ['ping']\n"
        "    def ping(self) -> str:\n"
        "        '''Ping.'''\n"
        "        return 'pong'\n"
        "Declared.check_declaration()\n"
        "print(Declared.is_async, 'django_ai.conversations.models' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def shout(text: str) -> str:
    """Shout a text (a module-level function offered as a tool)."""
    return text.upper()


def test_tools_may_be_given_as_the_functions_themselves():
    class Functions(LLMAgent):
        class Context(BaseModel):
            suffix: str = "!"

        @with_context()
        def excite(self, text: str, suffix: str) -> str:
            """Add excitement."""
            return text + suffix

        def whisper(self, text: str) -> str:
            """Whisper."""
            return text.lower()

        tools = [excite, whisper, shout]  # the class's methods are bound to the agent

    model = FakeModel(
        replies=[
            [
                FakeToolCall("excite", {"text": "hi"}),
                FakeToolCall("whisper", {"text": "HI"}),
                FakeToolCall("shout", {"text": "hi"}),
            ],
            "ok",
        ]
    )
    Functions.model = model
    send(start(Functions), "go")
    assert model.requests[0].tool_names == ["excite", "whisper", "shout"]
    assert [m["content"] for m in model.requests[1].messages if m["role"] == "tool"] == ["hi!", "hi", "HI"]


def test_a_completion_function_that_does_not_stream_fits_the_loop_too():
    """A bare async function as the model, answering whole responses (stream ignored)."""
    script = FakeModel(replies=[FakeReply(text="Checking. ", tool_calls=[FakeToolCall("ping", id="p")]), "Pong."])

    async def complete(**request):
        return await script.acompletion(**{**request, "stream": False})

    class Whole(LLMAgent):
        model = complete  # a function, used as declared (not bound to the agent)
        tools = ["ping"]

        def ping(self) -> str:
            """Ping."""
            return "pong"

    session = start(Whole)
    result = send(session, "ping")
    assert result["response"] == "Checking. Pong."
    assert script.requests[1].messages[-1] == {"role": "tool", "tool_call_id": "p", "content": "pong"}
    reply = ConversationMessage.objects.get(pk=result["message_id"])
    assert reply.metrics["completion_tokens"] > 0


def test_prepare_tool_call_validates_without_running():
    from django_ai.conversations.tools import ToolCallError, prepare_tool_call

    ran = []

    def add(a: int, b: int = 1) -> int:
        """Add."""
        ran.append((a, b))
        return a + b

    prepared = prepare_tool_call([add], {"id": "c", "function": {"name": "add", "arguments": '{"a": "2"}'}})
    assert ran == [] and (prepared.name, prepared.call_id, prepared.is_async) == ("add", "c", False)
    assert prepared.arguments == {"a": 2, "b": 1} and prepared.raw_arguments == {"a": "2"}
    done = prepared.done(prepared.call())
    assert ran == [(2, 1)] and done.as_message() == {"role": "tool", "tool_call_id": "c", "name": "add", "content": "3"}
    with pytest.raises(ToolCallError, match="Invalid arguments"):
        prepare_tool_call([add], "add", {"a": "x"})
