"""The demo agents (agents/), each answering through a real turn (SQLite / PostgreSQL, in-memory
realtime backend to read the events)."""

from __future__ import annotations

import threading

import pytest

from agents import chat_agents
from agents.sales import CATALOGUE, SalesAgent, offline_brain
from django_ai.conversations.actions import start_conversation
from django_ai.conversations.constants import EventName, MessageType, ProcessingStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession, ConversationWidget
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FakeRequest, FakeToolCall
from django_ai.conversations.testing.factories import FileFactory

pytestmark = pytest.mark.django_db

ANON = "anon_" + "d" * 43


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(chat_agents, "WORD_DELAY", 0)


def send(session, text, **kwargs):
    return ConversationService.send_message(session_id=session.id, message=text, **kwargs)


def test_echo_repeats():
    session = ConversationService.create_session("echo", anonymous_id=ANON)
    assert send(session, "ping")["response"] == "You said: ping"


def test_support_streams_with_its_context(events):
    session = ConversationService.create_session("support", anonymous_id=ANON, context={"support_tier": "premium"})
    result = send(session, "I was charged twice on my invoice")
    assert result["status"] == "success"
    assert "As a premium customer" in result["response"] and "Settings → Billing" in result["response"]
    # Streamed: many chunks whose text is the reply, and the row holds it too.
    chunks = events.of(EventName.TEXT_CHUNK)
    assert len(chunks) > 5
    assert events.text().strip() == result["response"]
    session.refresh_from_db()
    assert session.context["message_count"] == 1
    assert ConversationMessage.objects.get(pk=result["message_id"]).content == result["response"]


def test_support_says_hello_without_streaming(events):
    session = ConversationService.create_session("support", anonymous_id=ANON)
    assert send(session, "Hello there")["response"] == "Hello! How can I help you today?"
    assert send(session, "Thanks!")["response"] == "You're welcome! Anything else I can help with?"
    assert events.of(EventName.TEXT_CHUNK) == []


@pytest.mark.parametrize(
    ("message", "expected", "absent"),
    [
        # A greeting in front of a question: the question is answered.
        ("Hi, I was charged twice this month", "here is what I know about billing: Invoices are in", "Hello!"),
        # Words inside other words are not keywords: no booking form for "disappointment" or "recall".
        (
            "I can't recall my password, what a disappointment",
            "about signing in: Use “Forgot password”",
            "select your preferred time",
        ),
        (
            "My order never arrived and I want a refund",
            "about refunds and cancellations and orders and shipping",
            "“My order",
        ),
        ("Do you have a loyalty programme?", "I couldn't find an article on that yet.", "here is what I"),
    ],
)
def test_support_answers_what_the_message_asks(message, expected, absent):
    session = ConversationService.create_session("support", anonymous_id=ANON)
    response = send(session, message)["response"]
    assert expected in response and absent not in response, response
    assert not ConversationWidget.objects.filter(session=session).exists()


def test_support_appointment_slots_answer_back(events):
    session = ConversationService.create_session("support", anonymous_id=ANON)
    result = send(session, "Can I book a call?")
    assert result["response"] == "Please select your preferred time above."
    widget = ConversationWidget.objects.get(session=session)
    slots = widget.data["available_slots"]
    assert widget.widget_type == "appointment_form" and len(slots) == 3
    assert widget.data["answer_template"] == "Book {slot}"
    [event] = events.of(EventName.WIDGET)
    assert event["widget_id"] == str(widget.pk) and event["data"]["available_slots"] == slots

    # The page answers with the template filled in: the agent books that slot.
    answer = send(session, widget.data["answer_template"].format(slot=slots[1]))
    assert answer["response"].startswith(f"Done! Your call with support is booked for {slots[1]}")
    widget.refresh_from_db()
    assert widget.display_data == {"selected_slot": slots[1], "confirmed": True}
    assert events.of(EventName.WIDGET_UPDATE)[-1]["display_data"]["selected_slot"] == slots[1]
    session.refresh_from_db()
    assert session.context["booked_slot"] == slots[1]


def test_support_ignores_slots_it_never_offered():
    session = ConversationService.create_session("support", anonymous_id=ANON)
    result = send(session, "Book 2031-01-01 10:00")
    # Not a booking: a slot it did not offer starts a new appointment form instead.
    assert "booked" not in result["response"]
    assert ConversationWidget.objects.filter(session=session, widget_type="appointment_form").count() == 1


def test_upcoming_slots_skip_weekends():
    from datetime import UTC, datetime

    slots = chat_agents.upcoming_slots(datetime(2030, 1, 4, 9, 0, tzinfo=UTC))  # a Friday
    assert slots == ["2030-01-07 10:00", "2030-01-07 14:00", "2030-01-08 11:30"]


def test_file_analyst_reads_attached_files():
    session = ConversationService.create_session("files", anonymous_id=ANON)
    text = "Invoice 4711\nTotal due: 120 EUR\nPayable within 30 days"
    file = FileFactory(anonymous_id=ANON, session=session, filename="invoice.txt", text=text)
    result = send(session, "What is the total?", files=[file.pk])
    assert result["status"] == "success"
    assert "invoice.txt: 10 words" in result["response"]
    assert "Invoice 4711 Total due: 120 EUR" in result["response"]
    assert "• Total due: 120 EUR" in result["response"]


def test_file_analyst_answers_a_follow_up_from_earlier_files():
    session = ConversationService.create_session("files", anonymous_id=ANON)
    text = "Invoice 4711\nTotal due: 120 EUR\nPayable within 30 days"
    file = FileFactory(anonymous_id=ANON, session=session, filename="invoice.txt", text=text)
    send(session, "Here is my invoice", files=[file.pk])
    assert send(session, "What is the total?")["response"] == "In invoice.txt:\n• Total due: 120 EUR"
    assert send(session, "Who signed the contract?")["response"].startswith(
        "Nothing in invoice.txt matches your question."
    )


def test_file_analyst_without_files_and_with_a_failed_extraction():
    session = ConversationService.create_session("files", anonymous_id=ANON)
    assert send(session, "hi")["response"].startswith("Attach a file")
    broken = FileFactory(anonymous_id=ANON, session=session, filename="scan.pdf", failed=True)
    result = send(session, "read it", files=[broken.pk])
    assert result["response"] == "I couldn't find any text in scan.pdf."


def test_storyteller_streams_a_long_story(events):
    session = ConversationService.create_session("writer", anonymous_id=ANON)
    result = send(session, "a lighthouse")
    assert result["response"].startswith("A story about a lighthouse.\n\n")
    assert result["response"].endswith("The end.")
    assert len(result["response"].split()) > 150
    assert len(events.of(EventName.TEXT_CHUNK)) > 20


@pytest.mark.parametrize(
    ("message", "subject"),
    [
        ("A story about a lighthouse keeper", "a lighthouse keeper"),  # the demo page's suggestion
        ("Tell me a story about dragons!", "dragons"),
        ("Can you write a tale of a lost umbrella?", "a lost umbrella"),
        ("A dragon", "a dragon"),
    ],
)
def test_storyteller_tells_the_story_it_is_asked_for(message, subject):
    session = ConversationService.create_session("writer", anonymous_id=ANON)
    story = send(session, message)["response"]
    title, _, body = story.partition("\n\n")
    assert title == f"A story about {subject}."
    assert "A story about" not in body  # the request is not repeated inside the story
    # The subject runs through the story ("the dragon" for "a dragon").
    the_subject = subject.replace("a ", "the ", 1) if subject.startswith("a ") else subject
    assert body.count(the_subject) >= 3, body


def test_storyteller_tells_another_story_for_another_subject_and_the_same_one_again():
    session = ConversationService.create_session("writer", anonymous_id=ANON)
    keeper = send(session, "a lighthouse keeper")["response"]
    assert send(session, "a lighthouse keeper")["response"] == keeper
    stories = {
        send(session, subject)["response"].replace(subject, "X").replace(subject.replace("a ", "the ", 1), "X")
        for subject in (
            "a lighthouse keeper",
            "a lost umbrella",
            "a dragon",
            "a red bicycle",
            "a quiet library",
            "a brass key",
        )
    }
    assert len(stories) == 6  # not one story with the subject swapped in


def test_storyteller_without_a_subject_and_off_topic():
    session = ConversationService.create_session("writer", anonymous_id=ANON)
    assert send(session, "Tell me a story")["response"].startswith("Here is one of my favourites.\n\nOnce upon a time")
    assert send(session, "hello")["response"].startswith("Hello! What should the story be about?")
    assert send(session, "What can you do?")["response"].startswith("I tell stories.")


@pytest.mark.parametrize(
    ("tier", "tool_result", "expected"),
    [
        ("premium", "can access pro-features", "Yes: Pro features is available with your current plan (€12 / month)."),
        (
            "basic",
            "Upgrade required: pro-features needs the premium plan",
            "Not with your current plan: Pro features needs the premium plan.",
        ),
    ],
)
def test_sales_agent_calls_tools_with_context_injected(rf, tier, tool_result, expected):
    request = rf.post("/")
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore

    request.user = AnonymousUser()
    request.session = SessionStore()
    started = start_conversation("sales", context_kwargs={"tier": tier}, request=request)
    session = ConversationSession.objects.get(pk=started["session_id"])
    result = ConversationService.send_message(session.id, "Can I use pro-features?", request=request)
    assert result["status"] == "success"
    step = ConversationMessage.objects.get(session=session, message_type=MessageType.TOOL)
    # The model supplied only product_id; user_id and account_tier came from the Context.
    assert step.component_type == "check_eligibility" == step.component_data["name"]
    assert step.component_data["arguments"] == {"product_id": "pro-features"}
    assert tool_result in step.component_data["result"] and step.content == step.component_data["result"]
    assert step.processing_status == ProcessingStatus.COMPLETED
    # The answer words the tool's result for the customer instead of repeating it.
    assert result["response"].startswith(expected) and "User " not in result["response"]
    agent = ConversationMessage.objects.get(pk=result["message_id"])
    assert agent.message_type == MessageType.AGENT and agent.processing_status == ProcessingStatus.COMPLETED
    # The tool step sits before the answer's text (no text was streamed before the call).
    assert step.component_data["text_offset"] == 0 and step.reply_to_id == agent.reply_to_id
    assert agent.metrics.get("completion_tokens", 0) > 0
    assert not ConversationWidget.objects.filter(session=session).exists()  # steps, not tool_call widgets


def test_sales_agent_searches_the_catalogue():
    session = ConversationService.create_session("sales", anonymous_id=ANON)
    result = send(session, "What products do you sell?")
    for product in CATALOGUE.values():
        assert product["name"] in result["response"]
    step = ConversationMessage.objects.get(session=session, message_type=MessageType.TOOL)
    assert step.component_data["name"] == "search_products" and len(step.component_data["result"]) == 4


def test_sales_agent_answers_a_follow_up_from_the_history():
    """ "and the other one?" names no product: the offline model finds it in the earlier turn it is
    sent (history), as a real model would."""
    session = ConversationService.create_session("sales", anonymous_id=ANON, context={"account_tier": "premium"})
    first = send(session, "Can I use pro-features or api-access?")
    assert first["response"].startswith("Yes: Pro features")
    second = send(session, "And the other one?")
    assert second["response"].startswith("Yes: API access"), second["response"]
    steps = ConversationMessage.objects.filter(session=session, message_type=MessageType.TOOL).order_by("timestamp")
    assert [s.component_data["arguments"]["product_id"] for s in steps] == ["pro-features", "api-access"]


def test_sales_agent_applies_a_small_discount_without_asking():
    session = ConversationService.create_session("sales", anonymous_id=ANON)
    result = send(session, "Can I get a 5 % discount on team-seats?")
    assert result["response"] == "Done: 5 % off Extra team seats is applied to your account."
    step = ConversationMessage.objects.get(session=session, message_type=MessageType.TOOL)
    assert step.component_data["approval"] is None and step.processing_status == ProcessingStatus.COMPLETED
    session.refresh_from_db()
    assert session.context["discounts"] == {"team-seats": 5}


def test_sales_agent_asks_approval_for_a_large_discount():
    """A discount over 10 % is recorded as a step awaiting approval and the turn is suspended (the
    approval round trip itself is tested in tests/test_turn_approval.py)."""
    session = ConversationService.create_session("sales", anonymous_id=ANON)
    send(session, "I would like a 20% discount on pro-features")
    step = ConversationMessage.objects.get(session=session, message_type=MessageType.TOOL)
    assert step.processing_status == ProcessingStatus.AWAITING_APPROVAL
    assert step.component_data["arguments"] == {"product_id": "pro-features", "percent": 20}
    assert step.component_data["approval"]["status"] == "pending"
    session.refresh_from_db()
    assert session.context.get("discounts", {}) == {}  # not applied


def test_sales_tool_schema_hides_context_parameters():
    from django_ai.conversations.tools import tool_schema

    schema = tool_schema(SalesAgent().check_eligibility)
    assert list(schema["function"]["parameters"]["properties"]) == ["product_id"]


def test_offline_brain_answers_without_tools_when_nothing_matches():
    request = FakeRequest(
        model="x", messages=[{"role": "user", "content": "Tell me a joke"}], tools=None, stream=True, kwargs={}
    )
    assert "look through our products" in offline_brain(request)
    request.messages[0]["content"] = "is team seats available?"
    assert offline_brain(request) == FakeToolCall("check_eligibility", {"product_id": "team-seats"})


def test_sales_agent_uses_litellm_when_a_model_is_configured(monkeypatch):
    """The real-LLM path, with litellm's acompletion replaced by the scripted FakeModel (no network
    or key here): the agent must call litellm with the configured model name."""
    # litellm fetches a price list at import unless told to use its bundled copy (no network here).
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    pytest.importorskip("litellm")
    from django_ai.conversations.testing import FakeModel

    monkeypatch.setenv("DJANGO_AI_DEMO_MODEL", "gpt-4o-mini")
    model = FakeModel(replies=[FakeToolCall("search_products", {"query": "support"}), "Priority support it is."])
    session = ConversationService.create_session("sales", anonymous_id=ANON)
    with model.patch("litellm"):
        result = send(session, "I need help faster")
    assert result["response"] == "Priority support it is."
    assert [r.model for r in model.requests] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert model.requests[0].tool_names == ["search_products", "check_eligibility", "apply_discount"]


class _OpenAIStub:
    """A local OpenAI-compatible server that streams scripted chat.completion chunks (Server-Sent
    Events, as api.openai.com does) and records each request body: litellm's real client code
    runs against it, no network. Not a mock of our code: the provider is what cannot run here."""

    def __init__(self, replies: list[list[dict]]):
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.replies = list(replies)
        self.bodies: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.bodies.append(body)
                deltas = stub.replies.pop(0)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for delta, finish in [(d, None) for d in deltas] + [({}, "stop")]:
                    if finish and any("tool_calls" in d for d in deltas):
                        finish = "tool_calls"
                    chunk = {
                        "id": "chatcmpl-stub",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": body["model"],
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    }
                    if finish:
                        chunk["usage"] = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_sales_agent_streams_from_a_real_provider_through_litellm(monkeypatch):
    """DJANGO_AI_DEMO_MODEL with litellm's real OpenAI client against a local server: the request
    carries the tool definitions (no injected parameter), the streamed tool call runs, the second
    request carries the assistant's tool_calls and the result, the answer streams into the reply."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    pytest.importorskip("litellm")
    call = {"index": 0, "id": "call_stub", "type": "function", "function": {"name": "check_eligibility"}}
    replies = [
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{**call, "function": {**call["function"], "arguments": ""}}],
            },
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"product_id": '}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '"api-access"}'}}]},
        ],
        [{"role": "assistant", "content": "Yes, "}, {"content": "API access is included."}],
    ]
    with _OpenAIStub(replies) as provider:
        monkeypatch.setenv("DJANGO_AI_DEMO_MODEL", "openai/gpt-4o-mini")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", provider.url)
        monkeypatch.setenv("OPENAI_API_BASE", provider.url)
        session = ConversationService.create_session("sales", anonymous_id=ANON)
        result = send(session, "Can I use the API?")
    assert result["status"] == "success" and result["response"] == "Yes, API access is included."
    first, second = provider.bodies
    assert first["model"] == "gpt-4o-mini" and first["stream"] is True
    definitions = {t["function"]["name"]: t["function"]["parameters"] for t in first["tools"]}
    assert list(definitions) == ["search_products", "check_eligibility", "apply_discount"]
    assert list(definitions["check_eligibility"]["properties"]) == ["product_id"]  # user_id, tier injected
    assert first["messages"][0]["role"] == "system" and first["messages"][-1]["content"] == "Can I use the API?"
    assert second["messages"][-2]["tool_calls"][0]["id"] == "call_stub"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_stub",
        "content": "User 0 can access api-access.",
    }
    step = ConversationMessage.objects.get(session=session, message_type=MessageType.TOOL)
    assert step.component_data["arguments"] == {"product_id": "api-access"}
    # litellm asks an OpenAI-style provider for the stream's usage: both rounds are counted.
    assert first["stream_options"] == {"include_usage": True}
    reply = ConversationMessage.objects.get(pk=result["message_id"])
    assert (reply.metrics["prompt_tokens"], reply.metrics["completion_tokens"]) == (22, 10)


@pytest.mark.parametrize(
    ("approved", "answer", "discounts"),
    [
        (True, "Done: 20 % off Pro features is applied to your account.", {"pro-features": 20}),
        (False, "Understood: I did not apply that discount.", {}),
    ],
)
def test_sales_agent_continues_the_reply_once_the_discount_is_answered(approved, answer, discounts):
    from django_ai.conversations.turns.approval import answer_approval
    from django_ai.conversations.turns.runner import process_pending

    session = ConversationService.create_session("sales", anonymous_id=ANON)
    result = send(session, "I would like a 20% discount on pro-features")
    step = ConversationMessage.objects.get(session=session, message_type=MessageType.TOOL)
    answer_approval(step.pk, approved=approved, reason="" if approved else "not today")
    process_pending(session.pk)  # the task the answer schedules, run here
    reply = ConversationMessage.objects.get(reply_to_id=result["user_message_id"], message_type=MessageType.AGENT)
    assert reply.processing_status == ProcessingStatus.COMPLETED and reply.content == answer
    session.refresh_from_db()
    assert session.context["discounts"] == discounts


def test_notebook_keeps_notes_and_counts_turns_in_its_context():
    session = ConversationService.create_session("notes", anonymous_id=ANON)
    assert send(session, "What do you remember?")["response"].startswith("Nothing noted yet.")
    assert send(session, "Remember: milk")["response"] == (
        "Noted: “milk”.\n1. milk\n\n_Turn 2 of this conversation, 1 note(s) kept._"
    )
    reply = send(session, "note the  bread!")["response"]
    assert reply.startswith("Noted: “the bread”.\n1. milk\n2. the bread\n\n_Turn 3 ")
    assert send(session, "and?")["response"].startswith("You asked me to remember:\n1. milk\n2. the bread\n\n_Turn 4 ")
    session.refresh_from_db()
    assert session.context == {"turns": 4, "notes": ["milk", "the bread"]}
