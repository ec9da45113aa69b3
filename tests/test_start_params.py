"""What a client may put into a new conversation's Context through ``POST start/``.

The Context often holds values the agent trusts: the user id its ``@with_context`` tools act as,
the customer's plan. A client may send only the start parameters the agent declares
(``StartParams``); Python callers (``start_conversation(context_kwargs=...)``) are trusted.
Real parts: the demo project's URLs, the database, the agents' own classes.
"""

from __future__ import annotations

from typing import Literal

import pytest
from django.test import Client
from pydantic import BaseModel, Field

from django_ai.conversations import ConversationAgent
from django_ai.conversations.actions import start_conversation
from django_ai.conversations.exceptions import ImproperlyDeclaredAgent
from django_ai.conversations.models import ConversationSession
from django_ai.conversations.registry import register_agent
from django_ai.conversations.testing import UserFactory
from tests.example_agents import SupportAgent, ToolsDocSalesAgent
from tests.helpers import make_request

from .bridge_support import error_codes, error_fields, user_api

pytestmark = pytest.mark.django_db


class PlanAgent(SupportAgent):
    """The seed's agent with the plan declared as a start parameter."""

    class StartParams(BaseModel):
        tier: Literal["basic", "premium"] = "basic"
        referrer: str = Field(default="", alias="ref", max_length=100)


@pytest.fixture(autouse=True)
def agents():
    register_agent("tools-doc", ToolsDocSalesAgent)
    register_agent("seed-support", SupportAgent)
    register_agent("plan", PlanAgent)


def test_a_client_cannot_choose_the_user_a_tool_runs_as():
    alice, bob = UserFactory(), UserFactory()
    response = user_api(bob).post(
        "start/", {"agent_path": "tools-doc", "context": {"user_id": alice.pk, "account_tier": "premium"}}
    )
    assert response.status_code == 400, response.content
    assert error_codes(response) == ["start_param_not_allowed", "start_param_not_allowed"]
    assert error_fields(response) == ["context.user_id", "context.account_tier"]
    assert "accepts no start parameters" in response.json()["errors"][0]["message"]
    assert ConversationSession.objects.count() == 0


def test_undeclared_keys_are_refused_even_when_create_context_would_ignore_them():
    response = user_api(UserFactory()).post("start/", {"agent_path": "seed-support", "context": {"tier": "premium"}})
    assert response.status_code == 400
    assert error_fields(response) == ["context.tier"]
    assert ConversationSession.objects.count() == 0


def test_declared_start_parameters_reach_create_context():
    user = UserFactory()
    response = user_api(user).post("start/", {"agent_path": "plan", "context": {"tier": "premium"}})
    assert response.status_code == 201, response.content
    session = ConversationSession.objects.get(pk=response.json()["session_id"])
    assert session.context == {"user_id": user.pk, "support_tier": "premium"}


def test_a_declared_parameter_does_not_open_the_others():
    victim = UserFactory()
    response = user_api(UserFactory()).post(
        "start/", {"agent_path": "plan", "context": {"tier": "premium", "user_id": victim.pk}}
    )
    assert response.status_code == 400
    assert error_codes(response) == ["start_param_not_allowed"] and error_fields(response) == ["context.user_id"]
    assert "tier" in response.json()["errors"][0]["message"]
    assert ConversationSession.objects.count() == 0


def test_declared_parameters_are_validated():
    api = user_api(UserFactory())
    response = api.post("start/", {"agent_path": "plan", "context": {"tier": "platinum"}})
    assert response.status_code == 400
    assert error_codes(response) == ["invalid_context"] and error_fields(response) == ["context.tier"]
    too_long = api.post("start/", {"agent_path": "plan", "context": {"ref": "x" * 101}})
    assert too_long.status_code == 400 and error_fields(too_long) == ["context.ref"]
    assert ConversationSession.objects.count() == 0


def test_only_the_keys_sent_reach_create_context(monkeypatch):
    seen = []
    original = PlanAgent.create_context.__func__

    def spy(cls, request=None, **kwargs):
        seen.append(kwargs)
        return original(cls, request=request, **kwargs)

    monkeypatch.setattr(PlanAgent, "create_context", classmethod(spy))
    api = user_api(UserFactory())
    assert api.post("start/", {"agent_path": "plan"}).status_code == 201
    assert api.post("start/", {"agent_path": "plan", "context": {"ref": "newsletter"}}).status_code == 201
    assert seen == [{}, {"referrer": "newsletter"}]


def test_anonymous_visitors_get_the_same_rule():
    refused = Client().post(
        "/api/conversations/start/",
        {"agent_path": "tools-doc", "context": {"user_id": 1}},
        content_type="application/json",
    )
    assert refused.status_code == 400 and error_fields(refused) == ["context.user_id"]
    accepted = Client().post(
        "/api/conversations/start/",
        {"agent_path": "plan", "context": {"tier": "premium"}},
        content_type="application/json",
    )
    assert accepted.status_code == 201
    assert ConversationSession.objects.get().context == {"user_id": 0, "support_tier": "premium"}


def test_python_callers_are_trusted_as_the_seed_readme_shows():
    user = UserFactory()
    started = start_conversation(
        agent_path="seed-support", context_kwargs={"tier": "premium"}, request=make_request(user)
    )
    session = ConversationSession.objects.get(pk=started["session_id"])
    assert session.context == {"user_id": user.pk, "support_tier": "premium"}
    # A server-side caller may set what clients may not, e.g. for a background job.
    started = start_conversation(agent_path="tools-doc", context_kwargs={"user_id": user.pk, "account_tier": "premium"})
    assert ConversationSession.objects.get(pk=started["session_id"]).context == {
        "user_id": user.pk,
        "account_tier": "premium",
    }


def test_the_schema_lists_each_agents_start_parameters():
    agents = {a["path"]: a for a in user_api(UserFactory()).get("schema/").json()["agents"]}
    assert agents["tools-doc"]["start_params"] is None
    params = agents["plan"]["start_params"]
    assert params["properties"]["tier"]["enum"] == ["basic", "premium"]
    assert "ref" in params["properties"] and "user_id" not in params["properties"]


def test_the_demo_plan_selector_goes_through_the_declared_parameter():
    from agents.chat_agents import SupportAgent as DemoSupportAgent
    from agents.sales import SalesAgent as DemoSalesAgent

    register_agent("support", DemoSupportAgent)
    register_agent("sales", DemoSalesAgent)
    user = UserFactory()
    api = user_api(user)
    support = api.post("start/", {"agent_path": "support", "context": {"tier": "premium"}})
    sales = api.post("start/", {"agent_path": "sales", "context": {"tier": "premium"}})
    assert support.status_code == 201 and sales.status_code == 201
    assert ConversationSession.objects.get(pk=support.json()["session_id"]).context["support_tier"] == "premium"
    assert ConversationSession.objects.get(pk=sales.json()["session_id"]).context == {
        "user_id": user.pk,
        "account_tier": "premium",
        "discounts": {},
    }
    forged = api.post("start/", {"agent_path": "sales", "context": {"user_id": 1, "account_tier": "premium"}})
    assert forged.status_code == 400 and error_fields(forged) == ["context.user_id", "context.account_tier"]


def test_start_params_must_be_a_pydantic_model():
    class Broken(ConversationAgent):
        StartParams = {"tier": str}

        async def get_response(self, message, request=None, **kwargs):
            return "ok"

    with pytest.raises(ImproperlyDeclaredAgent, match="StartParams must be a pydantic BaseModel"):
        register_agent("broken", Broken)
