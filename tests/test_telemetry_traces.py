"""OpenTelemetry traces of a turn, read back from the real SDK (tests/telemetry_support.py): the span
tree of an LLM agent's turn (file wait, agent, model calls, tool calls), the trace of the request
that saved the message continued by its turn (run here and on this process's background threads),
the extraction span, what never goes on a span (an injected Context value, a file's text, the
message's text, a tool's result), tool arguments only with TELEMETRY_TOOL_ARGUMENTS, and nothing
recorded with telemetry off. SQLite / PostgreSQL; the worker process: test_telemetry_worker.py."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent, register_agent, telemetry
from django_ai.conversations.constants import ExtractionStatus, ProcessingStatus
from django_ai.conversations.decorators import with_context
from django_ai.conversations.files.extraction.tasks import run_extraction
from django_ai.conversations.llm import LLMAgent
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FakeModel, FakeReply, FakeToolCall, FileFactory, UserFactory, wait_for_turns
from django_ai.conversations.tools import adispatch_tool_call, dispatch_tool_call
from tests.bridge_support import user_api
from tests.telemetry_support import all_attribute_values, recording

pytestmark = pytest.mark.django_db

SECRET = "SECRET-CONTEXT-VALUE-4417"  # injected from the Context into a tool
FILE_TEXT = "FILE-TEXT-OF-THE-UPLOAD-8093"
MESSAGE = "MESSAGE-TEXT-OF-THE-USER-2271"
RESULT = "TOOL-RESULT-OF-LOOKUP-5530"
ARGUMENT = "VISIBLE-ARGUMENT-6612"  # what the model sends to a tool


@pytest.fixture
def telemetry_spans():
    with recording() as recorded:
        yield recorded


class Desk(LLMAgent):
    """An LLM agent whose FakeModel (given per test) calls two tools in one round."""

    tools = ["lookup", "stock"]

    class Context(BaseModel):
        account: str = SECRET

    @with_context()
    def lookup(self, query: str, account: str) -> str:
        """Look a query up for the account."""
        assert account == SECRET
        return f"{RESULT} for {query}"

    def stock(self, item: str) -> dict:
        """Stock of an item."""
        return {"item": item, "left": 3, "note": RESULT}


def desk(*replies) -> FakeModel:
    model = FakeModel(replies=list(replies), model="fake-gpt")
    register_agent("under-test", type("DeskUnderTest", (Desk,), {"model": model}))
    return model


def two_tool_calls() -> FakeModel:
    return desk(
        FakeReply(
            text="Checking. ",
            tool_calls=[
                FakeToolCall("lookup", {"query": ARGUMENT}, id="call-lookup"),
                FakeToolCall("stock", {"item": "pen"}, id="call-stock"),
            ],
        ),
        "All done.",
    )


def ids(span) -> tuple[int, int]:
    return span.context.trace_id, span.context.span_id


def test_an_llm_turn_is_a_tree_of_spans_continuing_the_requests_trace(telemetry_spans, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    two_tool_calls()
    user = UserFactory()
    file = FileFactory(user=user, content=(FILE_TEXT + "\n").encode())
    assert run_extraction(file.pk).extraction_status == ExtractionStatus.DONE
    session = ConversationService.create_session("under-test", user=user)
    with trace.get_tracer("tests").start_as_current_span("POST /messages") as request_span:
        result = ConversationService.send_message(session.id, MESSAGE, user=user, files=[file])
    assert result["response"] == "Checking. All done."

    extraction = telemetry_spans.span("django_ai.extraction")
    assert extraction.parent is None  # run here, outside the request
    assert extraction.attributes["django_ai.file.id"] == str(file.pk)
    assert extraction.attributes["django_ai.extraction.outcome"] == "done"
    assert extraction.attributes["django_ai.extraction.extractor"]
    assert extraction.attributes["django_ai.file.content_type"] == "text/plain"
    assert isinstance(extraction.attributes["django_ai.extraction.duration_ms"], int)

    request_trace, request_id = ids(request_span)
    turn = telemetry_spans.span("django_ai.turn")
    agent = telemetry_spans.span("django_ai.agent")
    chats = telemetry_spans.spans("chat fake-gpt")
    tools = sorted((s for s in telemetry_spans.spans() if s.name.startswith("execute_tool ")), key=lambda s: s.name)
    assert len(chats) == 2 and [s.name for s in tools] == ["execute_tool lookup", "execute_tool stock"]
    assert not telemetry_spans.spans("django_ai.file_wait")  # the file was extracted before the turn
    # The tree: request > turn > agent > (chat, execute_tool ...), one trace.
    assert turn.context.trace_id == request_trace and turn.parent.span_id == request_id
    assert agent.parent.span_id == turn.context.span_id
    for child in [*chats, *tools]:
        assert child.context.trace_id == request_trace
        assert child.parent.span_id == agent.context.span_id, child.name

    user_message = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert turn.attributes["django_ai.conversation.id"] == str(session.pk)
    assert turn.attributes["django_ai.message.id"] == str(user_message.pk)
    assert turn.attributes["django_ai.agent"] == "under-test"
    assert turn.attributes["django_ai.owner.kind"] == "user"
    assert turn.attributes["django_ai.turn.outcome"] == ProcessingStatus.COMPLETED
    assert turn.attributes["django_ai.turn.queue_wait_ms"] >= 0
    assert turn.attributes["django_ai.turn.attempt"] == 1
    assert turn.status.status_code != StatusCode.ERROR
    assert agent.attributes["django_ai.agent"] == "under-test"

    first, second = sorted(chats, key=lambda s: s.start_time)
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.request.model"] == "fake-gpt"
    assert first.attributes["gen_ai.response.model"] == "fake-gpt"
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert first.attributes["gen_ai.usage.input_tokens"] > 0
    assert second.attributes["gen_ai.usage.output_tokens"] > 0

    lookup, stock = tools
    assert lookup.attributes["gen_ai.tool.name"] == "lookup"
    assert lookup.attributes["gen_ai.tool.call.id"] == "call-lookup"
    assert stock.attributes["gen_ai.tool.call.id"] == "call-stock"
    assert lookup.attributes["django_ai.tool.status"] == ProcessingStatus.COMPLETED
    assert "gen_ai.tool.call.arguments" not in lookup.attributes  # TELEMETRY_TOOL_ARGUMENTS is off

    # What must never be on a span: the Context's value, the file's text, the message, a result.
    values = all_attribute_values(telemetry_spans.spans())
    assert values
    for forbidden in (SECRET, FILE_TEXT, MESSAGE, RESULT, ARGUMENT):
        assert not [v for v in values if forbidden in v], forbidden


def test_tool_arguments_are_on_the_span_only_with_the_setting_and_never_injected_values(telemetry_spans, settings):
    settings.DJANGO_AI = {**settings.DJANGO_AI, "TELEMETRY_TOOL_ARGUMENTS": True}
    two_tool_calls()
    session = ConversationService.create_session("under-test")
    ConversationService.send_message(session.id, MESSAGE)
    lookup = telemetry_spans.span("execute_tool lookup")
    assert lookup.attributes["gen_ai.tool.call.arguments"] == '{"query": "%s"}' % ARGUMENT
    assert telemetry_spans.span("execute_tool stock").attributes["gen_ai.tool.call.arguments"] == '{"item": "pen"}'
    values = all_attribute_values(telemetry_spans.spans())
    for forbidden in (SECRET, MESSAGE, RESULT):
        assert not [v for v in values if forbidden in v], forbidden


def test_a_failing_tool_marks_its_span_with_the_code_and_type_only(telemetry_spans):
    class Broken(LLMAgent):
        tools = ["explode"]
        model = FakeModel(replies=[FakeToolCall("explode", {}, id="boom"), "Sorry."])

        def explode(self) -> str:
            """Fails."""
            raise ValueError(f"private detail {SECRET}")

    register_agent("under-test", Broken)
    session = ConversationService.create_session("under-test")
    assert ConversationService.send_message(session.id, "go")["response"] == "Sorry."
    span = telemetry_spans.span("execute_tool explode")
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "ValueError"
    assert span.attributes["django_ai.error.code"] == "tool_error"
    assert not [v for v in all_attribute_values([span]) if SECRET in v]
    assert telemetry_spans.span("django_ai.turn").status.status_code != StatusCode.ERROR


def test_a_failed_turn_is_an_error_span_without_the_exceptions_message(telemetry_spans):
    class Failing(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            raise RuntimeError(f"agent internals {SECRET}")

    register_agent("under-test", Failing)
    session = ConversationService.create_session("under-test")
    ConversationService.send_message(session.id, "go")
    turn, agent = telemetry_spans.span("django_ai.turn"), telemetry_spans.span("django_ai.agent")
    assert turn.attributes["django_ai.turn.outcome"] == ProcessingStatus.FAILED
    for span in (turn, agent):
        assert span.status.status_code == StatusCode.ERROR and span.attributes["error.type"] == "RuntimeError"
        assert not span.events  # no exception event: it would carry the message
    assert not [v for v in all_attribute_values(telemetry_spans.spans()) if SECRET in v]


def test_the_wait_for_an_attached_file_is_a_span_of_the_turn(telemetry_spans, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path

    class Patient(ConversationAgent):
        file_wait_timeout = 0.3  # the file stays pending: the turn waits, then starts without it

        def get_response(self, message, request=None, **kwargs):
            return "read"

    register_agent("under-test", Patient)
    user = UserFactory()
    session = ConversationService.create_session("under-test", user=user)
    ConversationService.send_message(session.id, "x", user=user, files=[FileFactory(user=user)])
    turn, wait = telemetry_spans.span("django_ai.turn"), telemetry_spans.span("django_ai.file_wait")
    assert wait.parent.span_id == turn.context.span_id
    assert telemetry_spans.span("django_ai.agent").parent.span_id == turn.context.span_id
    assert wait.attributes["django_ai.files.count"] == 1
    assert wait.attributes["django_ai.files.still_extracting"] == 1
    assert wait.attributes["django_ai.file_wait.ms"] >= 300
    assert turn.attributes["django_ai.turn.file_wait_ms"] >= 300


def test_hand_written_tool_dispatch_is_one_span_per_call(telemetry_spans):
    def weather(city: str) -> str:
        """Weather of a city."""
        return f"{RESULT} in {city}"

    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("agent code") as outer:
        call = dispatch_tool_call(
            [weather], {"id": "w1", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
        )
    assert call.result.startswith(RESULT)
    span = telemetry_spans.span("execute_tool weather")
    assert span.parent.span_id == outer.context.span_id
    assert span.attributes["gen_ai.tool.call.id"] == "w1"
    assert not [v for v in all_attribute_values([span]) if RESULT in v or "Oslo" in v]


def within_a_span_of_its_own(city: str) -> str:
    """A sync tool whose own work is a span (as an instrumented HTTP client or ORM makes one)."""
    with trace.get_tracer("tests").start_as_current_span("the tool's own work"):
        return f"{RESULT} in {city}"


@pytest.mark.parametrize("kind", ["sync agent", "async agent"])
def test_what_a_hand_dispatched_sync_tool_does_is_within_its_span(telemetry_spans, kind):
    # An async agent's sync tool runs on the turn's thread: its context must go with it there.
    if kind == "sync agent":

        class Dispatching(ConversationAgent):
            def get_response(self, message, request=None, **kwargs):
                return dispatch_tool_call(
                    [within_a_span_of_its_own], "within_a_span_of_its_own", {"city": "Oslo"}
                ).result

    else:

        class Dispatching(ConversationAgent):  # type: ignore[no-redef]
            async def get_response(self, message, request=None, **kwargs):
                call = await adispatch_tool_call(
                    [within_a_span_of_its_own], "within_a_span_of_its_own", {"city": "Oslo"}
                )
                return call.result

    register_agent("under-test", Dispatching)
    session = ConversationService.create_session("under-test")
    assert ConversationService.send_message(session.id, "go")["status"] == "success"
    agent, tool = telemetry_spans.span("django_ai.agent"), telemetry_spans.span("execute_tool within_a_span_of_its_own")
    assert tool.parent.span_id == agent.context.span_id
    assert telemetry_spans.span("the tool's own work").parent.span_id == tool.context.span_id


@pytest.mark.django_db(transaction=True)
def test_a_turn_on_the_processs_background_threads_continues_the_bridge_requests_trace(telemetry_spans):
    # The bridge's message create commits; the turn task goes to a background thread of this
    # process (the default ImmediateBackend, IN_PROCESS_TURN_THREADS) with the request's context.
    class Echo(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            return "echo"

    register_agent("under-test", Echo)
    user = UserFactory()
    session = ConversationService.create_session("under-test", user=user)
    api = user_api(user)
    with trace.get_tracer("tests").start_as_current_span("POST message") as request_span:
        response = api.create("message", {"session": str(session.pk), "content": MESSAGE})
    assert response.status_code == 201, response.content
    wait_for_turns(30)
    turn = telemetry_spans.span("django_ai.turn")
    assert turn.context.trace_id == request_span.context.trace_id
    assert turn.parent.span_id == request_span.context.span_id
    assert telemetry_spans.span("django_ai.agent").parent.span_id == turn.context.span_id
    assert turn.attributes["django_ai.turn.outcome"] == ProcessingStatus.COMPLETED


def test_telemetry_off_records_nothing(telemetry_spans, settings):
    settings.DJANGO_AI = {**settings.DJANGO_AI, "TELEMETRY_ENABLED": False}
    telemetry.reset()
    assert not telemetry.enabled()
    two_tool_calls()
    session = ConversationService.create_session("under-test")
    with telemetry.span("django_ai.turn", {"x": 1}) as handle:
        handle.set(y=2)
    assert telemetry.trace_carrier() == {}
    assert ConversationService.send_message(session.id, MESSAGE)["response"] == "Checking. All done."
    assert telemetry_spans.spans() == []
    assert telemetry_spans.metrics() == []


def test_telemetry_off_a_span_or_continued_trace_makes_no_object_per_call(settings):
    # Off, each call is the check of a boolean: the same stateless context manager every time.
    settings.DJANGO_AI = {**settings.DJANGO_AI, "TELEMETRY_ENABLED": False}
    telemetry.reset()
    assert telemetry.span("django_ai.turn", {"x": 1}) is telemetry.span("chat gpt")
    assert telemetry.continued_from({"traceparent": "00-x"}) is telemetry.continued_from(None)
    with telemetry.span("django_ai.agent") as outer, telemetry.span("django_ai.agent") as inner:
        assert outer is inner
        outer.set(x=1)
        outer.error(RuntimeError("x"))
    with telemetry.continued_from({"traceparent": "00-x"}), telemetry.continued_from({"traceparent": "00-x"}):
        pass
