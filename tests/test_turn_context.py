"""The agent's Context across turns: validated on the way in and out, stored only when the turn
completes, with aliases kept, and refused with a clear error when it is not the agent's model.

Real parts: the database; ``start_conversation`` and ``ConversationService`` as users call them.
"""

from __future__ import annotations

from unittest.mock import ANY

import pytest
from django.db.models import JSONField, Value
from pydantic import BaseModel, Field

from django_ai.conversations import ConversationAgent
from django_ai.conversations.actions import start_conversation
from django_ai.conversations.constants import MessageType
from django_ai.conversations.exceptions import ContextValidationError
from django_ai.conversations.models import ConversationSession
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService

from .turns_support import (
    session_for,
)


class AliasedAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int = Field(0, alias="userId")
        visits: int = 0

    async def get_response(self, message, request=None, **kwargs):
        self.context.visits += 1
        return f"user {self.context.user_id}, visit {self.context.visits}"


@pytest.mark.django_db
def test_a_context_with_aliased_fields_keeps_its_values_across_turns():
    # Before: the JSON stored by field name was read back by alias only, so user_id silently
    # fell back to its default at session creation and at every turn.
    session = session_for(AliasedAgent, context={"userId": 5})
    session.refresh_from_db()
    assert session.context == {"user_id": 5, "visits": 0}
    first = ConversationService.send_message(session.id, "hi")
    second = ConversationService.send_message(session.id, "hi again")
    assert (first["response"], second["response"]) == ("user 5, visit 1", "user 5, visit 2")
    session.refresh_from_db()
    assert session.context == {"user_id": 5, "visits": 2}

    started = start_conversation("under-test", context_kwargs={"userId": 7})
    assert ConversationSession.objects.get(pk=started["session_id"]).context == {"user_id": 7, "visits": 0}


class ForgetfulAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int = 0

    @classmethod
    def create_context(cls, request=None, **kwargs):
        cls.Context(user_id=42)  # no return

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class OtherModel(BaseModel):
    user_id: int = 42
    secret_plan: str = "gold"


class WrongModelAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int = 0

    @classmethod
    def create_context(cls, request=None, **kwargs):
        return OtherModel()

    async def get_response(self, message, request=None, **kwargs):
        return "x"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("agent", "match"),
    [
        (ForgetfulAgent, r"must return a Context instance or a dict, not NoneType \(did it forget to 'return'"),
        (WrongModelAgent, "must return a Context instance or a dict, not OtherModel"),
    ],
)
def test_create_context_returning_none_or_another_model_is_refused(agent, match):
    # Before: None became the defaults (user_id=0) and another model was converted, dropping
    # what did not fit, both silently.
    register_agent("under-test", agent)
    with pytest.raises(ContextValidationError, match=match) as info:
        start_conversation("under-test")
    assert info.value.code == "invalid_context"
    assert not ConversationSession.objects.exists()


@pytest.mark.django_db
def test_create_session_refuses_a_context_of_another_model_class():
    register_agent("under-test", WrongModelAgent)
    with pytest.raises(ContextValidationError, match="must be a Context instance or a dict, not OtherModel"):
        ConversationService.create_session("under-test", context=OtherModel())
    assert not ConversationSession.objects.exists()


class ContextDroppingAgent(ConversationAgent):
    class Context(BaseModel):
        count: int = 0

    def get_response(self, message, request=None, **kwargs):
        if message == "drop":
            self.context = None
        else:
            self.context.count += 1
        return "done"


@pytest.mark.django_db
def test_an_agent_that_sets_its_context_to_none_fails_and_keeps_the_stored_context():
    # Before: the turn succeeded and the conversation's state was reset to the defaults.
    session = session_for(ContextDroppingAgent, context={"count": 3})
    results = [ConversationService.send_message(session.id, m)["status"] for m in ("inc", "drop", "inc")]
    assert results == ["success", "error", "success"]
    session.refresh_from_db()
    assert session.context == {"count": 5}
    assert session.messages.get(message_type=MessageType.SYSTEM).metadata == {
        "code": "invalid_context",
        "error_id": ANY,
    }


@pytest.mark.django_db
def test_a_context_stored_as_json_null_is_read_as_empty():
    session = session_for(ContextDroppingAgent)
    ConversationSession.objects.filter(pk=session.pk).update(context=Value(None, output_field=JSONField()))
    session.refresh_from_db()
    assert session.context is None
    assert ConversationService.send_message(session.id, "inc")["status"] == "success"
    session.refresh_from_db()
    assert session.context == {"count": 1}
