"""Declaring an agent: what registration refuses (naming the fix), valid paths, looking agents up
in the registry, and the Context an agent without one gets. Real database, in-memory realtime
backend."""

from __future__ import annotations

import pytest

from django_ai.conversations import ConversationAgent, register_agent
from django_ai.conversations.agent import EmptyContext
from django_ai.conversations.exceptions import ConversationError, ImproperlyDeclaredAgent
from django_ai.conversations.registry import registry
from tests.helpers import run_agent

pytestmark = pytest.mark.django_db


class NoResponse(ConversationAgent):
    pass


class StaticResponse(ConversationAgent):
    @staticmethod
    def get_response(message, request=None, **kwargs):
        return "x"


class ClassResponse(ConversationAgent):
    @classmethod
    def get_response(cls, message, request=None, **kwargs):
        return "x"


class NoMessageParam(ConversationAgent):
    async def get_response(self):
        return "x"


class NoRequestParam(ConversationAgent):
    def get_response(self, message):
        return "x"


class GeneratorResponse(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        yield "x"


class PlainContext(ConversationAgent):
    class Context:
        user_id: int = 0

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class PlainCreateContext(ConversationAgent):
    def create_context(cls, request=None, **kwargs):
        return cls.Context()

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class StaticCreateContext(ConversationAgent):
    @staticmethod
    def create_context(request=None, **kwargs):
        return EmptyContext()

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class NarrowCreateContext(ConversationAgent):
    @classmethod
    def create_context(cls, tier):
        return cls.Context()

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class BadPolicy(ConversationAgent):
    concurrency = "queue-it"

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class NotAnAgent:
    async def get_response(self, message, request=None, **kwargs):
        return "x"


@pytest.mark.parametrize(
    ("agent", "fix"),
    [
        (NoResponse, "does not define get_response"),
        (StaticResponse, "not a staticmethod or classmethod"),
        (ClassResponse, "not a staticmethod or classmethod"),
        (NoMessageParam, "must accept (self, message, request=None, **kwargs)"),
        (NoRequestParam, "must accept (self, message, request=None, **kwargs)"),
        (GeneratorResponse, "async generator"),
        (PlainContext, "must be a pydantic BaseModel subclass"),
        (PlainCreateContext, "create_context must be a classmethod"),
        (StaticCreateContext, "create_context must be a classmethod"),
        (NarrowCreateContext, "create_context must accept (cls, request=None, **kwargs)"),
        (BadPolicy, "concurrency is 'queue-it'"),
        (NotAnAgent, "is not a ConversationAgent subclass"),
        ("tests.test_agent_declaration.DoesNotExist", "Could not import agent"),
        ("no_such_module.Agent", "Could not import agent"),
    ],
)
def test_misdeclared_agents_fail_at_registration_naming_the_fix(agent, fix):
    before = registry.paths()
    with pytest.raises(ImproperlyDeclaredAgent) as info:
        register_agent("broken", agent)
    assert fix in str(info.value)
    assert info.value.code == "improperly_declared_agent"
    assert isinstance(info.value, ConversationError)
    assert registry.paths() == before


@pytest.mark.parametrize("path", ["", "has space", "/leading", "trailing/", "a//b", "x" * 201, None, 3])
def test_invalid_agent_paths_are_refused(path):
    class Fine(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            return "x"

    with pytest.raises(ImproperlyDeclaredAgent, match="is not valid"):
        register_agent(path, Fine)


def test_registry_lookup_by_path_or_import_path_and_listing():
    class Listed(ConversationAgent):
        """Answers politely.

        More text that is not part of the description."""

        async def get_response(self, message, request=None, **kwargs):
            return "x"

    register_agent("team/listed", Listed)
    register_agent("team/dotted", "agents.chat_agents.EchoAgent")
    from agents.chat_agents import EchoAgent

    assert registry.get("team/listed") is Listed
    assert registry.get("team/dotted") is EchoAgent
    assert registry.get("agents.chat_agents.EchoAgent") is EchoAgent
    assert "team/listed" in registry and "team/unknown" not in registry
    assert {
        "path": "team/listed",
        "name": "Listed",
        "description": "Answers politely.",
        "start_params": None,
    } in registry.describe()
    assert {"team/listed", "team/dotted"} <= set(registry.paths())


def test_agents_without_context_get_an_empty_one_that_keeps_keys():
    class Bare(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            self.context.seen = getattr(self.context, "seen", 0) + 1
            return f"{type(self.context).__name__} {self.context.seen} {self.context.topic}"

    session, results = run_agent(Bare, "a", "b", context={"topic": "tax"})
    assert [r["response"] for r in results] == ["EmptyContext 1 tax", "EmptyContext 2 tax"]
    assert session.context == {"topic": "tax", "seen": 2}
