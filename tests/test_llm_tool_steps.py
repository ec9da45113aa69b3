"""Tool steps as parts of the reply: one ``tool`` row per call, placed in the reply's text by
``text_offset`` and read back after a reload; the ``tool_call_*`` events with exactly the TS
table's fields; the next turn's model receives them; calls that need approval wait (the turn is
suspended) and run on resume with the Context of that moment; injected Context values appear in no
row, event or log. Real turns, SQLite / PostgreSQL, the in-memory realtime backend."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from django_ai.conversations import register_agent
from django_ai.conversations.constants import ApprovalStatus, EventName, MessageType, ProcessingStatus
from django_ai.conversations.decorators import with_context
from django_ai.conversations.llm import LLMAgent
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FakeModel, FakeReply, FakeToolCall
from django_ai.conversations.tools import requires_approval
from django_ai.conversations.turns.approval import answer_approval
from django_ai.conversations.turns.runner import process_pending
from tests.test_sdk_constants import ts_event_fields

pytestmark = pytest.mark.django_db

SECRET_USER = 98765  # an injected Context value: must not show anywhere


class Shop(LLMAgent):
    """Tools of the tests below; each test gives the class its own FakeModel."""

    tools = ["search", "price", "refund"]

    class Context(BaseModel):
        user_id: int = SECRET_USER
        balance: int = 100

    @with_context()
    def search(self, query: str, user_id: int) -> list[str]:
        """Search."""
        return [f"{query}-1", f"{query}-2"]

    def price(self, item: str) -> dict:
        """Price of an item."""
        return {"item": item, "eur": 12}

    @requires_approval(when=lambda agent, arguments: arguments["amount"] > 10)
    @with_context()
    def refund(self, amount: int, user_id: int, balance: int) -> str:
        """Refund an amount."""
        self.context.balance = balance + amount
        return f"Refunded {amount}; balance {self.context.balance}."


def shop(*replies) -> tuple[ConversationSession, FakeModel]:
    model = FakeModel(replies=list(replies))
    agent_cls = type("ShopUnderTest", (Shop,), {"model": model})
    register_agent("under-test", agent_cls)
    return ConversationService.create_session("under-test"), model


def steps_of(session) -> list[ConversationMessage]:
    rows = ConversationMessage.objects.filter(session=session, message_type=MessageType.TOOL)
    return sorted(rows, key=lambda r: (r.component_data["round"], r.component_data["index"]))


def parts(reply: ConversationMessage) -> list:
    """The reply's parts as the SDK builds them: its text cut at the steps' text_offset (ASCII here)."""
    text, found, position = reply.content, [], 0
    for step in steps_of(reply.session):
        offset = step.component_data["text_offset"]
        if text[position:offset]:
            found.append(text[position:offset])
        found.append(step.component_data["name"])
        position = offset
    if text[position:]:
        found.append(text[position:])
    return found


def test_steps_are_rows_in_order_within_the_text_and_survive_a_reload():
    session, _ = shop(
        FakeReply(
            text="Let me look. ",
            tool_calls=[FakeToolCall("search", {"query": "pro"}), FakeToolCall("price", {"item": "pro"})],
        ),
        FakeReply(text="Found it. ", tool_calls=[FakeToolCall("price", {"item": "seat"})]),
        "Pro is 12 EUR.",
    )
    result = ConversationService.send_message(session.id, "what is pro?")
    reply = ConversationMessage.objects.get(pk=result["message_id"])  # read back from the database
    assert reply.content == "Let me look. Found it. Pro is 12 EUR."
    assert parts(reply) == ["Let me look. ", "search", "price", "Found it. ", "price", "Pro is 12 EUR."]
    search, price, second = steps_of(session)
    assert search.reply_to_id == reply.reply_to_id and search.component_type == "search"
    assert search.component_data == {
        "call_id": "call_1_0",
        "name": "search",
        "arguments": {"query": "pro"},  # never user_id
        "round": 0,
        "index": 0,
        "text_offset": 13,
        "result": ["pro-1", "pro-2"],
        "error": None,
        "duration_ms": search.component_data["duration_ms"],
        "approval": None,
    }
    assert search.content == '["pro-1", "pro-2"]' and search.processing_status == ProcessingStatus.COMPLETED
    assert isinstance(search.component_data["duration_ms"], int)
    assert search.started_at is not None and search.finished_at >= search.started_at
    assert price.component_data["result"] == {"item": "pro", "eur": 12} and price.component_data["index"] == 1
    assert (second.component_data["round"], second.component_data["text_offset"]) == (1, 23)


def test_events_of_a_round_follow_the_ts_table(events):
    session, _ = shop(
        [FakeToolCall("search", {"query": "a"}, id="s"), FakeToolCall("price", {"item": "a"}, id="p")],
        "Done.",
    )
    ConversationService.send_message(session.id, "go")
    table = ts_event_fields()
    tool_events = [e for e in events.events if e.event.startswith("tool_call_")]
    for captured in tool_events:
        required, optional = table[captured.event]
        assert required <= set(captured.payload) <= required | optional, captured
    names = [(e.event, e.payload["call_id"]) for e in tool_events]
    assert names[:4] == [
        (EventName.TOOL_CALL_START, "s"),
        (EventName.TOOL_CALL_START, "p"),
        (EventName.TOOL_CALL_ARGUMENTS, "s"),
        (EventName.TOOL_CALL_ARGUMENTS, "p"),
    ]
    assert sorted(names[4:]) == [(EventName.TOOL_CALL_RESULT, "p"), (EventName.TOOL_CALL_RESULT, "s")]
    search = steps_of(session)[0]
    arguments = events.of(EventName.TOOL_CALL_ARGUMENTS)[0]
    assert arguments["message_id"] == str(search.pk) and arguments["reply_to"] == str(search.reply_to_id)
    assert arguments["arguments"] == {"query": "a"} and arguments["status"] == "processing"
    assert (arguments["round"], arguments["index"], arguments["text_offset"]) == (0, 0, 0)
    result = next(e for e in events.of(EventName.TOOL_CALL_RESULT) if e["call_id"] == "s")
    assert result["status"] == "completed" and result["result"] == ["a-1", "a-2"] and "error" not in result
    start = events.of(EventName.TOOL_CALL_START)[0]
    assert start == {**start, "name": "search", "round": 0, "index": 0, "reply_to": str(search.reply_to_id)}


def test_the_next_turn_sends_the_model_the_earlier_steps():
    session, model = shop(FakeToolCall("price", {"item": "pro"}, id="p1"), "Pro is 12 EUR.", "Yes, monthly.")
    ConversationService.send_message(session.id, "price of pro?")
    ConversationService.send_message(session.id, "per month?")
    call = {"id": "p1", "type": "function", "function": {"name": "price", "arguments": '{"item": "pro"}'}}
    assert model.requests[2].messages == [
        {"role": "user", "content": "price of pro?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "p1", "content": '{"item": "pro", "eur": 12}'},
        {"role": "assistant", "content": "Pro is 12 EUR."},
        {"role": "user", "content": "per month?"},
    ]


def test_a_call_that_needs_approval_waits_while_the_others_run(events):
    session, model = shop(
        FakeReply(
            text="One moment. ",
            tool_calls=[FakeToolCall("price", {"item": "pro"}, id="p"), FakeToolCall("refund", {"amount": 50}, id="r")],
        ),
    )
    result = ConversationService.send_message(session.id, "refund 50")
    price, refund = steps_of(session)
    assert price.processing_status == ProcessingStatus.COMPLETED
    assert refund.processing_status == ProcessingStatus.AWAITING_APPROVAL and refund.finished_at is None
    approval = refund.component_data["approval"]
    assert approval["status"] == ApprovalStatus.PENDING and approval["answered_by"] is None
    assert approval["expires_at"] > refund.started_at.isoformat()
    assert refund.component_data["arguments"] == {"amount": 50} and refund.content == ""
    waiting = next(e for e in events.of(EventName.TOOL_CALL_ARGUMENTS) if e["call_id"] == "r")
    assert waiting["status"] == "awaiting_approval" and waiting["approval"] == approval
    assert [e["call_id"] for e in events.of(EventName.TOOL_CALL_RESULT)] == ["p"]
    assert len(model.requests) == 1  # the model is not called while a call waits
    user = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert user.processing_status == ProcessingStatus.AWAITING_APPROVAL
    session.refresh_from_db()
    assert session.context["balance"] == 100  # the refund did not run


def test_an_approved_call_runs_on_resume_with_the_context_of_that_moment():
    session, model = shop(
        FakeReply(text="Checking. ", tool_calls=[FakeToolCall("refund", {"amount": 50}, id="r")]),
        "Refunded.",
    )
    result = ConversationService.send_message(session.id, "refund 50")
    [step] = steps_of(session)
    # The Context changes while the call waits: the tool sees the new balance.
    session.refresh_from_db()
    session.context = {**session.context, "balance": 1000}
    session.save()
    answer_approval(step.pk, approved=True)
    process_pending(session.pk)  # the task answer_approval schedules, run here
    step.refresh_from_db()
    assert step.processing_status == ProcessingStatus.COMPLETED
    assert step.content == "Refunded 50; balance 1050." and step.component_data["approval"]["status"] == "approved"
    assert model.requests[1].messages[-1] == {"role": "tool", "tool_call_id": "r", "content": step.content}
    reply = ConversationMessage.objects.get(reply_to_id=result["user_message_id"], message_type=MessageType.AGENT)
    assert reply.processing_status == ProcessingStatus.COMPLETED
    assert reply.content == "Checking. Refunded." and parts(reply) == ["Checking. ", "refund", "Refunded."]
    session.refresh_from_db()
    assert session.context["balance"] == 1050


def test_a_rejected_call_is_told_to_the_model_with_the_reason():
    session, model = shop(FakeToolCall("refund", {"amount": 50}, id="r"), "Fine, no refund.")
    ConversationService.send_message(session.id, "refund 50")
    [step] = steps_of(session)
    answer_approval(step.pk, approved=False, reason="too much")
    process_pending(session.pk)
    told = model.requests[1].messages[-1]
    assert told["tool_call_id"] == "r" and json.loads(told["content"])["error"] == {
        "code": "tool_rejected",
        "message": "The user refused this call: too much",
    }
    session.refresh_from_db()
    assert session.context["balance"] == 100


def test_a_small_refund_needs_no_approval_and_runs_at_once():
    session, _ = shop(FakeToolCall("refund", {"amount": 5}), "Done.")
    assert ConversationService.send_message(session.id, "refund 5")["response"] == "Done."
    [step] = steps_of(session)
    assert step.component_data["approval"] is None and step.content == "Refunded 5; balance 105."


def test_injected_context_values_appear_in_no_row_event_or_log(events, caplog):
    session, _ = shop(
        [FakeToolCall("search", {"query": "q"}), FakeToolCall("search", {"query": "q", "user_id": 1})],
        FakeToolCall("refund", {"amount": 99}),
    )
    caplog.set_level("DEBUG")
    ConversationService.send_message(session.id, "search")
    rows = ConversationMessage.objects.filter(session=session).values_list("content", "component_data", "metadata")
    assert str(SECRET_USER) not in str(list(rows))
    assert str(SECRET_USER) not in str([e.payload for e in events.events])
    assert str(SECRET_USER) not in caplog.text
    # A model that sends an injected parameter is refused, not obeyed.
    assert steps_of(session)[1].component_data["error"]["code"] == "invalid_tool_arguments"


def test_widgets_record_where_they_sit_in_the_reply():
    """display_widget's row text_offset (UTF-16 units), from an agent and from a sync tool
    running in its own thread during the loop."""
    from django_ai.conversations import ConversationAgent
    from django_ai.conversations.context import ResponseStream, display_widget

    class Writer(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            with ResponseStream() as stream:
                display_widget("first")
                stream.write("Voilà 😀 ")  # 9 UTF-16 units
                display_widget("second")
                stream.write("done")
            return stream.content

    register_agent("writer-test", Writer)
    session = ConversationService.create_session("writer-test")
    ConversationService.send_message(session.id, "go")
    widgets = ConversationMessage.objects.filter(session=session, message_type=MessageType.WIDGET)
    assert sorted((w.component_type, w.text_offset) for w in widgets) == [("first", 0), ("second", 9)]

    class Showing(LLMAgent):
        tools = ["show"]

        def show(self, name: str) -> str:
            """Show a card."""
            display_widget("card", {"name": name})
            return "shown"

    model = FakeModel(replies=[FakeReply(text="Here: ", tool_calls=[FakeToolCall("show", {"name": "pro"})]), "Done."])
    Showing.model = model
    register_agent("showing", Showing)
    session = ConversationService.create_session("showing")
    ConversationService.send_message(session.id, "show")
    card = ConversationMessage.objects.get(session=session, message_type=MessageType.WIDGET)
    assert card.text_offset == 6 and card.component_data == {"name": "pro"}
    [step] = steps_of(session)
    assert step.component_data["text_offset"] == 6 and step.content == "shown"


def test_rounds_after_a_resume_are_numbered_on():
    session, model = shop(
        FakeToolCall("refund", {"amount": 50}, id="r"),
        FakeToolCall("price", {"item": "pro"}, id="p"),
        "Refunded, and pro is 12 EUR.",
    )
    ConversationService.send_message(session.id, "refund 50 and price pro")
    answer_approval(steps_of(session)[0].pk, approved=True)
    process_pending(session.pk)
    assert [(s.component_data["call_id"], s.component_data["round"]) for s in steps_of(session)] == [
        ("r", 0),
        ("p", 1),
    ]
    assert [m["role"] for m in model.requests[2].messages] == ["user", "assistant", "tool", "assistant", "tool"]


def test_a_call_refused_before_it_runs_announces_its_row_failed_then_its_result(events):
    """Invalid arguments (or an unknown tool): tool_call_arguments says ``failed`` (protocol.md),
    and its tool_call_result follows with the error."""
    session, _ = shop([FakeToolCall("price", {"colour": "red"}, id="n")], "Sorry.")
    ConversationService.send_message(session.id, "go")
    [step] = steps_of(session)
    [arguments] = events.of(EventName.TOOL_CALL_ARGUMENTS)
    [result] = events.of(EventName.TOOL_CALL_RESULT)
    assert (arguments["message_id"], arguments["status"]) == (str(step.pk), "failed")
    assert (result["message_id"], result["status"]) == (str(step.pk), "failed")
    assert result["error"]["code"] == "invalid_tool_arguments" == step.component_data["error"]["code"]


def test_a_nul_in_a_tool_result_or_the_arguments_does_not_fail_the_turn():
    """PostgreSQL stores no NUL in text nor ``\\u0000`` in jsonb: the step records U+FFFD instead,
    and the reply goes on (nothing a tool returns fails the turn)."""
    session, _ = shop([FakeToolCall("price", {"item": "p\x00ro"}, id="p")], "Done.")
    result = ConversationService.send_message(session.id, "go")
    assert result["status"] == "success" and result["response"] == "Done."
    [step] = steps_of(session)
    assert step.processing_status == ProcessingStatus.COMPLETED
    assert step.component_data["arguments"] == {"item": "p\ufffdro"}
    assert step.component_data["result"] == {"item": "p\ufffdro", "eur": 12}
    assert "\x00" not in step.content and "\\u0000" not in step.content
