"""``model_change``: every exposed model announces its changes once they commit, on the channels
it chooses, so the SDK's ``live()`` over it stays current. A project's model announces the writes
made through the bridge (on the writer's owner channel and the channel of the conversation a row
points to), or every save when it sets ``announce_all_saves`` (the shop's tickets, the built-ins),
one event per write either way.

Real parts: the test project's ``shop`` app, the database and its commits, the Memory realtime
backend (what was published, on which channel).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from django_ai.conversations.bridge import expose, exposed_models, get_exposed
from django_ai.conversations.bridge.builtins import ExposedSession
from django_ai.conversations.bridge.permissions import IsOwner, IsStaff, OnlyActions
from django_ai.conversations.constants import EventName, ModelOperation
from django_ai.conversations.realtime.channels import owner_channel, session_channel
from django_ai.conversations.realtime.sync import emit_model_change
from django_ai.conversations.testing import SessionFactory, UserFactory
from tests.shop.models import Order, Ticket

from .bridge_support import anonymous_api, fresh_bridge, shop, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shop")]


def changes(events, channel=None):
    return [
        (p["model"], p["operation"], p["pks"], p["operation_id"])
        for p in events.of(EventName.MODEL_CHANGE, channel=channel)
    ]


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


def test_a_project_model_announcing_all_saves_hears_of_orm_writes(django_capture_on_commit_callbacks, events):
    """``tests.shop``'s tickets announce every save (agent code writes them with the ORM), on the
    channels their exposed model names: the conversation's and its owner's."""
    user = UserFactory()
    session = SessionFactory(user=user)
    with django_capture_on_commit_callbacks(execute=True):
        ticket = Ticket.objects.create(session=session, subject="late parcel")
    with django_capture_on_commit_callbacks(execute=True):
        ticket.subject = "parcel found"
        ticket.save()
    code = ticket.code
    with django_capture_on_commit_callbacks(execute=True):
        ticket.delete()
    expected = [
        ("ticket", "create", [code], None),
        ("ticket", "update", [code], None),
        ("ticket", "delete", [code], None),
    ]
    assert changes(events, session_channel(session.pk)) == expected
    assert changes(events, owner_channel(user_id=user.pk)) == expected


def test_a_model_announcing_bridge_writes_only_is_silent_on_orm_writes(django_capture_on_commit_callbacks, events):
    with django_capture_on_commit_callbacks(execute=True):
        order = Order.objects.create(owner=UserFactory(), total=Decimal(1))
        order.delete()
    assert changes(events) == []


def test_code_announces_its_own_changes_of_such_a_model(django_capture_on_commit_callbacks, events):
    """``announce_change`` with no request: the conversations the row points to hear of it."""
    expose(Ticket, name="plain_ticket", permission_classes=[IsOwner(path="session")], read_fields=["subject"])
    session = SessionFactory()
    with django_capture_on_commit_callbacks(execute=True):
        ticket = Ticket.objects.create(session=session, subject="x")
        get_exposed("plain_ticket").announce_change(None, "update", ticket, ticket.pk)
    plain = [c for c in changes(events) if c[0] == "plain_ticket"]
    assert plain == [("plain_ticket", "update", [ticket.code], None)]
    assert [c for c in changes(events, session_channel(session.pk)) if c[0] == "plain_ticket"] == plain


def test_the_documented_sync_alias_announces_any_exposed_model(django_capture_on_commit_callbacks, events):
    """``realtime.sync.emit_model_change`` once dispatched on class names (a KeyError for any model
    but the four built-ins); it is the exposed models' own announcement now."""
    # A second registration of the model that announces bridge writes only: an explicit call is
    # announced by it too.
    expose(Ticket, name="plain_ticket", permission_classes=[IsOwner(path="session")], read_fields=["subject"])
    session = SessionFactory()
    ticket = Ticket.objects.create(session=session, subject="x")
    with django_capture_on_commit_callbacks(execute=True):
        emit_model_change(ticket, ModelOperation.UPDATE)
    assert sorted(changes(events, session_channel(session.pk))) == [
        ("plain_ticket", "update", [ticket.code], None),
        ("ticket", "update", [ticket.code], None),
    ]


def test_a_replaced_built_in_keeps_announcing_its_saves(django_capture_on_commit_callbacks, events):
    """Registering a built-in anew (e.g. to add IsStaff) keeps its model_change: the signals ask
    the catalog for the model's current registration."""
    exposed_models.register(ExposedSession(permission_classes=[IsOwner() | IsStaff, OnlyActions("read", "update")]))
    session = SessionFactory()
    with django_capture_on_commit_callbacks(execute=True):
        session.title = "Renamed"
        session.save()
    assert changes(events, session_channel(session.pk))[-1] == ("session", "update", [str(session.pk)], None)
