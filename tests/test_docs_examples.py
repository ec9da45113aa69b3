"""The examples of docs/testing.md, docs/agents.md and docs/tools.md, run as written (the agents
they define or import are those of tests/example_agents.py)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream, display_widget, update_widget
from tests.example_agents import SupportAgent, ToolsDocSalesAgent


@pytest.mark.django_db
def test_support_agent_streams_its_answer():
    from django_ai.conversations.service import ConversationService
    from django_ai.conversations.testing import capture_events, isolated_registry

    with isolated_registry({"support": SupportAgent}), capture_events() as events:
        session = ConversationService.create_session("support", context={"support_tier": "premium"})
        result = ConversationService.send_message(session.id, "My invoice is wrong")

    assert result["status"] == "success"
    assert events.text(result["message_id"]) == result["response"]
    session.refresh_from_db()
    assert session.context["support_tier"] == "premium"

    from django_ai.conversations.registry import registry

    assert "support" not in registry or registry.get("support") is not SupportAgent


@pytest.mark.django_db
def test_factories_example(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    from django_ai.conversations.testing import FileFactory, MessageFactory, SessionFactory, UserFactory

    user = UserFactory()
    session = SessionFactory(user=user, agent_path="support", context={"support_tier": "premium"})
    report = FileFactory(user=user, filename="report.pdf", text="Revenue grew 12%.")
    MessageFactory(session=session, content="Earlier question")

    assert user.check_password("password")
    assert session.anonymous_id == "" and session.messages.get().content == "Earlier question"
    assert report.text == "Revenue grew 12%." and report.file.read() == b"Hello from a test file.\n"


@pytest.mark.django_db
def test_fake_model_example():
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService
    from django_ai.conversations.testing import FakeModel

    class ModelAgent(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            import litellm_stand_in

            with ResponseStream() as stream:
                for chunk in litellm_stand_in.completion(
                    model="m", messages=[{"role": "user", "content": message}], stream=True
                ):
                    stream.write(chunk.choices[0].delta.content or "")
            return stream.content

    import sys
    import types

    # A module with litellm's completion name, so the docs' model.patch("<module>") has a target
    # without importing litellm (slow) in this test.
    stand_in = types.ModuleType("litellm_stand_in")
    stand_in.completion = lambda **kwargs: (_ for _ in ()).throw(AssertionError("not patched"))
    sys.modules["litellm_stand_in"] = stand_in
    try:
        register_agent("model", ModelAgent)
        session = ConversationService.create_session("model")
        model = FakeModel(replies=["Scripted reply, word by word."])
        with model.patch("litellm_stand_in"):
            result = ConversationService.send_message(session.id, "Hi")
        assert result["response"] == "Scripted reply, word by word."
        assert model.requests[0].messages[-1]["content"] == "Hi"
    finally:
        del sys.modules["litellm_stand_in"]


@pytest.mark.django_db
def test_widget_example_from_agents_doc(events):
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService

    class Booking(ConversationAgent):
        class Context(BaseModel):
            widget_id: str = ""

        async def get_response(self, message, request=None, **kwargs):
            if not self.context.widget_id:
                widget = display_widget("appointment_form", {"available_slots": ["10:00"]}, display_data={"open": True})
                self.context.widget_id = str(widget.id)
                return "Pick a time."
            update_widget(self.context.widget_id, display_data={"open": False, "picked": "10:00"})
            return "Booked."

    register_agent("booking", Booking)
    session = ConversationService.create_session("booking")
    assert [ConversationService.send_message(session.id, m)["response"] for m in ("book", "10:00")] == [
        "Pick a time.",
        "Booked.",
    ]
    assert [e["display_data"] for e in events.of("widget_update")] == [{"open": False, "picked": "10:00"}]


def test_tools_doc_schema_example():
    """docs/tools.md: the SalesAgent of its first example gives the schema the page prints."""
    from django_ai.conversations.tools import tool_schema, tool_schemas

    agent = ToolsDocSalesAgent(context=ToolsDocSalesAgent.Context(user_id=7, account_tier="premium"))
    printed = {
        "type": "function",
        "function": {
            "name": "check_eligibility",
            "description": "Whether the user may use a product.",
            "parameters": {
                "type": "object",
                "properties": {"product_id": {"type": "string", "description": "The product to check."}},
                "required": ["product_id"],
                "additionalProperties": False,
            },
        },
    }
    assert tool_schema(agent.check_eligibility) == printed
    assert tool_schemas([agent.check_eligibility]) == [printed]
    assert agent.check_eligibility(product_id="pro") == "User 7 can access pro"


def test_installation_doc_lists_every_url_name_of_the_namespace():
    """docs/installation.md's table of URL names is the urlconf's, and each reverses to its path."""
    import re
    from pathlib import Path

    from django.urls import reverse

    from django_ai.conversations import urls

    text = (Path(__file__).resolve().parent.parent / "docs" / "installation.md").read_text()
    text = text[text.index("The URLs live in the namespace") :]
    text = text[: text.index("```")]
    documented = re.findall(r"^\| `([a-z-]+)` \| `([^`]+)` \| ([^|]*)\|$", text, re.M)
    named = {p.name for p in urls.urlpatterns if getattr(p, "name", None) and p.name != "not-found"}
    assert {name for name, _, _ in documented} == named
    for name, path, args in documented:
        kwargs = {arg.strip("` "): "x" for arg in args.split(",") if arg.strip()}
        expected = "/api/conversations/" + re.sub(r"<(\w+)>", "x", path)
        assert reverse(f"django_ai_conversations:{name}", kwargs=kwargs) == expected
