"""What turns cost: tokens priced from MODEL_COSTS or litellm's bundled list, kept by model on the
reply's metrics, summed on the session row in the transaction (and the UPDATE) that records each
turn, per owner, in the admin and in ``manage.py usage_report``; the settings' checks.

Real turns (``send_message``, the declared loop with ``FakeModel``, approval and resume), the real
admin over Django's test client; SQLite, and PostgreSQL with DATABASE_URL."""

from __future__ import annotations

import io
import json
import re
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_ai.conversations import register_agent
from django_ai.conversations.agent import ConversationAgent
from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.context import report_usage
from django_ai.conversations.exceptions import InvalidInput
from django_ai.conversations.llm import LLMAgent
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from django_ai.conversations.signals import turn_finished
from django_ai.conversations.telemetry.cost import cost_of
from django_ai.conversations.testing import FakeModel, FakeReply, FakeToolCall, MessageFactory, SessionFactory
from django_ai.conversations.testing.factories import UserFactory
from django_ai.conversations.tools import requires_approval
from django_ai.conversations.turns.approval import answer_approval
from django_ai.conversations.turns.runner import process_pending
from django_ai.conversations.turns.scheduling import rerun_messages
from django_ai.conversations.usage import usage_by_owner

from .turns_support import ai_settings

pytestmark = pytest.mark.django_db

#: USD per million tokens: 1 USD per million prompt tokens, 4 per million completion tokens.
PRICES = {"fake-model": {"input": 1, "output": 4}}


def usd(prompt: int, completion: int) -> Decimal:
    """What ``prompt`` and ``completion`` tokens of "fake-model" cost at PRICES."""
    return (Decimal(prompt) + 4 * Decimal(completion)) / 1_000_000


def reply_of(user_message_id) -> ConversationMessage:
    return ConversationMessage.objects.get(reply_to_id=user_message_id, message_type=MessageType.AGENT)


def sums(session) -> tuple[int, int, Decimal]:
    row = ConversationSession.objects.get(pk=session.pk)
    return row.prompt_tokens, row.completion_tokens, row.cost


# Prices.


def test_model_costs_price_tokens_per_million_and_an_unknown_model_has_no_cost():
    with ai_settings(MODEL_COSTS={"house-model": {"input": 2.5, "output": 10}}):
        assert cost_of("house-model", 1_000_000, 0) == Decimal("2.5")
        assert cost_of("house-model", 400, 100) == Decimal("0.002")  # 400 * 2.5e-6 + 100 * 1e-5
        assert cost_of("house-model", 1, 0) == Decimal("0.0000025")
        assert cost_of("another-model", 400, 100) is None  # not 0: the price is unknown
        assert cost_of("", 400, 100) is None


def test_litellms_bundled_list_prices_a_model_only_once_litellm_is_loaded(monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # its bundled list, no download
    litellm = pytest.importorskip("litellm")
    listed = litellm.model_cost["gpt-4o-mini"]
    expected = (
        Decimal(str(listed["input_cost_per_token"])) * 1000 + Decimal(str(listed["output_cost_per_token"])) * 200
    ).quantize(Decimal("0.00000001"))
    assert expected > 0
    assert cost_of("gpt-4o-mini", 1000, 200) == expected
    assert cost_of("openai/gpt-4o-mini", 1000, 200) == expected  # the provider's prefix is not in the list
    assert cost_of("no-such-model-anywhere", 1000, 200) is None
    with ai_settings(MODEL_COSTS={"gpt-4o-mini": {"input": 1, "output": 1}}):
        assert cost_of("gpt-4o-mini", 1000, 200) == Decimal("0.0012")  # MODEL_COSTS first
    # Never imported for a price: without litellm loaded, the model has none.
    monkeypatch.delitem(sys.modules, "litellm")
    assert cost_of("gpt-4o-mini", 1000, 200) is None
    assert "litellm" not in sys.modules


# A turn's usage by model, on the reply and on the session.


class Priced(LLMAgent):
    """The declared loop; each test gives the class its own FakeModel (named "fake-model")."""

    tools = ["price", "refund"]

    def price(self, item: str) -> dict:
        """Price of an item."""
        return {"item": item, "eur": 12}

    @requires_approval()
    def refund(self, amount: int) -> str:
        """Refund an amount."""
        return f"Refunded {amount}."


def priced(*replies, user=None) -> tuple[ConversationSession, FakeModel]:
    model = FakeModel(replies=list(replies))
    register_agent("priced", type("PricedUnderTest", (Priced,), {"model": model}))
    return ConversationService.create_session("priced", user=user), model


def test_a_turns_tokens_are_priced_by_model_on_the_reply_and_added_to_the_session():
    session, _ = priced(
        FakeReply(
            tool_calls=[FakeToolCall("price", {"item": "pro"})], usage={"prompt_tokens": 300, "completion_tokens": 20}
        ),
        FakeReply(text="Pro is 12 EUR.", usage={"prompt_tokens": 400, "completion_tokens": 30}),
    )
    with ai_settings(MODEL_COSTS=PRICES):
        result = ConversationService.send_message(session.id, "what is pro?")
    metrics = reply_of(result["user_message_id"]).metrics
    cost = usd(700, 50)
    assert metrics["models"] == {"fake-model": {"prompt_tokens": 700, "completion_tokens": 50, "cost": float(cost)}}
    assert metrics["cost"] == float(cost)
    assert (metrics["prompt_tokens"], metrics["completion_tokens"]) == (700, 50)  # as before: the totals
    assert sums(session) == (700, 50, cost)


def test_a_model_without_a_price_counts_its_tokens_and_no_cost():
    session, _ = priced(FakeReply(text="Hi.", usage={"prompt_tokens": 40, "completion_tokens": 2}))
    result = ConversationService.send_message(session.id, "hi")
    metrics = reply_of(result["user_message_id"]).metrics
    assert metrics["models"] == {"fake-model": {"prompt_tokens": 40, "completion_tokens": 2, "cost": None}}
    assert "cost" not in metrics
    assert sums(session) == (40, 2, Decimal(0))


class Reporting(ConversationAgent):
    """Reports usage as the message says: ``model=<name>``, ``cost=<usd>``, ``fail``."""

    model = "house-model"

    def get_response(self, message, request=None, **kwargs):
        words = dict(word.split("=", 1) for word in message.split() if "=" in word)
        usage = {"prompt_tokens": 1000, "completion_tokens": 100}
        if "cost" in words:
            usage["cost"] = float(words["cost"])
        report_usage(**usage, model=words.get("model"))
        if "fail" in message.split():
            raise RuntimeError("the agent broke after spending tokens")
        return "ok"


def reporting(user=None) -> ConversationSession:
    register_agent("reporting", Reporting)
    return ConversationService.create_session("reporting", user=user)


def test_an_agent_reported_cost_wins_over_the_computed_one():
    session = reporting()
    with ai_settings(MODEL_COSTS={"house-model": {"input": 1, "output": 1}, "other": {"input": 1, "output": 1}}):
        first = ConversationService.send_message(session.id, "cost=0.5")
        second = ConversationService.send_message(session.id, "model=other cost=0")
        third = ConversationService.send_message(session.id, "model=other")
    assert reply_of(first["user_message_id"]).metrics["models"] == {
        "house-model": {"prompt_tokens": 1000, "completion_tokens": 100, "cost": 0.5}
    }
    assert reply_of(first["user_message_id"]).metrics["cost"] == 0.5
    # A cost of 0 reported is a price too (a free model); without one, MODEL_COSTS prices it.
    assert reply_of(second["user_message_id"]).metrics["cost"] == 0
    assert reply_of(third["user_message_id"]).metrics["cost"] == 0.0011
    assert sums(session) == (3000, 300, Decimal("0.5011"))


def test_a_price_off_by_millions_leaves_the_cost_unknown_and_the_turn_recorded(caplog):
    session = reporting()
    with ai_settings(MODEL_COSTS={"house-model": {"input": 10**12, "output": 0}}):  # 10^9 USD a turn
        result = ConversationService.send_message(session.id, "hello")
    assert result["status"] == "success"
    metrics = reply_of(result["user_message_id"]).metrics
    assert metrics["models"]["house-model"]["cost"] is None and "cost" not in metrics
    assert sums(session) == (1000, 100, Decimal(0))
    assert any("MODEL_COSTS" in record.getMessage() for record in caplog.records)


def test_a_sessions_cost_saturates_at_what_its_column_holds_and_its_turns_are_still_recorded():
    session = reporting()
    ConversationSession.objects.filter(pk=session.pk).update(cost=Decimal("99999999.5"))
    result = ConversationService.send_message(session.id, "cost=900000")
    assert result["status"] == "success"  # the UPDATE recording the turn did not overflow the column
    assert reply_of(result["user_message_id"]).metrics["cost"] == 900000
    assert sums(session) == (1000, 100, Decimal(99_999_999))


def test_a_usage_without_a_model_counts_under_the_agents_model_else_unknown():
    session = reporting()
    result = ConversationService.send_message(session.id, "hello")
    assert list(reply_of(result["user_message_id"]).metrics["models"]) == ["house-model"]

    class Anonymous(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            report_usage(prompt_tokens=5, completion_tokens=1)
            return "ok"

    register_agent("anonymous-model", Anonymous)
    other = ConversationService.create_session("anonymous-model")
    result = ConversationService.send_message(other.id, "hello")
    assert list(reply_of(result["user_message_id"]).metrics["models"]) == ["unknown"]


def test_report_usage_refuses_a_model_that_is_not_a_name_and_counts_it_cannot_hold():
    refused = []

    class Careless(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            for bad in ({"model": 42}, {"model": "m" * 201}, {"prompt_tokens": -5}, {"cost": -1}, {"cost": 10**7}):
                try:
                    report_usage(**{"completion_tokens": 1, **bad})
                except InvalidInput as exc:
                    refused.append(exc.field)
            report_usage(prompt_tokens=7, completion_tokens=1, model="fine")
            return "ok"

    register_agent("careless", Careless)
    session = ConversationService.create_session("careless")
    result = ConversationService.send_message(session.id, "go")
    assert result["status"] == "success"
    assert refused == ["model", "model", "prompt_tokens", "cost", "cost"]
    # Nothing of the refused calls was counted.
    assert reply_of(result["user_message_id"]).metrics["models"] == {
        "fine": {"prompt_tokens": 7, "completion_tokens": 1, "cost": None}
    }
    assert sums(session) == (7, 1, Decimal(0))


def test_session_sums_count_every_run_once_failed_and_resumed_turns_included():
    session, model = priced(
        # 1: answered.
        FakeReply(text="Hello.", usage={"prompt_tokens": 100, "completion_tokens": 10}),
        # 2: a tool round, then the model fails: the turn fails, its tokens were spent.
        FakeReply(
            tool_calls=[FakeToolCall("price", {"item": "a"})], usage={"prompt_tokens": 200, "completion_tokens": 20}
        ),
        RuntimeError("the model is down"),
        # 3: suspended for an approval, then resumed.
        FakeReply(
            text="Checking. ",
            tool_calls=[FakeToolCall("refund", {"amount": 50}, id="r")],
            usage={"prompt_tokens": 300, "completion_tokens": 30},
        ),
        FakeReply(text="Refunded.", usage={"prompt_tokens": 400, "completion_tokens": 40}),
    )
    with ai_settings(MODEL_COSTS=PRICES):
        assert ConversationService.send_message(session.id, "hi")["status"] == "success"
        assert sums(session) == (100, 10, usd(100, 10))
        failed = ConversationService.send_message(session.id, "price of a?")
        assert failed["status"] == "error"
        assert sums(session) == (300, 30, usd(300, 30))
        suspended = ConversationService.send_message(session.id, "refund 50")
        assert sums(session) == (600, 60, usd(600, 60))  # the first run, at the suspension
        waiting = reply_of(suspended["user_message_id"])
        assert waiting.processing_status == ProcessingStatus.AWAITING_APPROVAL
        assert waiting.metrics["models"]["fake-model"]["prompt_tokens"] == 300
        [step] = ConversationMessage.objects.filter(reply_to_id=suspended["user_message_id"], message_type="tool")
        answer_approval(step.pk, approved=True)
        process_pending(session.pk)  # the task answer_approval schedules, run here
    assert sums(session) == (1000, 100, usd(1000, 100))  # the resumed run only: not the first run again
    resumed = reply_of(suspended["user_message_id"])
    assert resumed.processing_status == ProcessingStatus.COMPLETED
    # The reply's metrics: the whole reply, both runs.
    assert resumed.metrics["models"] == {
        "fake-model": {"prompt_tokens": 700, "completion_tokens": 70, "cost": float(usd(700, 70))}
    }
    assert resumed.metrics["cost"] == float(usd(700, 70))
    # The failed turn's usage is on its reply (or on its notice when it wrote nothing).
    failed_rows = ConversationMessage.objects.filter(reply_to_id=failed["user_message_id"]).exclude(metrics={})
    [failed_reply] = failed_rows.exclude(message_type="tool")
    assert failed_reply.metrics["models"]["fake-model"] == {
        "prompt_tokens": 200,
        "completion_tokens": 20,
        "cost": float(usd(200, 20)),
    }


def test_the_session_instance_a_turn_used_reads_the_stored_sums_and_cannot_write_old_ones_back():
    used = []

    def on_finished(sender, session, **kwargs):
        used.append(session)

    session = reporting()
    turn_finished.connect(on_finished)
    try:
        with ai_settings(MODEL_COSTS={"house-model": {"input": 1, "output": 1}}):
            ConversationService.send_message(session.id, "one")
            ConversationService.send_message(session.id, "two")
    finally:
        turn_finished.disconnect(on_finished)
    instance = used[-1]
    assert (instance.prompt_tokens, instance.completion_tokens, instance.cost) == (2000, 200, Decimal("0.0022"))
    # A sum changed since (another turn), then a full save of the instance: nothing old written back.
    ConversationSession.objects.filter(pk=session.pk).update(prompt_tokens=5000)
    used[0].title = "renamed"
    used[0].save()
    assert sums(session) == (5000, 200, Decimal("0.0022"))
    assert ConversationSession.objects.get(pk=session.pk).title == "renamed"


def test_the_sums_go_with_the_update_a_turn_makes_anyway():
    session = reporting()
    ConversationService.send_message(session.id, "warm up")

    class Quiet(ConversationAgent):
        model = "house-model"

        def get_response(self, message, request=None, **kwargs):
            return "ok"

    register_agent("quiet", Quiet)
    quiet = ConversationService.create_session("quiet")
    ConversationService.send_message(quiet.id, "warm up")
    with CaptureQueriesContext(connection) as without_usage:
        ConversationService.send_message(quiet.id, "hello")
    with ai_settings(MODEL_COSTS={"house-model": {"input": 1, "output": 1}}):
        with CaptureQueriesContext(connection) as with_usage:
            ConversationService.send_message(session.id, "hello")
    assert len(with_usage.captured_queries) == len(without_usage.captured_queries)
    updates = [
        q["sql"]
        for q in with_usage.captured_queries
        if q["sql"].lstrip().upper().startswith("UPDATE") and '"prompt_tokens"' in q["sql"]
    ]
    # One UPDATE of the session: the one that records the turn's end (last_message_at) anyway.
    assert len(updates) == 1 and '"last_message_at"' in updates[0] and '"cost"' in updates[0]
    assert sums(session) == (2000, 200, Decimal("0.0011"))


# Per owner.


def test_usage_by_owner_sums_each_owners_conversations():
    ada, bob = UserFactory(username="ada"), UserFactory(username="bob")
    SessionFactory(user=ada, prompt_tokens=100, completion_tokens=10, cost=Decimal("0.5"))
    SessionFactory(user=ada, prompt_tokens=50, completion_tokens=5, cost=Decimal("0.25"))
    SessionFactory(user=bob, prompt_tokens=1, completion_tokens=1, cost=Decimal(0))
    visitor = SessionFactory(prompt_tokens=7, completion_tokens=3, cost=Decimal("1.5"))
    SessionFactory(anonymous_id="", prompt_tokens=2, completion_tokens=2)
    rows = list(usage_by_owner())
    assert [(r["user"], r["anonymous_id"]) for r in rows][:2] == [(None, visitor.anonymous_id), (ada.pk, "")]
    assert rows[1] == {
        "user": ada.pk,
        "anonymous_id": "",
        "conversations": 2,
        "prompt_tokens": 150,
        "completion_tokens": 15,
        "cost": Decimal("0.75"),
    }
    assert len(rows) == 4  # ada, bob, the visitor, no owner
    only_bob = list(usage_by_owner(ConversationSession.objects.filter(user=bob)))
    assert [(r["user"], r["prompt_tokens"]) for r in only_bob] == [(bob.pk, 1)]


# The admin.


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


CHANGELIST = "admin:django_ai_conversations_conversationsession_changelist"
USAGE_PAGE = "admin:django_ai_conversations_usage_by_owner"


def listed(response) -> set[str]:
    """The conversations (their titles) of a changelist page."""
    return set(re.findall(r"conv-(\w+)", response.content.decode()))


def test_the_session_list_shows_tokens_and_cost_and_filters_by_cost_and_owner_kind(staff_client):
    user = UserFactory()
    SessionFactory(title="conv-free", user=user, prompt_tokens=1200, completion_tokens=34)
    SessionFactory(title="conv-cheap", prompt_tokens=10, completion_tokens=1, cost=Decimal("0.004"))
    SessionFactory(title="conv-mid", user=user, cost=Decimal("0.2"))
    SessionFactory(title="conv-dear", anonymous_id="", cost=Decimal("3"))
    page = staff_client.get(reverse(CHANGELIST))
    text = page.content.decode()
    assert page.status_code == 200
    assert "1,234" in text and "$0.0040" in text and "$3.0000" in text
    assert ">Tokens<" in text.replace("\n", "") or "column-tokens" in text

    def filtered(**query) -> set[str]:
        response = staff_client.get(reverse(CHANGELIST), query)
        assert response.status_code == 200
        return listed(response)

    assert filtered(cost="none") == {"free"}
    assert filtered(cost="any") == {"cheap", "mid", "dear"}
    assert filtered(cost="under-0.01") == {"cheap"}
    assert filtered(cost="0.01-1") == {"mid"}
    assert filtered(cost="1-plus") == {"dear"}
    assert filtered(owner_kind="user") == {"free", "mid"}
    assert filtered(owner_kind="anonymous") == {"cheap"}
    assert filtered(owner_kind="none") == {"dear"}
    # Sortable by tokens (column 5) and cost (column 6).
    by_cost = staff_client.get(reverse(CHANGELIST), {"o": "-6"}).content.decode()
    assert by_cost.index("conv-dear") < by_cost.index("conv-mid") < by_cost.index("conv-cheap")
    by_tokens = staff_client.get(reverse(CHANGELIST), {"o": "-5"}).content.decode()
    assert by_tokens.index("conv-free") < by_tokens.index("conv-cheap") < by_tokens.index("conv-dear")


def test_usage_by_owner_page_lists_owners_with_their_sums_and_links_to_their_conversations(staff_client):
    ada = UserFactory(username="ada")
    SessionFactory(
        title="conv-ada1", user=ada, agent_path="shop", prompt_tokens=1000, completion_tokens=100, cost=Decimal("0.5")
    )
    SessionFactory(
        title="conv-ada2", user=ada, agent_path="help", prompt_tokens=500, completion_tokens=50, cost=Decimal("0.25")
    )
    visitor = SessionFactory(
        title="conv-visitor", agent_path="shop", prompt_tokens=7, completion_tokens=3, cost=Decimal(2)
    )
    changelist = staff_client.get(reverse(CHANGELIST)).content.decode()
    assert reverse(USAGE_PAGE) in changelist  # linked from the conversation list

    page = staff_client.get(reverse(USAGE_PAGE))
    assert page.status_code == 200
    text = page.content.decode()
    rows = re.findall(r'<tr class="usage-owner">(.*?)</tr>', text, re.S)
    cells = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in rows]
    assert len(cells) == 2
    assert visitor.anonymous_id[:12] in cells[0][0] and cells[0][1] == "anonymous"  # the dearest first
    assert visitor.anonymous_id not in text  # the visitor's key is not shown whole
    assert "ada" in cells[1][0] and cells[1][2:] == ["2", "1,500", "150", "$0.7500"]
    assert "$2.7500" in text  # the total

    # Each owner's link lists that owner's conversations.
    links = [re.search(r'href="([^"]+)"', row).group(1).replace("&amp;", "&") for row in rows]
    assert listed(staff_client.get(links[0])) == {"visitor"}
    assert listed(staff_client.get(links[1])) == {"ada1", "ada2"}

    # One agent only.
    shop = staff_client.get(reverse(USAGE_PAGE), {"agent_path": "shop"}).content.decode()
    shop_rows = re.findall(r'<tr class="usage-owner">(.*?)</tr>', shop, re.S)
    assert len(shop_rows) == 2 and "1,000" in shop_rows[1] and "1,500" not in shop_rows[1]
    ada_shop = re.search(r'href="([^"]+)"', shop_rows[1]).group(1).replace("&amp;", "&")
    assert listed(staff_client.get(ada_shop)) == {"ada1"}


def test_usage_by_owner_is_for_staff_who_may_view_conversations(client):
    url = reverse(USAGE_PAGE)
    client.force_login(UserFactory())
    response = client.get(url)
    assert response.status_code == 302 and "/login/" in response["Location"]
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_conversationsession"))
    assert client.get(url).status_code == 200


# manage.py usage_report.


def turn(session, *, finished_ago: timedelta, metrics: dict, attempts: int = 1, kind: str = MessageType.AGENT):
    user_message = MessageFactory(session=session, attempts=attempts, finished_at=timezone.now() - finished_ago)
    return MessageFactory(session=session, message_type=kind, reply_to=user_message, metrics=metrics)


def run(**options) -> str:
    out = io.StringIO()
    call_command("usage_report", stdout=out, **options)
    return out.getvalue()


def test_usage_report_prints_the_last_days_totals_by_agent_and_model():
    shop, helper = SessionFactory(agent_path="shop"), SessionFactory(agent_path="help")
    both = {
        "attempt": 1,
        "models": {
            "gpt-4o": {"prompt_tokens": 1000, "completion_tokens": 100, "cost": 0.01},
            "gpt-4o-mini": {"prompt_tokens": 500, "completion_tokens": 50, "cost": 0.001},
        },
        "cost": 0.011,
    }
    turn(shop, finished_ago=timedelta(hours=1), metrics=both)
    turn(
        shop,
        finished_ago=timedelta(hours=2),
        metrics={"attempt": 1, "models": {"gpt-4o": {"prompt_tokens": 10, "completion_tokens": 1, "cost": None}}},
    )
    turn(shop, finished_ago=timedelta(hours=3), metrics={"attempt": 1, "total_ms": 5})  # reported no usage
    # A failed turn without a reply: its notice carries the metrics.
    turn(
        helper,
        finished_ago=timedelta(hours=4),
        kind=MessageType.SYSTEM,
        metrics={"attempt": 1, "models": {"gpt-4o": {"prompt_tokens": 7, "completion_tokens": 0, "cost": 0.5}}},
    )
    # Not counted: ended two days ago.
    turn(shop, finished_ago=timedelta(days=2), metrics=both)

    data = json.loads(run(json=True))
    assert [
        (r["agent"], r["model"], r["turns"], r["prompt_tokens"], r["completion_tokens"], r["cost"])
        for r in data["rows"]
    ] == [
        ("help", "gpt-4o", 1, 7, 0, 0.5),
        ("shop", "gpt-4o", 2, 1010, 101, 0.01),
        ("shop", "gpt-4o-mini", 1, 500, 50, 0.001),
        ("shop", None, 1, 0, 0, None),
    ]
    assert data["total"] == {"turns": 4, "prompt_tokens": 1517, "completion_tokens": 151, "cost": 0.511}

    table = run()
    assert table.startswith("Turns ended from ")
    assert re.search(r"shop\s+gpt-4o\s+2\s+1,010\s+101\s+0\.010000", table)
    assert re.search(r"shop\s+-\s+1\s+0\s+0\s+-", table)
    assert re.search(r"total\s+4\s+1,517\s+151\s+0\.511000", table)
    # A longer window takes the older turn in.
    assert json.loads(run(json=True, days=3))["total"]["turns"] == 5


def test_usage_report_counts_real_turns_and_refuses_a_bad_window():
    session = reporting()
    with ai_settings(MODEL_COSTS={"house-model": {"input": 1, "output": 1}}):
        ConversationService.send_message(session.id, "hello")
        assert ConversationService.send_message(session.id, "fail")["status"] == "error"  # its notice counts
    data = json.loads(run(json=True))
    assert data["rows"] == [
        {
            "agent": "reporting",
            "model": "house-model",
            "turns": 2,
            "prompt_tokens": 2000,
            "completion_tokens": 200,
            "cost": 0.0022,
        }
    ]
    for days in (0, -1, 10_000):
        with pytest.raises(CommandError, match="--days"):
            run(days=days)


def test_usage_report_counts_a_rerun_message_once_with_the_tokens_of_all_its_runs_as_the_session_does():
    session = reporting()
    with ai_settings(MODEL_COSTS={"house-model": {"input": 1, "output": 1}}):
        ConversationService.send_message(session.id, "hello")
        failed = ConversationService.send_message(session.id, "fail")  # its tokens were spent
        message = ConversationMessage.objects.get(pk=failed["user_message_id"])
        message.content = "works now"
        message.save(update_fields=["content"])
        assert rerun_messages([message]) == [message]  # the admin's re-run
        process_pending(session.pk)
    assert ConversationMessage.objects.get(pk=message.pk).processing_status == ProcessingStatus.COMPLETED
    data = json.loads(run(json=True))
    assert data["rows"] == [
        {
            "agent": "reporting",
            "model": "house-model",
            "turns": 2,  # the re-run message once
            "prompt_tokens": 3000,  # its failed run's 1000 too
            "completion_tokens": 300,
            "cost": 0.0033,
        }
    ]
    assert sums(session) == (3000, 300, Decimal("0.0033"))


# Checks.


def ours(**values) -> set[tuple[str, str]]:
    with ai_settings(**values):
        return {(m.id, m.msg) for m in run_checks() if m.id in ("django_ai.E031", "django_ai.E032")}


def test_checks_name_a_bad_model_costs_entry_and_a_telemetry_flag_that_is_not_a_bool():
    assert ours(MODEL_COSTS={"gpt-4o": {"input": 2.5, "output": 10}, "free": {"input": 0, "output": 0}}) == set()
    # Decimal prices are prices too (cost_of takes them as they are); a Decimal NaN or negative is not.
    assert ours(MODEL_COSTS={"exact": {"input": Decimal("2.5"), "output": Decimal(10)}}) == set()
    with ai_settings(MODEL_COSTS={"exact": {"input": Decimal("2.5"), "output": Decimal(10)}}):
        assert cost_of("exact", 400, 100) == Decimal("0.002")
    assert (
        len(ours(MODEL_COSTS={"a": {"input": Decimal("NaN"), "output": 1}, "b": {"input": Decimal(-1), "output": 1}}))
        == 2
    )
    assert {id for id, _ in ours(MODEL_COSTS=[("gpt-4o", 1)])} == {"django_ai.E031"}
    bad = {
        "no-output": {"input": 1},
        "negative": {"input": -1, "output": 1},
        "text": {"input": "1", "output": 1},
        "typo": {"inputs": 1, "output": 1},
        "flat": 2.5,
        "nan": {"input": float("nan"), "output": 1},
    }
    messages = ours(MODEL_COSTS=bad)
    assert len(messages) == len(bad)
    assert all(id == "django_ai.E031" for id, _ in messages)
    assert any("'negative'" in msg and "0 or more" in msg for _, msg in messages)
    found = ours(TELEMETRY_ENABLED="yes", TELEMETRY_TOOL_ARGUMENTS=1)
    assert {id for id, _ in found} == {"django_ai.E032"} and len(found) == 2
