"""``start_conversation()`` from code without a request (the shell, a task, a command): who owns the
conversation, what ``create_context`` sees, and the plain values it returns. Real database."""

from __future__ import annotations

import json

import pytest

from django_ai.conversations.actions import start_conversation
from django_ai.conversations.models import ConversationSession
from django_ai.conversations.registry import register_agent
from django_ai.conversations.testing import UserFactory
from tests.example_agents import SupportAgent
from tests.helpers import make_request

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def agent():
    register_agent("readme-support", SupportAgent)


def test_a_user_without_a_request_owns_the_conversation_and_reaches_create_context():
    user = UserFactory()
    started = start_conversation("readme-support", context_kwargs={"tier": "premium"}, user=user)
    session = ConversationSession.objects.get(pk=started["session_id"])
    assert session.user == user and not session.anonymous_id
    assert session.context == {"user_id": user.pk, "support_tier": "premium"}
    assert started["anonymous_id"] is None


def test_the_answer_is_plain_json_values():
    started = start_conversation("readme-support", user=UserFactory())
    assert type(started["status"]) is str and started["status"] == "active"
    assert json.loads(json.dumps(started)) == started
    assert all(type(value) in (str, type(None)) for value in started.values())


def test_user_and_request_must_agree():
    alice, bob = UserFactory(), UserFactory()
    started = start_conversation("readme-support", request=make_request(alice), user=alice)
    assert ConversationSession.objects.get(pk=started["session_id"]).user == alice
    with pytest.raises(TypeError, match="another user"):
        start_conversation("readme-support", request=make_request(alice), user=bob)
    with pytest.raises(TypeError, match="saved user"):
        start_conversation("readme-support", user="alice")
    assert ConversationSession.objects.count() == 1


def test_without_request_or_user_the_conversation_has_no_owner():
    started = start_conversation("readme-support")
    session = ConversationSession.objects.get(pk=started["session_id"])
    assert session.user is None and not session.anonymous_id
    assert session.context == {"user_id": 0, "support_tier": "basic"}
