"""``@requires_approval``: which tool calls wait for the user, read back by ``approval_rule`` and
``needs_approval`` (what the declared loop asks before running a call).

The loop's side (the step row, suspending the turn, the answer) is tested with the loop
(tests/test_llm_*.py) and the turn (tests/test_turn_approval.py); here only the mark and the rule.
"""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.decorators import BoundTool, with_context
from django_ai.conversations.tools import approval_rule, needs_approval, requires_approval, tool_schema


def over_100(agent, arguments):
    return arguments["amount"] > 100


class ShopAgent(ConversationAgent):
    class Context(BaseModel):
        user_id: int = 7
        tier: str = "basic"

    @requires_approval
    @with_context()
    def cancel_order(self, order_id: str, user_id: int) -> str:
        """Cancel an order (every call asks)."""
        return f"{order_id} of {user_id} cancelled"

    @with_context()
    @requires_approval(when=over_100)
    def refund(self, order_id: str, amount: float, user_id: int) -> str:
        """Refund an order; above 100 the user approves."""
        return f"refunded {amount} on {order_id} for {user_id}"

    @requires_approval(when=lambda agent, arguments: agent.context.tier != "gold")
    @with_context()
    async def upgrade(self, plan: str, user_id: int) -> str:
        """Upgrade the user's plan; gold customers need no approval."""
        await asyncio.sleep(0)
        return f"{user_id} on {plan}"

    @requires_approval()
    def delete_everything(self, confirm: bool) -> str:
        """A plain method, no Context."""
        return "gone"

    @with_context()
    def lookup(self, order_id: str, user_id: int) -> str:
        """No approval."""
        return order_id

    def search(self, query: str) -> list[str]:
        return [query]


def agent(**context) -> ShopAgent:
    return ShopAgent(context=ShopAgent.Context(**context))


def test_every_call_asks_above_and_below_with_context():
    shop = agent()
    for tool in (shop.cancel_order, shop.delete_everything):
        assert needs_approval(tool, shop, {})
        assert needs_approval(tool, shop, {"order_id": "A-1", "confirm": False})
    assert shop.cancel_order(order_id="A-1") == "A-1 of 7 cancelled"  # the mark changes no call
    assert shop.delete_everything(confirm=True) == "gone"


def test_the_rule_is_read_from_every_form_of_the_tool():
    shop = agent()
    forms = {
        "bound tool": shop.refund,
        "class attribute": ShopAgent.refund,
        "descriptor": ShopAgent.__dict__["refund"],
        "undecorated function": ShopAgent.refund.__wrapped__,
    }
    assert isinstance(forms["bound tool"], BoundTool)
    for form, tool in forms.items():
        assert approval_rule(tool) is over_100, form
    assert approval_rule(shop.delete_everything) is approval_rule(ShopAgent.delete_everything) is not None
    assert inspect.ismethod(shop.delete_everything)


def test_when_rule_gets_the_agent_and_the_visible_arguments_only():
    seen = []

    class Agent(ConversationAgent):
        class Context(BaseModel):
            user_id: int = 3

        @requires_approval(when=lambda agent, arguments: seen.append((agent, arguments)) or True)
        @with_context()
        def pay(self, amount: float, user_id: int) -> str:
            return "paid"

    a = Agent()
    assert needs_approval(a.pay, a, {"amount": 5.0})
    assert seen == [(a, {"amount": 5.0})]


def test_when_rule_decides_per_call():
    shop = agent()
    assert not needs_approval(shop.refund, shop, {"order_id": "A-1", "amount": 100})
    assert needs_approval(shop.refund, shop, {"order_id": "A-1", "amount": 100.5})


def test_when_rule_may_read_the_current_context():
    shop = agent(tier="basic")
    assert needs_approval(shop.upgrade, shop, {"plan": "pro"})
    shop.context.tier = "gold"
    assert not needs_approval(shop.upgrade, shop, {"plan": "pro"})
    assert inspect.iscoroutinefunction(shop.upgrade)
    assert asyncio.run(shop.upgrade(plan="pro")) == "7 on pro"


def test_a_rule_that_raises_reaches_the_caller():
    """The loop turns it into a tool error the model is told of; needs_approval does not hide it."""
    shop = agent()
    with pytest.raises(KeyError, match="amount"):
        needs_approval(shop.refund, shop, {"order_id": "A-1"})


def test_unmarked_tools_run_without_asking():
    shop = agent()
    for tool in (shop.lookup, shop.search, ShopAgent.lookup, len, lambda: None):
        assert approval_rule(tool) is None
        assert not needs_approval(tool, shop, {})


def test_the_mark_is_not_in_the_tool_definition():
    shop = agent()
    assert tool_schema(shop.refund)["function"]["parameters"]["properties"].keys() == {"order_id", "amount"}
    assert "approval" not in json.dumps(shop.refund).lower()
    assert shop.cancel_order == tool_schema(shop.cancel_order)


def test_subclasses_inherit_the_mark_and_an_override_drops_it():
    class Gold(ShopAgent):
        pass

    class Lenient(ShopAgent):
        @with_context()
        def refund(self, order_id: str, amount: float, user_id: int) -> str:
            return "refunded"

    assert approval_rule(Gold().refund) is over_100
    assert approval_rule(Lenient().refund) is None


def test_a_mixin_without_its_own_context_keeps_the_mark():
    class Refunds:
        @requires_approval
        @with_context()
        def refund_all(self, reason: str, user_id: int) -> str:
            return f"all refunded for {user_id}: {reason}"

    class Agent(Refunds, ConversationAgent):
        class Context(BaseModel):
            user_id: int = 9

    a = Agent()
    assert needs_approval(a.refund_all, a, {"reason": "late"})
    assert a.refund_all("late") == "all refunded for 9: late"


# Bad use fails where the tool is declared


def test_when_must_be_a_function():
    with pytest.raises(TypeError, match=r"when=\.\.\.\) takes a function \(agent, arguments\) -> bool, not 'yes'"):
        requires_approval(when="yes")


@pytest.mark.parametrize(
    "rule",
    [lambda arguments: True, lambda agent, arguments, extra: True, lambda: True],
    ids=["one argument", "three arguments", "none"],
)
def test_when_must_take_agent_and_arguments(rule):
    with pytest.raises(TypeError, match=r"calls the rule as rule\(agent, arguments\)"):
        requires_approval(when=rule)


def test_an_async_rule_is_refused():
    """A rule is called, not awaited: an async one would return a coroutine (always true), so
    every call would wait for approval whatever the rule says."""

    async def over_100(agent, arguments):
        return arguments["amount"] > 100

    with pytest.raises(TypeError, match=r"is async: the rule is called, not awaited"):
        requires_approval(when=over_100)


def test_rules_with_defaults_or_star_args_are_accepted():
    requires_approval(when=lambda agent, arguments, strict=False: strict)
    requires_approval(when=lambda *args: True)
    requires_approval(when=max)  # a builtin: its signature is trusted when unreadable


def test_a_rule_passed_without_when_is_refused():
    with pytest.raises(TypeError, match=r"pass the rule by name, @requires_approval\(when=lambda"):
        requires_approval(lambda agent, arguments: True)


def test_a_bound_method_is_refused():
    shop = agent()
    with pytest.raises(TypeError, match="where it is defined, above or below its def, not a bound method"):
        requires_approval(shop.lookup)
    with pytest.raises(TypeError, match="not a bound method"):
        requires_approval(when=over_100)(shop.search)
    assert approval_rule(shop.lookup) is None


@pytest.mark.parametrize("thing", [42, "refund", print])
def test_only_functions_are_marked(thing):
    with pytest.raises(TypeError, match="decorates functions and methods"):
        requires_approval(thing)


def test_a_staticmethod_keeps_its_mark():
    class Agent(ConversationAgent):
        @requires_approval
        @staticmethod
        def wipe(confirm: bool) -> str:
            return "wiped"

    assert approval_rule(Agent.wipe) is not None
    assert needs_approval(Agent().wipe, None, {"confirm": True})
