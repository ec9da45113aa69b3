"""Every example of the user's README (SEED_README.md) works as written.

The README's agent classes live once in tests/example_agents.py, as literally as possible; the
settings and calls of each example are copied here. Only what the README leaves to the reader is
filled in (``your_ai_function``, ``fetch_user_data``, the request). Each test runs the example
through the public API against the real database and the in-memory realtime backend.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from django_ai.conversations.constants import EventName, MessageType, ProcessingStatus
from django_ai.conversations.files.extraction.plain import PlainTextExtractor
from django_ai.conversations.models import ConversationMessage, ConversationSession, ConversationWidget, File
from django_ai.conversations.testing import FileFactory, UserFactory
from tests import example_agents
from tests.example_agents import (
    EchoAgent,
    FileAgent,
    MyAgent,
    SalesAgent,
    SmartAgent,
    StreamingAgent,
    SupportAgent,
    UtilitiesAgent,
    WidgetAgent,
    YourAgent,
)
from tests.helpers import make_request, same_visitor

pytestmark = pytest.mark.django_db

# The README's lines as written there, its quotes and line breaks included: the formatter leaves
# them be.
# fmt: off


def register_quick_start_agents():
    # --- Quick Start, 2. Register Your Agent (your_app/agents.py) ---
    from django_ai.conversations.registry import register_agent

    register_agent("support", SupportAgent)
    register_agent("sales", SalesAgent)


@pytest.fixture
def quick_start():
    register_quick_start_agents()


# --- Quick Start tests ------------------------------------------------------------------------------


def test_register_agent_lines_register_both_paths(quick_start):
    from django_ai.conversations.registry import registry

    assert registry.get("support") is SupportAgent
    assert registry.get("sales") is SalesAgent
    # The import path reaches the same class.
    assert registry.get("tests.example_agents.SupportAgent") is SupportAgent


def test_quick_start_hello_is_a_simple_reply_without_stream_events(quick_start, events):
    session = ConversationSession.objects.create(agent_path="support")
    from django_ai.conversations.service import ConversationService

    result = ConversationService.send_message(session_id=session.id, message="Hello there")

    assert result["status"] == "success"
    assert result["response"] == "Hello! How can I help you today?"
    assert result["session_id"] == str(session.id)
    assert events.of(EventName.TEXT_CHUNK) == []
    agent = ConversationMessage.objects.get(session=session, message_type="agent")
    assert agent.content == "Hello! How can I help you today?"
    assert agent.processing_status == ProcessingStatus.COMPLETED


def test_quick_start_other_messages_stream_text_chunk_events(quick_start, events):
    from django_ai.conversations.service import ConversationService

    session = ConversationSession.objects.create(agent_path="support")
    result = ConversationService.send_message(session_id=session.id, message="My invoice is wrong")

    expected = "Let me check that for youHere's what I found..."
    assert result == {
        **result,
        "status": "success",
        "response": expected,
        "session_id": str(session.id),
    }
    agent = ConversationMessage.objects.get(session=session, message_type=MessageType.AGENT)
    assert agent.content == expected
    assert agent.stream_sequence == 2
    chunks = events.of(EventName.TEXT_CHUNK, channel=session.channel_name)
    assert [c["text"] for c in chunks] == ["Let me check that for you", "Here's what I found..."]
    assert [c["sequence"] for c in chunks] == [1, 2]
    assert {c["message_id"] for c in chunks} == {str(agent.id)}
    names = events.names(channel=session.channel_name)
    assert names.index(EventName.STREAM_START) < names.index(EventName.TEXT_CHUNK) < names.index(EventName.STREAM_END)


def test_settings_example_djangoai_pusher_is_accepted():
    from django.core.checks import run_checks

    from django_ai.conversations.conf import ai_settings

    # 3. Configure Settings
    DJANGO_AI_PUSHER = {
        'APP_ID': 'your_pusher_app_id',
        'KEY': 'your_pusher_key',
        'SECRET': 'your_pusher_secret',
        'CLUSTER': 'us2'
    }
    with override_settings(DJANGO_AI_PUSHER=DJANGO_AI_PUSHER):
        assert ai_settings.pusher == DJANGO_AI_PUSHER
        serious = [m for m in run_checks() if m.is_serious() and (m.id or "").startswith("django_ai")]
        # The structure is accepted; only the placeholder app id is named (Pusher's are numeric).
        assert [(m.id, "APP_ID is 'your_pusher_app_id'" in m.msg) for m in serious] == [("django_ai.E014", True)]
    with override_settings(DJANGO_AI_PUSHER={**DJANGO_AI_PUSHER, 'APP_ID': '1234567'}):
        assert [m for m in run_checks() if m.is_serious() and (m.id or "").startswith("django_ai")] == []


from django_ai.conversations.files.extraction import ExtractionResult, TextExtractor  # noqa: E402


class CustomExtractor(TextExtractor):
    """Stands for ``your_app.extractors.CustomExtractor`` of the README: upper-cases text files."""

    name = "custom-upper"

    def extract(self, source, *, timeout, max_length):
        return ExtractionResult(text=source.read().decode().upper()[:max_length])


def test_settings_example_custom_text_extractor_path(settings, tmp_path):
    from django.core.checks import run_checks

    from django_ai.conversations.conf import ai_settings
    from django_ai.conversations.files.extraction.tasks import run_extraction

    settings.MEDIA_ROOT = tmp_path
    # Custom text extraction
    DJANGO_AI = {
        'TEXT_EXTRACTOR': f'{__name__}.CustomExtractor'
    }
    with override_settings(DJANGO_AI=DJANGO_AI):
        assert ai_settings.TEXT_EXTRACTOR is CustomExtractor
        assert [m for m in run_checks() if m.is_serious() and (m.id or "").startswith("django_ai")] == []
        file = FileFactory(content=b"invoice 42\n")
        run_extraction(file.pk)

    file.refresh_from_db()
    assert file.extraction_status == "done" and file.extractor == "custom-upper"
    assert file.extracted_text.strip() == "INVOICE 42"


def test_use_from_your_application_authenticated(quick_start):
    request = make_request(UserFactory())

    # 4. Use from Your Application
    from django_ai.conversations.actions import start_conversation
    from django_ai.conversations.service import ConversationService

    # Create conversation session
    session = start_conversation(
        agent_path="support",
        context_kwargs={"tier": "premium"},
        request=request
    )

    # Send message
    result = ConversationService.send_message(
        session_id=session['session_id'],
        message="I need help with billing",
        user=request.user,
        request=request
    )

    assert session["status"] == "active" and session["agent_path"] == "support"
    assert result["status"] == "success"
    assert result["response"] == "Let me check that for youHere's what I found..."
    assert result["session_id"] == session["session_id"]
    row = ConversationSession.objects.get(pk=session["session_id"])
    assert row.user == request.user and row.anonymous_id == ""
    assert row.context == {"user_id": request.user.id, "support_tier": "premium"}
    assert list(row.messages.values_list("message_type", "content")) == [
        ("user", "I need help with billing"),
        ("agent", "Let me check that for youHere's what I found..."),
    ]


def test_use_from_your_application_anonymous_visitor(quick_start):
    from django_ai.conversations.actions import start_conversation
    from django_ai.conversations.conf import ai_settings
    from django_ai.conversations.service import ConversationService

    request = make_request()
    session = start_conversation(agent_path="support", context_kwargs={"tier": "premium"}, request=request)

    anonymous_id = request.session[ai_settings.ANONYMOUS_ID_SESSION_KEY]
    assert session["anonymous_id"] == anonymous_id
    assert len(anonymous_id) >= 40
    row = ConversationSession.objects.get(pk=session["session_id"])
    assert row.user is None and row.anonymous_id == anonymous_id
    assert row.context == {"user_id": 0, "support_tier": "premium"}

    later = same_visitor(request)
    result = ConversationService.send_message(
        session_id=session['session_id'], message="hello", user=later.user, request=later
    )
    assert result["status"] == "success"
    assert result["response"] == "Hello! How can I help you today?"


# --- Core Features ----------------------------------------------------------------------------------


def test_real_time_streaming(events):
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService

    register_agent("streaming", StreamingAgent)
    session = ConversationService.create_session(agent_path="streaming")
    result = ConversationService.send_message(session_id=session.id, message="the weather")

    expected = "Processing your requestYou asked about the weather "
    assert result["response"] == expected
    agent = session.messages.get(message_type="agent")
    assert agent.content == expected
    assert events.text(agent.id) == expected
    assert len(events.of(EventName.TEXT_CHUNK)) == 6
    end = events.of(EventName.STREAM_END)
    assert len(end) == 1 and end[0]["sequence"] == 6 and end[0]["message_id"] == str(agent.id)


def test_context_management_counter_persists_across_turns():
    from django_ai.conversations.actions import start_conversation
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService

    register_agent("my", MyAgent)
    user = UserFactory()
    request = make_request(user)
    session = start_conversation(agent_path="my", context_kwargs={"tier": "pro"}, request=request)

    replies = [
        ConversationService.send_message(session["session_id"], f"message {n}", user=user, request=request)["response"]
        for n in range(3)
    ]

    assert replies == [f"Message #{n} for user {user.id}" for n in (1, 2, 3)]
    row = ConversationSession.objects.get(pk=session["session_id"])
    assert row.context == {"user_id": user.id, "subscription_tier": "pro", "conversation_count": 3}


def test_context_injection(quick_start):
    from django_ai.conversations.actions import start_conversation
    from django_ai.conversations.service import ConversationService

    premium = start_conversation("sales", context_kwargs={"user_id": 7, "account_tier": "premium"})
    basic = start_conversation("sales", context_kwargs={"user_id": 8, "account_tier": "basic"})

    replies = [ConversationService.send_message(s["session_id"], "can I?")["response"] for s in (premium, basic)]
    assert replies == ["User 7 can access pro-features", "Upgrade required"]

    import inspect

    # What an LLM library reads: only product_id.
    agent = SalesAgent(context=SalesAgent.Context(user_id=1, account_tier="basic"))
    assert list(inspect.signature(agent.check_eligibility).parameters) == ["product_id"]


def test_rich_ui_widgets(events):
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService

    register_agent("widgets", WidgetAgent)
    session = ConversationService.create_session(agent_path="widgets")
    result = ConversationService.send_message(session.id, "I want to Book Appointment please")

    assert result["response"] == "Please select your preferred time above."
    data = {"available_slots": ["2024-01-15 10:00", "2024-01-15 14:00"], "callback_url": "/api/book-appointment"}
    widget = ConversationWidget.objects.get(session=session)
    assert widget.widget_type == "appointment_form" and widget.data == data
    message = widget.message
    assert message.message_type == MessageType.WIDGET
    assert message.component_type == "appointment_form" and message.component_data == data
    assert list(session.messages.values_list("message_type", flat=True)) == ["user", "widget", "agent"]
    (event,) = events.of(EventName.WIDGET, channel=session.channel_name)
    assert event["widget_id"] == str(widget.id)
    assert event["message_id"] == str(message.id)
    assert event["widget_type"] == "appointment_form" and event["data"] == data

    # No widget when the message does not ask for one.
    ConversationService.send_message(session.id, "hi")
    assert ConversationWidget.objects.filter(session=session).count() == 1


def test_file_processing(settings, tmp_path):
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService

    settings.MEDIA_ROOT = tmp_path
    register_agent("files", FileAgent)
    user = UserFactory()
    session = ConversationService.create_session(agent_path="files", user=user)
    report = FileFactory(user=user, filename="report.pdf", text="Quarterly revenue grew " + "x" * 300)
    notes = FileFactory(user=user, filename="notes.txt", text="Call Bob on Monday.")
    scan = FileFactory(user=user, filename="scan.png")  # extraction never runs: no text
    # The turn waits this long for the pending scan, then the agent runs without its text.
    settings.DJANGO_AI = {**getattr(settings, "DJANGO_AI", {}), "FILE_WAIT_TIMEOUT": 0.3}

    files = [report, notes.id, str(scan.id)]
    result = ConversationService.send_message(session.id, "What is in these?", user=user, files=files)

    assert result["status"] == "success"
    assert result["response"] == (
        "File analysis:\n"
        f"From report.pdf: {('Quarterly revenue grew ' + 'x' * 300)[:200]}...\n"
        "From notes.txt: Call Bob on Monday...."
    )
    user_message = session.messages.get(message_type="user")
    assert set(user_message.files.all()) == {report, notes, scan}
    assert set(File.objects.filter(session=session)) == {report, notes, scan}

    later = ConversationService.send_message(session.id, "and now?", user=user)
    assert later["response"] == "Upload a file and I'll analyze it."


class SlowPlainText(PlainTextExtractor):
    """The real plain-text extractor, a second slower: the message is sent while it runs."""

    def extract(self, source, *, timeout, max_length):
        time.sleep(1.0)
        return super().extract(source, timeout=timeout, max_length=max_length)


@pytest.mark.django_db(transaction=True)
def test_file_processing_right_after_an_upload(settings, tmp_path):
    """The README's FileAgent gets the text of a file uploaded a moment before, while its
    extraction is still running: the turn waits for attached files (FILE_WAIT_TIMEOUT)."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService
    from django_ai.conversations.testing import wait_for_turns

    settings.MEDIA_ROOT = tmp_path
    settings.DJANGO_AI = {**getattr(settings, "DJANGO_AI", {}), "TEXT_EXTRACTOR": f"{__name__}.SlowPlainText"}
    register_agent("files", FileAgent)
    user = UserFactory()
    client = Client()
    client.force_login(user)
    upload = client.post(
        "/api/conversations/files/",
        {"file": SimpleUploadedFile("notes.txt", b"Call Bob on Monday.", content_type="text/plain")},
    )
    assert upload.status_code == 201, upload.content
    file_id = upload.json()["data"]
    assert File.objects.get(pk=file_id).extraction_status in ("pending", "processing")
    session = ConversationService.create_session(agent_path="files", user=user)

    result = ConversationService.send_message(session.id, "What is in this?", user=user, files=[file_id])

    assert result["status"] == "success"
    assert result["response"] == "File analysis:\nFrom notes.txt: Call Bob on Monday....", result
    reply = session.messages.get(message_type="agent")
    assert reply.metrics["file_wait_ms"] > 0
    wait_for_turns(timeout=30)


# --- API Reference ----------------------------------------------------------------------------------


def api_reference_example(request, message):
    """The README's ConversationService lines (API Reference) as written, with the message given."""
    from django_ai.conversations.service import ConversationService

    # Create session
    session = ConversationService.create_session(
        agent_path="support",
        user=request.user,
        anonymous_id="guest_123",  # For anonymous users
        context={"custom": "data"}
    )

    # Send message
    result = ConversationService.send_message(
        session_id=session.id,
        message=message,
        user=request.user,
        request=request
    )
    return session, result


def test_conversation_service_api_anonymous(quick_start):
    from django_ai.conversations.conf import ai_settings

    request = make_request()
    # The application knows its guest by an id it keeps in the visitor's session.
    request.session[ai_settings.ANONYMOUS_ID_SESSION_KEY] = "guest_123"

    session, result = api_reference_example(request, "user message")

    assert session.user is None and session.anonymous_id == "guest_123"
    # Keys the Context does not declare are dropped by its validation; its defaults fill the rest.
    assert session.context == {"user_id": 0, "support_tier": "basic"}
    assert result["status"] == "success" and result["session_id"] == str(session.id)
    assert result["response"] == "Let me check that for youHere's what I found..."


def test_conversation_service_api_signed_in_user_owns_the_session(quick_start):
    request = make_request(UserFactory())
    session, result = api_reference_example(request, "hello")
    assert session.user == request.user and session.anonymous_id == ""
    assert result["response"] == "Hello! How can I help you today?"


def test_actions_start_conversation(quick_start):
    request = make_request(UserFactory())

    from django_ai.conversations.actions import start_conversation

    # Higher-level API
    session = start_conversation(
        agent_path="support",
        context_kwargs={"tier": "premium"},
        request=request
    )

    assert {"session_id", "status", "agent_path"} <= set(session)
    assert session["status"] == "active" and session["agent_path"] == "support"
    row = ConversationSession.objects.get(pk=session["session_id"])
    assert row.context["support_tier"] == "premium"


def test_context_utilities(events, settings, tmp_path):
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService

    settings.MEDIA_ROOT = tmp_path
    register_agent("utilities", UtilitiesAgent)
    session = ConversationService.create_session(agent_path="utilities")
    file = FileFactory(session=session, text="file body")

    result = ConversationService.send_message(session.id, "go", files=[file])

    assert result["response"] == "chunkanother chunk|chunkanother chunk|file body"
    assert events.text() == "chunkanother chunk"
    assert ConversationWidget.objects.get(session=session).data == {"data": "here"}
    assert len(events.of(EventName.WIDGET)) == 1


def test_models_section(quick_start):
    user = get_user_model().objects.create_user("modeluser")

    from django_ai.conversations.models import (
        ConversationSession,  # Conversation with an agent
        ConversationMessage,  # Individual message
        File                  # Uploaded file
    )

    # Sessions track conversations
    session = ConversationSession.objects.create(
        agent_path="support",
        user=user,  # or None
        context={"initial": "data"},
        status="active"  # active/completed/archived
    )

    from django_ai.conversations.service import ConversationService

    ConversationService.send_message(session.id, "hello", user=user)

    # Messages are automatically created
    message = ConversationMessage.objects.filter(
        session=session,
        message_type="agent"  # user/agent/system/widget
    )

    assert [m.content for m in message] == ["Hello! How can I help you today?"]
    assert File.objects.count() == 0
    statuses = [c[0] for c in ConversationSession._meta.get_field("status").choices]
    # The README's three, and soft-deleted conversations (docs/conversations.md).
    assert statuses == ["active", "completed", "archived", "deleted"]
    message_types = [c[0] for c in ConversationMessage._meta.get_field("message_type").choices]
    # The README's four, and the tool steps of issue 13 (docs/tools.md, "Tool steps").
    assert message_types == ["user", "agent", "system", "widget", "tool"]


# --- Examples ---------------------------------------------------------------------------------------


def test_basic_echo_agent():
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService

    register_agent("echo", EchoAgent)
    session = ConversationService.create_session(agent_path="echo")
    result = ConversationService.send_message(session.id, "ping")
    assert result["status"] == "success" and result["response"] == "You said: ping"
    assert session.messages.get(message_type="agent").content == "You said: ping"


def test_function_calling_with_context(monkeypatch):
    """The README's SmartAgent as written. Its module-level ``litellm`` is the real package, but
    ``litellm.completion`` is replaced by the scripted FakeModel of conversations.testing (no
    provider can be called here); the request the agent sends is real and checked."""
    from django_ai.conversations.actions import start_conversation
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService
    from django_ai.conversations.testing import FakeModel
    from django_ai.conversations.tools import dispatch_tool_call

    example_agents.use_litellm(monkeypatch)
    register_agent("smart", SmartAgent)
    session = start_conversation("smart", context_kwargs={"user_id": 3, "org_id": 77})
    model = FakeModel(replies=["You are user 3 of organisation 77."])

    with model.patch("litellm"):
        result = ConversationService.send_message(session["session_id"], "Who am I?")

    assert result["status"] == "success"
    assert result["response"] == "You are user 3 of organisation 77."
    (request,) = model.requests
    assert request.tool_names == ["get_user_data"]
    # The model is offered no parameters: user_id and org_id come from the context.
    assert request.tools[0]["function"]["parameters"]["properties"] == {}
    agent = SmartAgent(context=SmartAgent.Context(user_id=3, org_id=77))
    call = {"id": "call_1", "type": "function", "function": {"name": "get_user_data", "arguments": "{}"}}
    assert dispatch_tool_call([agent.get_user_data], call).result == {"user_id": 3, "org_id": 77, "plan": "team"}


# --- API Reference, ConversationAgent Base Class ----------------------------------------------------


def test_api_reference_conversation_agent_base_class():
    from django_ai.conversations.actions import start_conversation
    from django_ai.conversations.registry import register_agent, registry
    from django_ai.conversations.service import ConversationService

    register_agent("your-agent", YourAgent)
    assert registry.get("your-agent") is YourAgent
    request = make_request(UserFactory())
    session = start_conversation(agent_path="your-agent", request=request)
    result = ConversationService.send_message(
        session_id=session["session_id"], message="anything", user=request.user, request=request
    )

    assert result["status"] == "success" and result["response"] == "response"
    row = ConversationSession.objects.get(pk=session["session_id"])
    assert row.context == {}
    assert [m.content for m in row.messages.filter(message_type="agent")] == ["response"]


# --- Configuration: Required Settings, Optional Settings --------------------------------------------


def test_configuration_required_and_optional_settings(settings, tmp_path):
    from django.apps import apps
    from django.core.checks import run_checks

    from django_ai.conversations.conf import ai_settings
    from django_ai.conversations.files.extraction.tasks import run_extraction

    # Required Settings: the app is installed under that name (the test project's INSTALLED_APPS).
    INSTALLED_APPS = [
        'django_ai.conversations',
    ]
    assert all(apps.is_installed(app) for app in INSTALLED_APPS)

    settings.MEDIA_ROOT = tmp_path

    # Optional Settings, as written
    # Enable real-time streaming (requires Pusher account)
    DJANGO_AI_PUSHER = {
        'APP_ID': 'your_app_id',
        'KEY': 'your_key',
        'SECRET': 'your_secret',
        'CLUSTER': 'us2'
    }

    # Custom text extraction
    DJANGO_AI = {
        'TEXT_EXTRACTOR': f'{__name__}.CustomExtractor'
    }

    with override_settings(DJANGO_AI_PUSHER=DJANGO_AI_PUSHER, DJANGO_AI=DJANGO_AI):
        assert ai_settings.pusher == DJANGO_AI_PUSHER
        assert ai_settings.TEXT_EXTRACTOR is CustomExtractor
        serious = [m for m in run_checks() if m.is_serious() and (m.id or "").startswith("django_ai")]
        # Both dicts are accepted; only the placeholder app id is named (Pusher's are numeric).
        assert [(m.id, "APP_ID is 'your_app_id'" in m.msg) for m in serious] == [("django_ai.E014", True)]
        file = FileFactory(content=b"optional settings\n")
        run_extraction(file.pk)

    file.refresh_from_db()
    assert file.extractor == "custom-upper" and file.extracted_text.strip() == "OPTIONAL SETTINGS"
