"""Row actions: ``POST models/<name>/<pk>/<action>/``, a method of an exposed model marked with
``@row_action`` (the built-in ``approve`` of messages is one; tests/test_turn_approval.py pins it).

Real parts: the bridge's views over Django's test client, the shop's ``Order`` model in the test
database, the permission classes, DRF's throttles in the cache, Django's CSRF check.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from django_ai.conversations.api.throttling import MessageCreateThrottle
from django_ai.conversations.bridge import expose
from django_ai.conversations.bridge.exposed import row_action
from django_ai.conversations.bridge.permissions import IsAuthenticated, IsOwner, OnlyActions
from django_ai.conversations.constants import EventName
from django_ai.conversations.exceptions import InvalidInput
from django_ai.conversations.realtime.channels import owner_channel
from django_ai.conversations.testing.factories import UserFactory
from tests.shop.exposed import ExposedOrder
from tests.shop.models import Order

from .bridge_support import API, Api, ai, error_codes, error_fields, fresh_bridge, user_api  # noqa: F401

pytestmark = pytest.mark.django_db


class ShipThrottle(MessageCreateThrottle):
    scope = "test_ship"
    rate_scope = "ship"


class ShippingOrder(ExposedOrder):
    @row_action(body_keys=("carrier",))
    def ship(self, request, instance, data):
        carrier = data.get("carrier", "post")
        if not isinstance(carrier, str) or not carrier:
            raise InvalidInput("carrier must be a non-empty string.", field="carrier")
        if instance.status != "paid":
            raise InvalidInput("Only a paid order ships.", field="status")
        instance.status = "shipped"
        instance.save(update_fields=["status"])
        return instance

    @row_action(name="pay")
    def mark_paid(self, request, instance, data):
        instance.status = "paid"
        instance.save(update_fields=["status"])
        return instance

    @row_action()
    def forbidden(self, request, instance, data):
        raise AssertionError("never reached: OnlyActions does not list it")


@pytest.fixture
def orders(fresh_bridge):
    expose(
        Order,
        exposed_class=ShippingOrder,
        permission_classes=[IsAuthenticated, IsOwner(path="owner"), OnlyActions("read", "ship", "pay")],
        read_fields=["id", "total", "status"],
        throttle_classes={"ship": [ShipThrottle]},
    )
    owner = UserFactory()
    return owner, Order.objects.create(owner=owner, total=Decimal("12.50"), status="paid")


def test_the_owner_runs_an_action_and_gets_the_row(orders, events, django_capture_on_commit_callbacks):
    owner, order = orders
    with django_capture_on_commit_callbacks(execute=True):
        response = user_api(owner).post(f"models/order/{order.pk}/ship/", {"carrier": "ups"})
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "data": order.pk,
        "included": {"order": {str(order.pk): {"id": order.pk, "total": "12.50", "status": "shipped"}}},
        "meta": {},
    }
    order.refresh_from_db()
    assert order.status == "shipped"
    # Live querysets hear of it, as of an update through the bridge.
    changes = events.of(EventName.MODEL_CHANGE, channel=owner_channel(user_id=owner.pk))
    assert [(c["model"], c["operation"], c["pks"]) for c in changes] == [("order", "update", [str(order.pk)])]


def test_the_methods_refusal_is_the_answer_and_nothing_changes(orders):
    owner, order = orders
    api = user_api(owner)
    bad = api.post(f"models/order/{order.pk}/ship/", {"carrier": ""})
    assert bad.status_code == 400 and error_fields(bad) == ["carrier"]
    Order.objects.filter(pk=order.pk).update(status="open")
    unpaid = api.post(f"models/order/{order.pk}/ship/", {})
    assert unpaid.status_code == 400 and error_fields(unpaid) == ["status"]
    order.refresh_from_db()
    assert order.status == "open"


def test_another_owners_row_is_not_found(orders):
    _, order = orders
    response = user_api(UserFactory()).post(f"models/order/{order.pk}/ship/", {})
    assert response.status_code == 404 and error_codes(response) == ["not_found"]
    order.refresh_from_db()
    assert order.status == "paid"


def test_the_permission_classes_decide_by_the_actions_name(orders):
    owner, order = orders
    api = user_api(owner)
    refused = api.post(f"models/order/{order.pk}/forbidden/", {})
    assert refused.status_code == 403 and error_codes(refused) == ["permission_denied"]
    visitor = Api().post(f"models/order/{order.pk}/ship/", {})
    assert visitor.status_code == 403  # IsAuthenticated
    assert api.post(f"models/order/{order.pk}/pay/", {}).status_code == 200


def test_an_unknown_action_or_model_has_no_endpoint_whatever_the_method(orders):
    owner, order = orders
    api = user_api(owner)
    for method in ("get", "post", "patch", "delete"):
        body = {} if method in ("post", "patch") else None
        for path in (f"models/order/{order.pk}/refund/", f"models/nothing/{order.pk}/ship/"):
            response = api._send(method, path, body)
            assert response.status_code == 404 and error_codes(response) == ["not_found"], (method, path)
    # A known action answers POST only.
    assert api.get(f"models/order/{order.pk}/ship/").status_code == 405


@pytest.mark.parametrize(
    ("raw", "code"),
    [('{"carrier": "ups", "speed": 1}', "unknown_key"), ("[1]", "invalid_body"), ('"ship"', "invalid_body")],
)
def test_the_body_is_an_object_of_the_actions_keys(orders, raw, code):
    owner, order = orders
    response = user_api(owner)._send("post", f"models/order/{order.pk}/ship/", raw=raw)
    assert response.status_code == 400 and error_codes(response) == [code]
    order.refresh_from_db()
    assert order.status == "paid"


def test_each_action_has_its_own_throttles(orders):
    owner, order = orders
    api = user_api(owner)
    with ai(THROTTLE_RATES={"ship": "1/min", "row_action": None}):
        assert api.post(f"models/order/{order.pk}/ship/", {"carrier": 5}).status_code == 400
        throttled = api.post(f"models/order/{order.pk}/ship/", {})
        assert throttled.status_code == 429
        # "pay" has none of its own: the view's default throttles (none in the tests' settings).
        for _ in range(3):
            assert api.post(f"models/order/{order.pk}/pay/", {}).status_code == 200


def test_an_action_is_a_write_a_cookie_needs_the_csrf_token_for(orders):
    owner, order = orders
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(API + f"models/order/{order.pk}/pay/", "{}", content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["errors"][0]["message"]


def test_the_schema_lists_the_actions_the_caller_may_run(orders):
    owner, _ = orders
    described = user_api(owner).get("schema/").json()["models"]["order"]
    assert described["row_actions"] == ["ship", "pay"]
    assert Api().get("schema/").json()["models"]["order"]["row_actions"] == []
    message = user_api(owner).get("schema/").json()["models"]["message"]
    assert sorted(message["row_actions"]) == ["activate", "approve", "edit", "feedback", "regenerate"]


def test_row_actions_are_inherited_and_checked_when_exposed(fresh_bridge):
    class MoreShipping(ShippingOrder):
        @row_action()
        def ship(self, request, instance, data):  # replaces the inherited one
            return instance

    assert sorted(MoreShipping.get_row_actions()) == ["forbidden", "pay", "ship"]
    assert MoreShipping.get_row_actions()["ship"].body_keys == frozenset()
    with pytest.raises(ImproperlyConfigured, match="names 'shp', which is neither a bridge action"):
        expose(
            Order, exposed_class=ShippingOrder, permission_classes=[IsOwner(path="owner")], throttle_classes={"shp": []}
        )
    with pytest.raises(ImproperlyConfigured, match="'refund' is neither a bridge action"):
        expose(Order, exposed_class=ShippingOrder, permission_classes=[OnlyActions("read", "refund")])
    with pytest.raises(ImproperlyConfigured, match="must be an identifier other than"):

        class Clash(ExposedOrder):
            @row_action(name="delete")
            def remove(self, request, instance, data):
                return instance
