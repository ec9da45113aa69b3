"""``model_change`` for a project's models: a write through the bridge announces itself once it
commits, on the writer's owner channel and on the channel of the conversation the row points to,
so the SDK's ``live()`` over such a model stays current. Built-in models keep the events of their
model signals, one per write.

Real parts: the test project's ``shop`` app, the database and its commits, the Memory realtime
backend (what was published, on which channel).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from django_ai.conversations.constants import EventName
from django_ai.conversations.realtime.channels import owner_channel, session_channel
from django_ai.conversations.testing import SessionFactory, UserFactory
from tests.shop.models import Order

from .bridge_support import anonymous_api, fresh_bridge, shop, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shop")]


def changes(events, channel=None):
    return [(p["model"], p["operation"], p["pks"], p["operation_id"]) for p in events.of(EventName.MODEL_CHANGE, channel=channel)]


def test_order_writes_reach_the_owners_channel(django_capture_on_commit_callbacks, events):
    alice = UserFactory()
    api = user_api(alice)
    mine = owner_channel(user_id=alice.pk)
    with django_capture_on_commit_callbacks(execute=True):
        pk = api.create("order", {"total": "5.00"}, HTTP_X_OPERATION_ID="op-1").json()["data"]
    with django_capture_on_commit_callbacks(execute=True):
        assert api.update("order", pk, {"status": "paid"}, HTTP_X_OPERATION_ID="op-2").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete("order", pk).status_code == 204
    assert changes(events, mine) == [
        ("order", "create", [str(pk)], "op-1"),
        ("order", "update", [str(pk)], "op-2"),
        ("order", "delete", [str(pk)], None),
    ]
    assert changes(events) == changes(events, mine), "no other channel hears of alice's orders"


def test_nothing_is_announced_before_the_commit_or_for_a_refused_write(django_capture_on_commit_callbacks, events):
    alice, bob = UserFactory(), UserFactory()
    order = Order.objects.create(owner=alice, total=Decimal(1))
    with django_capture_on_commit_callbacks(execute=False) as pending:
        assert user_api(alice).update("order", order.pk, {"status": "paid"}).status_code == 200
    assert changes(events) == [] and len(pending) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert user_api(bob).update("order", order.pk, {"status": "shipped"}).status_code == 404
        assert user_api(alice).update("order", order.pk, {"total": "1.234"}).status_code == 400
    assert changes(events) == []


def test_a_row_of_a_conversation_reaches_its_channel(django_capture_on_commit_callbacks, events):
    visitor = anonymous_api()
    session = SessionFactory(anonymous_id=visitor.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"])
    with django_capture_on_commit_callbacks(execute=True):
        response = visitor.create("ticket", {"session": str(session.pk), "subject": "late parcel"})
    code = response.json()["data"]
    expected = [("ticket", "create", [code], None)]
    assert changes(events, session_channel(session.pk)) == expected
    assert changes(events, owner_channel(anonymous_id=session.anonymous_id)) == expected
    assert {p["session_id"] for p in events.of(EventName.MODEL_CHANGE)} == {str(session.pk)}


def test_a_built_in_model_still_announces_once_per_write(django_capture_on_commit_callbacks, events):
    user = UserFactory()
    session = SessionFactory(user=user)
    with django_capture_on_commit_callbacks(execute=True):
        assert user_api(user).update("session", session.pk, {"title": "Renamed"}).status_code == 200
    assert changes(events, session_channel(session.pk)) == [("session", "update", [str(session.pk)], None)]
