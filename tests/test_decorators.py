"""``@with_context()``: injection from ``self.context``, and what introspection shows."""

from __future__ import annotations

import asyncio
import inspect
import re
import typing

import pytest
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.decorators import ContextInjectionError, context_parameters, with_context
from django_ai.conversations.exceptions import ConversationError
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from tests.example_agents import SalesAgent as ReadmeSalesAgent


class SalesAgent(ReadmeSalesAgent):
    """The README's agent (check_eligibility) with an async injected tool documented in Google style."""

    @with_context()
    async def order_history(self, user_id: int, limit: int = 5) -> list[str]:
        """The user's last orders.

        Args:
            user_id: Whose orders; injected.
            limit: How many orders to return,
                newest first.
        """
        await asyncio.sleep(0)
        return [f"order-{user_id}-{n}" for n in range(limit)]


def make_agent(**context):
    values = {"user_id": 7, "account_tier": "premium", **context}
    return SalesAgent(context=SalesAgent.Context(**values))


def test_readme_example_injects_context_values():
    assert make_agent().check_eligibility(product_id="pro-features") == "User 7 can access pro-features"
    assert make_agent(account_tier="basic").check_eligibility(product_id="pro-features") == "Upgrade required"


def test_positional_call_binds_to_visible_parameters():
    assert make_agent(user_id=3).check_eligibility("analytics") == "User 3 can access analytics"


def test_bound_method_signature_shows_only_model_supplied_parameters():
    agent = make_agent()
    sig = inspect.signature(agent.check_eligibility)
    assert list(sig.parameters) == ["product_id"]
    assert sig.parameters["product_id"].annotation is str
    # The async one keeps its defaults and return annotation.
    sig = inspect.signature(agent.order_history)
    assert str(sig) == "(limit: int = 5) -> list[str]"


def test_class_attribute_signature_keeps_self_only():
    assert list(inspect.signature(SalesAgent.check_eligibility).parameters) == ["self", "product_id"]


def test_annotations_and_type_hints_hide_injected_parameters():
    agent = make_agent()
    # This module uses "from __future__ import annotations": the raw annotations are strings.
    assert agent.check_eligibility.__annotations__ == {"product_id": "str"}
    assert typing.get_type_hints(agent.check_eligibility) == {"product_id": str}
    assert typing.get_type_hints(agent.order_history) == {"limit": int, "return": list[str]}


def test_docstring_drops_entries_of_injected_parameters():
    doc = make_agent().order_history.__doc__
    assert "user_id" not in doc
    assert "limit: How many orders to return," in doc
    assert "newest first." in doc
    assert doc.splitlines()[0] == "The user's last orders."


def test_wraps_hygiene():
    method = SalesAgent.check_eligibility
    assert method.__name__ == "check_eligibility"
    assert method.__qualname__.endswith("SalesAgent.check_eligibility")
    assert method.__module__ == ReadmeSalesAgent.__module__ == "tests.example_agents"  # where it is defined
    original = method.__wrapped__
    # The undecorated function stays reachable, e.g. to call it with chosen values in a test.
    assert list(inspect.signature(original).parameters) == ["self", "product_id", "user_id", "account_tier"]
    assert original(make_agent(), "p", 1, "premium") == "User 1 can access p"
    assert context_parameters(make_agent().check_eligibility) == ("user_id", "account_tier")
    assert context_parameters(SalesAgent.get_response) == ()


def test_async_method_stays_a_coroutine_function():
    agent = make_agent(user_id=4)
    assert inspect.iscoroutinefunction(agent.order_history)
    assert inspect.iscoroutinefunction(SalesAgent.order_history)
    assert asyncio.run(agent.order_history(limit=2)) == ["order-4-0", "order-4-1"]
    assert asyncio.run(agent.order_history()) == [f"order-4-{n}" for n in range(5)]


def test_values_are_read_at_each_call_and_follow_context_changes():
    agent = make_agent(account_tier="basic")
    assert agent.check_eligibility(product_id="x") == "Upgrade required"
    agent.context.account_tier = "premium"
    agent.context.user_id = 11
    assert agent.check_eligibility(product_id="x") == "User 11 can access x"
    agent.context = SalesAgent.Context(user_id=12, account_tier="premium")
    assert agent.check_eligibility(product_id="x") == "User 12 can access x"


def test_caller_may_not_pass_injected_parameters_and_the_body_does_not_run():
    calls = []

    class Agent(SalesAgent):
        @with_context()
        def record(self, note: str, user_id: int):
            calls.append((note, user_id))

    agent = Agent(context=Agent.Context(user_id=1, account_tier="basic"))
    with pytest.raises(ContextInjectionError) as info:
        agent.record(note="hi", user_id=999)
    assert info.value.code == "context_parameter_given"
    assert "user_id" in info.value.message and "injected from the context" in info.value.message
    assert isinstance(info.value, ConversationError) and isinstance(info.value, TypeError)
    assert calls == []
    agent.record("ok")
    assert calls == [("ok", 1)]


def test_missing_and_unexpected_visible_arguments_raise_type_error():
    agent = make_agent()
    with pytest.raises(TypeError, match=r"check_eligibility\(\).*product_id"):
        agent.check_eligibility()
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        agent.check_eligibility(product_id="x", colour="red")
    with pytest.raises(TypeError, match="too many positional arguments"):
        agent.check_eligibility("x", "y")
    with pytest.raises(TypeError, match="multiple values for argument 'product_id'"):
        agent.check_eligibility("x", product_id="y")


def test_context_without_the_field_at_call_time_is_a_clear_error():
    class Other(BaseModel):
        user_id: int = 5

    agent = make_agent()
    agent.context = Other()
    with pytest.raises(ContextInjectionError) as info:
        agent.check_eligibility(product_id="x")
    assert info.value.code == "context_field_missing"
    assert "'account_tier'" in info.value.message


def test_only_limits_injection_to_named_fields():
    class Agent(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 1
            region: str = "eu"

        # "region" is a Context field, but here the model chooses it.
        @with_context(only=["user_id"])
        def shipping(self, region: str, user_id: int):
            return f"{user_id}:{region}"

    agent = Agent()
    assert list(inspect.signature(agent.shipping).parameters) == ["region"]
    assert agent.shipping(region="us") == "1:us"


def test_exclude_keeps_a_parameter_visible():
    class Agent(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 1
            region: str = "eu"

        @with_context(exclude=["region"])
        def shipping(self, region: str, user_id: int):
            return f"{user_id}:{region}"

    assert Agent().shipping("us") == "1:us"
    assert context_parameters(Agent().shipping) == ("user_id",)


def test_only_naming_a_non_parameter_fails_at_decoration():
    with pytest.raises(ContextInjectionError) as info:

        @with_context(only=["user"])
        def tool(self, user_id: int): ...

    assert info.value.code == "unknown_context_field"
    assert "user" in info.value.message


def test_only_naming_a_parameter_that_is_no_context_field_fails_at_class_creation():
    with pytest.raises(ContextInjectionError) as info:

        class Agent(ConversationAgent):
            class Context(BaseModel):
                user_id: int = 1

            @with_context(only=["org_id"])
            def tool(self, org_id: int): ...

    assert info.value.code == "unknown_context_field"
    assert "Agent.Context" in info.value.message and "org_id" in info.value.message


def test_no_matching_parameter_fails_at_class_creation_naming_the_fields():
    with pytest.raises(ContextInjectionError) as info:

        class Agent(ConversationAgent):
            class Context(BaseModel):
                user_id: int = 1

            @with_context()
            def tool(self, userid: int): ...  # typo

    assert info.value.code == "no_context_parameters"
    assert "userid" in info.value.message and "user_id" in info.value.message


def test_staticmethods_classmethods_and_plain_functions_are_refused():
    with pytest.raises(ContextInjectionError, match="instance methods") as info:
        with_context()(staticmethod(lambda user_id: user_id))
    assert info.value.code == "not_a_method"
    with pytest.raises(ContextInjectionError, match="self as its first parameter"):

        @with_context()
        def no_params(): ...

    @with_context()
    def loose(self, user_id: int): ...

    with pytest.raises(ContextInjectionError, match="called outside a class"):
        loose(None)
    with pytest.raises(TypeError, match="list of parameter names"):
        with_context(only="user_id")


def test_bare_decorator_without_parentheses_works():
    class Agent(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 9

        @with_context
        def whoami(self, user_id: int):
            return user_id

    assert Agent().whoami() == 9


def test_mixin_without_context_resolves_per_concrete_class():
    class ToolsMixin:
        @with_context()
        def describe(self, topic: str, user_id: int = 0, org_id: int = 0):
            return f"{topic}/{user_id}/{org_id}"

    class UserAgent(ToolsMixin, ConversationAgent):
        class Context(BaseModel):
            user_id: int = 1

    class OrgAgent(ToolsMixin, ConversationAgent):
        class Context(BaseModel):
            user_id: int = 2
            org_id: int = 3

    assert list(inspect.signature(UserAgent().describe).parameters) == ["topic", "org_id"]
    assert UserAgent().describe("a", org_id=42) == "a/1/42"
    assert list(inspect.signature(OrgAgent().describe).parameters) == ["topic"]
    assert OrgAgent().describe("b") == "b/2/3"


def test_parameter_kinds_are_preserved():
    class Agent(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 5

        @with_context()
        def tool(self, first, /, user_id: int, *rest, flag: bool = False, **extra):
            return (first, user_id, rest, flag, extra)

    agent = Agent()
    assert str(inspect.signature(agent.tool)) == "(first, /, *rest, flag: bool = False, **extra)"
    assert agent.tool(1, 2, 3, flag=True, x=4) == (1, 5, (2, 3), True, {"x": 4})


def test_injected_parameter_before_visible_ones_in_the_original_order():
    class Agent(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 8

        @with_context()
        def tool(self, user_id: int, query: str, page: int = 1):
            return (user_id, query, page)

    assert Agent().tool("shoes") == (8, "shoes", 1)
    assert Agent().tool("shoes", 3) == (8, "shoes", 3)


def test_generators_sync_and_async():
    class Agent(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 2

        @with_context()
        def numbers(self, count: int, user_id: int):
            for n in range(count):
                yield user_id * n

        @with_context()
        async def anumbers(self, count: int, user_id: int):
            for n in range(count):
                yield user_id + n

    agent = Agent()
    assert list(agent.numbers(3)) == [0, 2, 4]
    assert inspect.isasyncgenfunction(agent.anumbers)

    async def collect():
        return [n async for n in agent.anumbers(count=3)]

    assert asyncio.run(collect()) == [2, 3, 4]


def test_subclass_redeclaring_context_gets_its_own_injection():
    class Base(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 1

        @with_context()
        def tool(self, account_tier: str = "free", user_id: int = 0):
            return (account_tier, user_id)

    class Derived(Base):
        class Context(BaseModel):
            user_id: int = 2
            account_tier: str = "gold"

    assert list(inspect.signature(Base().tool).parameters) == ["account_tier"]
    assert Base().tool() == ("free", 1)
    assert list(inspect.signature(Derived().tool).parameters) == []
    assert Derived().tool() == ("gold", 2)


# --- inside a real turn --------------------------------------------------------------------------


class TurnAgent(ConversationAgent):
    """Calls its tools during the turn, changing the context in between."""

    class Context(BaseModel):
        user_id: int
        account_tier: str = "basic"

    @with_context()
    def check_eligibility(self, product_id: str, user_id: int, account_tier: str):
        if account_tier == "premium":
            return f"User {user_id} can access {product_id}"
        return f"User {user_id} must upgrade for {product_id}"

    @with_context()
    async def tier(self, account_tier: str) -> str:
        return account_tier

    async def get_response(self, message, request=None, **kwargs):
        before = self.check_eligibility(product_id=message)
        self.context.account_tier = "premium"  # e.g. the user just upgraded
        after = self.check_eligibility(product_id=message)
        return f"{before} | {after} | {await self.tier()}"


class SyncTurnAgent(TurnAgent):
    def get_response(self, message, request=None, **kwargs):
        return self.check_eligibility(message)


@pytest.mark.django_db
def test_injection_inside_a_real_async_turn_follows_context_changes():
    register_agent("decorators/turn", TurnAgent)
    session = ConversationService.create_session("decorators/turn", context={"user_id": 21})

    result = ConversationService.send_message(session_id=session.id, message="reports")

    assert result["status"] == "success", result
    assert result["response"] == "User 21 must upgrade for reports | User 21 can access reports | premium"
    session.refresh_from_db()
    assert session.context == {"user_id": 21, "account_tier": "premium"}


@pytest.mark.django_db
def test_injection_inside_a_real_sync_turn_reads_the_saved_context():
    register_agent("decorators/sync", SyncTurnAgent)
    session = ConversationService.create_session("decorators/sync", context={"user_id": 5, "account_tier": "premium"})

    result = ConversationService.send_message(session_id=session.id, message="exports")

    assert result == {**result, "status": "success", "response": "User 5 can access exports"}


def test_docstring_stripping_handles_sphinx_and_numpy_styles():
    class Agent(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 1

        @with_context()
        def sphinx(self, query: str, user_id: int):
            """Search.

            :param query: What to find.
            :param user_id: Whose data,
                continued.
            :type user_id: int
            :returns: rows.
            """

        @with_context()
        def numpy(self, query: str, user_id: int):
            """Search.

            Parameters
            ----------
            user_id : int
                Whose data.
            query : str
                What to find.

            Returns
            -------
            list
            """

    sphinx = Agent().sphinx.__doc__
    assert "user_id" not in sphinx and "continued" not in sphinx
    assert ":param query: What to find." in sphinx and ":returns: rows." in sphinx
    numpy = Agent().numpy.__doc__
    assert "user_id" not in numpy and "Whose data" not in numpy
    assert "query : str" in numpy and "What to find." in numpy and "Returns" in numpy


def test_docstring_stripping_keeps_every_other_line_as_written():
    """Only the injected entries go: the other sections stay as their author wrote them (a parser
    that composes the docstring back would rewrite "Returns:" and "Example:")."""

    class Agent(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 1

        @with_context()
        def google(self, query: str, user_id: int):
            """Search the orders
            of a user.

            Args:
                query: What to find.
                user_id: Whose orders,

                    over a blank line.

            Returns:
                The orders, newest first.

            Example:
                >>> agent.google("shoes")
            """

        @with_context()
        def only_injected(self, user_id: int):
            """Count.

            Args:
                user_id: Whose.

            Returns:
                int
            """

        @with_context()
        def no_style(self, user_id: int):
            """user_id: is mentioned in prose only, so nothing is removed."""

    doc = Agent().google.__doc__
    # Python 3.13 dedents docstrings when it compiles them, 3.12 does not: match any indent.
    assert doc == re.sub(r"\n *user_id: Whose orders,\n\n *over a blank line\.", "", Agent.google.__wrapped__.__doc__)
    assert "query: What to find." in doc and "over a blank line" not in doc
    assert re.fullmatch(r"Count\.\n\n *Returns:\n *int\n *", Agent().only_injected.__doc__)
    assert Agent().no_style.__doc__ == "user_id: is mentioned in prose only, so nothing is removed."
