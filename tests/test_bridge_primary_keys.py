"""Rows of a project's models found by their primary key, whatever its name and type: an integer
``id`` (``shop.Order``), a string ``code`` (``shop.Ticket``), a big integer beyond what a
JavaScript number holds. ``pk`` and ``pk__in`` filter every exposed model; answers carry each pk
as JSON carries its type; ``PATCH`` / ``DELETE models/<name>/<pk>/`` take any of them.

Real parts: the test project's ``shop`` app (tests/settings.py), its migrations, the database,
the demo URLs and the test client.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from django_ai.conversations.testing import SessionFactory, UserFactory
from tests.shop.models import Order, Ticket

from .bridge_support import anonymous_api, error_codes, fresh_bridge, rows, shop, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shop")]

#: The first integer a JavaScript number cannot hold exactly is 2**53 + 1.
BEYOND_DOUBLES = 2**53 + 1


@pytest.fixture
def world():
    alice, bob = UserFactory(), UserFactory()
    orders = [Order.objects.create(owner=alice, total=Decimal(n)) for n in (10, 20, 30)]
    theirs = Order.objects.create(owner=bob, total=Decimal(99))
    session = SessionFactory(user=alice)
    tickets = [Ticket.objects.create(code=code, session=session, subject=code.lower()) for code in ("T-1", "T-2")]
    other = Ticket.objects.create(code="T-9", session=SessionFactory(user=bob), subject="bob's")
    return {
        "alice": alice,
        "bob": bob,
        "orders": orders,
        "theirs": theirs,
        "session": session,
        "tickets": tickets,
        "other": other,
    }


def data(response):
    assert response.status_code == 200, response.json()
    return response.json()["data"]


class TestIntegerPrimaryKey:
    def test_pk_filters_take_the_number_or_its_string(self, world):
        api = user_api(world["alice"])
        first = world["orders"][0].pk
        assert data(api.query("order", {"filter": {"pk": first}})) == [first]
        assert data(api.query("order", {"filter": {"pk": str(first)}})) == [first]
        assert data(api.query("order", {"filter": {"pk__exact": first}})) == [first]
        wanted = [world["orders"][1].pk, world["orders"][2].pk]
        assert data(api.query("order", {"filter": {"pk__in": [wanted[0], str(wanted[1])]}})) == wanted
        # The field's own name works as the FilterSet declares it.
        assert data(api.query("order", {"filter": {"id": str(first)}})) == [first]
        # Someone else's order is simply absent, as with any filter.
        assert data(api.query("order", {"filter": {"pk": world["theirs"].pk}})) == []

    def test_a_pk_filter_needs_an_integer(self, world):
        api = user_api(world["alice"])
        for value in ("1.5", "abc", "", " 1", "١", True, [1]):
            response = api.query("order", {"filter": {"pk": value}})
            assert response.status_code == 400, value
            assert error_codes(response) == ["invalid_query"], value

    def test_answers_carry_integer_pks_as_numbers(self, world):
        body = user_api(world["alice"]).query("order", {"fields": ["total"]}).json()
        pks = [o.pk for o in world["orders"]]
        assert body["data"] == pks
        assert list(body["included"]["order"]) == [str(pk) for pk in pks]
        assert [row["id"] for row in body["included"]["order"].values()] == pks

    def test_detail_paths_take_an_integer_pk(self, world):
        api = user_api(world["alice"])
        order = world["orders"][0]
        response = api.update("order", order.pk, {"status": "paid"})
        assert response.status_code == 200, response.json()
        assert response.json()["data"] == order.pk
        assert response.json()["included"]["order"][str(order.pk)]["status"] == "paid"
        assert api.delete("order", world["orders"][1].pk).status_code == 204
        assert not Order.objects.filter(pk=world["orders"][1].pk).exists()
        # Another owner's order, an id that is no integer, an id that does not exist: 404 alike.
        for pk in (world["theirs"].pk, "abc", "1e3", 10**6):
            assert error_codes(api.update("order", pk, {"status": "paid"})) == ["not_found"], pk
        assert Order.objects.get(pk=world["theirs"].pk).status == "open"

    def test_a_create_answers_with_the_new_integer_pk(self, world):
        response = user_api(world["alice"]).create("order", {"total": "5.00"})
        assert response.status_code == 201, response.json()
        pk = response.json()["data"]
        assert isinstance(pk, int) and Order.objects.get(pk=pk).owner == world["alice"]
        assert response.json()["included"]["order"][str(pk)]["total"] == "5.00"
        assert anonymous_api().create("order", {"total": "5.00"}).status_code == 403

    def test_schema_names_the_primary_key_and_its_type(self, world):
        models = user_api(world["alice"]).get("schema/").json()["models"]
        assert models["order"]["primary_key"] == "id"
        assert models["order"]["fields"]["id"] == {"type": "integer", "null": False, "primary_key": True}
        assert models["order"]["filters"]["pk"] == ["exact", "in"]
        assert models["ticket"]["primary_key"] == "code"
        assert models["ticket"]["fields"]["code"]["type"] == "string"
        assert models["ticket"]["fields"]["code"]["primary_key"] is True


class TestPrimaryKeyBeyondDoubles:
    def test_a_big_integer_pk_travels_as_a_string_and_finds_its_row(self, world):
        order = Order.objects.create(pk=BEYOND_DOUBLES, owner=world["alice"], total=Decimal(1))
        # Its neighbour, which a double would confuse it with (2**53 + 1 rounds to 2**53).
        Order.objects.create(pk=BEYOND_DOUBLES - 1, owner=world["alice"], total=Decimal(2))
        api = user_api(world["alice"])
        assert data(api.query("order", {"filter": {"pk": str(BEYOND_DOUBLES)}})) == [str(BEYOND_DOUBLES)]
        assert data(api.query("order", {"filter": {"pk__in": [str(BEYOND_DOUBLES)]}})) == [str(BEYOND_DOUBLES)]
        response = api.update("order", str(BEYOND_DOUBLES), {"status": "shipped"})
        assert response.json()["data"] == str(BEYOND_DOUBLES)
        assert response.json()["included"]["order"][str(BEYOND_DOUBLES)]["id"] == str(BEYOND_DOUBLES)
        order.refresh_from_db()
        assert order.status == "shipped"
        assert Order.objects.get(pk=BEYOND_DOUBLES - 1).status == "open"


class TestNamedStringPrimaryKey:
    def test_pk_and_its_name_find_the_row(self, world):
        api = user_api(world["alice"])
        assert data(api.query("ticket", {"filter": {"pk": "T-2"}})) == ["T-2"]
        assert data(api.query("ticket", {"filter": {"code": "T-1"}})) == ["T-1"]
        assert data(api.query("ticket", {"filter": {"pk__in": ["T-1", "T-2", "T-9"]}})) == ["T-1", "T-2"]
        assert data(api.query("ticket")) == ["T-1", "T-2"]
        row = rows(api.query("ticket", {"filter": {"pk": "T-1"}}), "ticket")[0]
        assert row == {"code": "T-1", "session": str(world["session"].pk), "subject": "t-1", "order": None}
        # There is no `id` on this model: naming one is an unknown filter, not a server error.
        assert error_codes(api.query("ticket", {"filter": {"id": "T-1"}})) == ["unknown_filter"]

    def test_create_update_delete_by_code(self, world):
        api = user_api(world["alice"])
        created = api.create(
            "ticket", {"session": str(world["session"].pk), "subject": "late parcel", "order": world["orders"][0].pk}
        )
        assert created.status_code == 201, created.json()
        code = created.json()["data"]
        assert isinstance(code, str) and code.startswith("T-")
        assert created.json()["included"]["ticket"][code]["order"] == world["orders"][0].pk
        updated = api.update("ticket", code, {"subject": "parcel found"})
        assert updated.status_code == 200 and updated.json()["data"] == code
        assert Ticket.objects.get(pk=code).subject == "parcel found"
        assert error_codes(api.update("ticket", "T-9", {"subject": "mine"})) == ["not_found"]
        assert api.delete("ticket", code).status_code == 204
        assert not Ticket.objects.filter(pk=code).exists()

    def test_include_brings_rows_keyed_by_their_pk(self, world):
        ticket = world["tickets"][0]
        ticket.order = world["orders"][2]
        ticket.save()
        body = user_api(world["alice"]).query("ticket", {"filter": {"pk": ticket.pk}, "include": ["order"]}).json()
        order = world["orders"][2]
        assert body["included"]["ticket"]["T-1"]["order"] == order.pk
        assert body["included"]["order"] == {
            str(order.pk): {
                "id": order.pk,
                "total": "30.00",
                "big": 0,
                "duration": None,
                "reference": str(order.reference),
                "status": "open",
            }
        }
