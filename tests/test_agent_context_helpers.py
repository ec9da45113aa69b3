"""The helpers of ``django_ai.conversations.context`` an agent calls during its turn:
``ResponseStream``, ``display_widget``/``update_widget``, ``report_usage``, and their refusal
outside a turn. (``get_file_text`` has test_agent_file_text.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import EventName, ProcessingStatus
from django_ai.conversations.context import (
    ResponseStream,
    current_session,
    display_widget,
    get_file_text,
    report_usage,
    update_widget,
    wait_for_file_text,
)
from django_ai.conversations.exceptions import InvalidInput, NoActiveConversation, WidgetNotFound
from django_ai.conversations.models import ConversationMessage, ConversationWidget
from tests.helpers import run_agent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "call",
    [
        lambda: ResponseStream().write("x"),
        lambda: ResponseStream().start(),
        lambda: ResponseStream().__enter__(),
        lambda: display_widget("card", {}),
        lambda: update_widget("00000000-0000-0000-0000-000000000000", data={}),
        lambda: get_file_text("00000000-0000-0000-0000-000000000000"),
        lambda: wait_for_file_text("00000000-0000-0000-0000-000000000000", timeout=0),
        lambda: report_usage(prompt_tokens=1),
        lambda: current_session(),
    ],
    ids=[
        "write",
        "start",
        "with",
        "display_widget",
        "update_widget",
        "get_file_text",
        "wait_for_file_text",
        "report_usage",
        "current_session",
    ],
)
def test_helpers_outside_a_turn_raise_no_active_conversation(call):
    with pytest.raises(NoActiveConversation, match="inside get_response"):
        call()


def test_response_stream_end_without_start_is_harmless():
    stream = ResponseStream()
    stream.end()
    assert stream.content == "" and str(stream) == ""


@pytest.mark.django_db
def test_response_stream_explicit_start_write_end(events):
    outcome: dict[str, Any] = {}

    class Explicit(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            stream = ResponseStream()
            stream.start()
            stream.write("one ")
            stream.write(None)  # ignored
            stream.write("")  # ignored
            stream.write(2)
            stream.end()
            stream.end()  # idempotent
            try:
                stream.write("late")
            except RuntimeError as exc:
                outcome["late"] = str(exc)
            outcome["str"] = str(stream)
            return stream.content

    session, (result,) = run_agent(Explicit, "go")
    assert result["response"] == "one 2" and outcome["str"] == "one 2"
    assert "has ended" in outcome["late"]
    names = [n for n in events.names(channel=session.channel_name) if n != EventName.MODEL_CHANGE]
    assert names.count(EventName.STREAM_START) == 1 and names.count(EventName.STREAM_END) == 1
    assert names.count(EventName.TEXT_CHUNK) == 2
    agent = session.messages.get(message_type="agent")
    assert agent.stream_sequence == 2 and agent.processing_status == ProcessingStatus.COMPLETED


@pytest.mark.django_db
def test_agent_message_row_exists_while_streaming():
    seen: dict[str, Any] = {}

    class Watching(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            with ResponseStream() as stream:
                stream.write("first")
                row = ConversationMessage.objects.get(session=self.session, message_type="agent")
                seen["status"] = row.processing_status
            return stream.content

    run_agent(Watching, "go")
    assert seen["status"] == ProcessingStatus.STREAMING


@pytest.mark.django_db
def test_update_widget_in_a_later_turn(events):
    class Booking(ConversationAgent):
        class Context(BaseModel):
            widget_id: str = ""

        async def get_response(self, message, request=None, **kwargs):
            if not self.context.widget_id:
                widget = display_widget("slots", {"slots": ["10:00", "14:00"]}, display_data={"open": True})
                self.context.widget_id = str(widget.id)
                return "pick one"
            update_widget(self.context.widget_id, display_data={"open": False, "picked": message})
            try:
                update_widget("00000000-0000-0000-0000-000000000000", data={})
            except WidgetNotFound as exc:
                return f"booked {message}; {exc.code}"
            return "unreachable"

    session, results = run_agent(Booking, "show", "14:00")
    assert [r["response"] for r in results] == ["pick one", "booked 14:00; widget_not_found"]
    widget = ConversationWidget.objects.get(session=session)
    assert widget.data == {"slots": ["10:00", "14:00"]}
    assert widget.display_data == {"open": False, "picked": "14:00"}
    (update,) = events.of(EventName.WIDGET_UPDATE)
    assert update["widget_id"] == str(widget.id) and update["display_data"] == widget.display_data


@pytest.mark.django_db
def test_update_widget_cannot_reach_another_conversations_widget():
    from django_ai.conversations.testing import WidgetFactory

    other = WidgetFactory(data={"secret": 1})

    class Reaching(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            try:
                update_widget(message, data={"secret": 2})
            except WidgetNotFound:
                return "refused"
            return "changed"

    _, (result,) = run_agent(Reaching, str(other.id))
    assert result["response"] == "refused"
    other.refresh_from_db()
    assert other.data == {"secret": 1}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", {}), "widget_type"),
        ((None, {}), "widget_type"),
        (("x" * 101, {}), "widget_type"),
        (("card", ["not", "a", "dict"]), "data"),
        (("card", {"when": object()}), "data"),
        (("card", {"n": float("nan")}), "data"),
        (("card", {"text": "a\x00b"}), "data"),
        (("card", {}, "open"), "display_data"),
    ],
)
def test_display_widget_rejects_bad_input_and_writes_nothing(args, field):
    class BadWidget(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            try:
                display_widget(*args)
            except InvalidInput as exc:
                return f"{exc.field}: {exc.message}"
            return "accepted"

    session, (result,) = run_agent(BadWidget, "go")
    assert result["response"].startswith(f"{field}: ")
    assert ConversationWidget.objects.filter(session=session).count() == 0
    assert session.messages.filter(message_type="widget").count() == 0


@pytest.mark.django_db
def test_report_usage_lands_in_the_agent_message_metrics():
    class Counting(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            report_usage(prompt_tokens=10, completion_tokens=3)
            report_usage(prompt_tokens=5)
            return "ok"

    session, _ = run_agent(Counting, "x")
    metrics = session.messages.get(message_type="agent").metrics
    assert metrics["prompt_tokens"] == 15 and metrics["completion_tokens"] == 3
    assert metrics["chunks"] == 0 and metrics["total_ms"] >= 0


@pytest.mark.django_db
def test_report_usage_takes_an_llm_usage_dump_and_refuses_what_is_not_a_number():
    # The shape litellm / OpenAI usage objects dump to: totals, None, nested details, a cost.
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "completion_tokens_details": {"reasoning_tokens": 8, "audio_tokens": None},
        "prompt_tokens_details": {"cached_tokens": 100},
        "cost": 0.0015,
    }
    refused: list[str] = []

    class Reporting(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            report_usage(**usage)
            report_usage(**usage)
            for bad in ({"model": 4}, {"total_tokens": True}, {"cost": float("nan")}, {"details": {"x": "1"}}):
                try:
                    report_usage(**bad)
                except InvalidInput as exc:
                    refused.append(exc.field)
            return "ok"

    session, _ = run_agent(Reporting, "x")
    metrics = session.messages.get(message_type="agent").metrics
    assert metrics["prompt_tokens"] == 240 and metrics["completion_tokens"] == 60 and metrics["total_tokens"] == 300
    assert metrics["completion_tokens_details.reasoning_tokens"] == 16
    assert "completion_tokens_details.audio_tokens" not in metrics
    assert metrics["prompt_tokens_details.cached_tokens"] == 200
    assert metrics["cost"] == pytest.approx(0.003)
    assert refused == ["model", "total_tokens", "cost", "details.x"]
