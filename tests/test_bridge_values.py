"""Values JSON numbers cannot carry exactly travel as strings, and come back the same way:
decimals as DRF sends them (``"99.00"``), integers beyond 2**53 - 1 as strings of digits,
durations as ISO 8601, UUIDs as strings. Filters and writes take those strings. Text fields take
JSON strings only, and so do relation ids (a number is no session or file id).

Real parts: the test project's ``shop.Order`` (tests/settings.py), the database (SQLite, and
PostgreSQL with DATABASE_URL), the demo URLs and the test client.
"""

from __future__ import annotations

import datetime
import json
import uuid
from decimal import Decimal

import pytest

from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.testing import FileFactory, SessionFactory, UserFactory
from tests.shop.models import Order

from .bridge_support import echo_agent, error_codes, error_fields, fresh_bridge, rows, shop, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shop")]

BIG = 2**53 + 1  # 9007199254740993: a double reads it as ...992
DURATION = datetime.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=500_000)


@pytest.fixture
def owner():
    return UserFactory()


@pytest.fixture
def api(owner):
    return user_api(owner)


def order(owner, **values):
    return Order.objects.create(owner=owner, **{"total": Decimal("1.00"), **values})


def only(api, filter):
    response = api.query("order", {"filter": filter})
    assert response.status_code == 200, (filter, response.json())
    return response.json()["data"]


class TestReads:
    def test_a_decimal_is_a_string_with_its_decimal_places(self, owner, api):
        order(owner, total=Decimal("99"))
        order(owner, total=Decimal("0.1"))
        order(owner, total=Decimal("1234567890.12"))
        assert [r["total"] for r in rows(api.query("order"), "order")] == ["99.00", "0.10", "1234567890.12"]

    def test_integers_beyond_doubles_are_strings_smaller_ones_numbers(self, owner, api):
        order(owner, big=BIG)
        order(owner, big=-BIG)
        order(owner, big=2**53 - 1)
        order(owner, big=5)
        assert [r["big"] for r in rows(api.query("order"), "order")] == [str(BIG), str(-BIG), 2**53 - 1, 5]

    def test_a_duration_is_iso_8601(self, owner, api):
        order(owner, duration=DURATION)
        order(owner, duration=-datetime.timedelta(minutes=90))
        order(owner)
        got = [r["duration"] for r in rows(api.query("order"), "order")]
        assert got == ["P1DT02H03M04.500000S", "-P0DT01H30M00S", None]

    def test_a_uuid_is_a_string(self, owner, api):
        made = order(owner)
        assert rows(api.query("order"), "order")[0]["reference"] == str(made.reference)

    def test_the_exact_text_on_the_wire(self, owner, api):
        """What a JavaScript JSON.parse reads: no number that it would round."""
        order(owner, total=Decimal("99"), big=BIG)
        text = api.query("order", {"fields": ["total", "big"]}).content.decode()
        assert '"total":"99.00"' in text.replace(" ", "")
        assert f'"big":"{BIG}"' in text.replace(" ", "")
        assert json.loads(text, parse_float=Decimal)["included"]["order"]


class TestFilters:
    def test_decimals_filter_by_their_string_or_a_number(self, owner, api):
        cheap, dear = order(owner, total=Decimal("9.99")), order(owner, total=Decimal("99.00"))
        assert only(api, {"total": "99.00"}) == [dear.pk]
        assert only(api, {"total": "99"}) == [dear.pk]
        assert only(api, {"total": 9.99}) == [cheap.pk]
        assert only(api, {"total__gte": "10"}) == [dear.pk]
        assert only(api, {"total__in": ["9.99", "99.00"]}) == [cheap.pk, dear.pk]
        assert only(api, {"total__range": ["9.99", "10.00"]}) == [cheap.pk]

    def test_big_integers_filter_by_their_string(self, owner, api):
        big, neighbour = order(owner, big=BIG), order(owner, big=BIG - 1)
        assert only(api, {"big": str(BIG)}) == [big.pk]
        assert only(api, {"big__gt": str(BIG - 1)}) == [big.pk]
        assert only(api, {"big__in": [str(BIG - 1), 12]}) == [neighbour.pk]

    def test_durations_filter_by_iso_8601_or_djangos_form(self, owner, api):
        long, short = order(owner, duration=DURATION), order(owner, duration=datetime.timedelta(minutes=5))
        assert only(api, {"duration": "P1DT02H03M04.500000S"}) == [long.pk]
        assert only(api, {"duration__gte": "PT1H"}) == [long.pk]
        assert only(api, {"duration__gte": "1 00:00:00"}) == [long.pk]
        assert only(api, {"duration": "PT5M"}) == [short.pk]

    def test_uuids_filter_by_their_string(self, owner, api):
        made, _ = order(owner), order(owner)
        assert only(api, {"reference": str(made.reference)}) == [made.pk]
        assert only(api, {"reference": made.reference.hex}) == [made.pk]

    @pytest.mark.parametrize(
        ("filter", "field"),
        [
            ({"total": "NaN"}, "filter.total"),
            ({"total": "ten"}, "filter.total"),
            ({"big": "12.5"}, "filter.big"),
            ({"big": "1" * 21}, "filter.big"),
            ({"big": True}, "filter.big"),
            ({"duration": 60}, "filter.duration"),
            ({"duration": "an hour"}, "filter.duration"),
            ({"reference": 5}, "filter.reference"),
        ],
    )
    def test_values_that_are_none_of_those_forms_are_400s(self, api, filter, field):
        response = api.query("order", {"filter": filter})
        assert response.status_code == 400
        assert error_codes(response) == ["invalid_query"] and error_fields(response) == [field]


class TestWrites:
    def test_writes_take_the_string_forms_and_answer_with_them(self, owner, api):
        made = order(owner)
        response = api.update("order", made.pk, {"total": "19.99", "big": str(BIG), "duration": "PT1H30M"})
        assert response.status_code == 200, response.json()
        row = response.json()["included"]["order"][str(made.pk)]
        assert (row["total"], row["big"], row["duration"]) == ("19.99", str(BIG), "P0DT01H30M00S")
        made.refresh_from_db()
        assert (made.total, made.big, made.duration) == (Decimal("19.99"), BIG, datetime.timedelta(hours=1, minutes=30))

    @pytest.mark.parametrize(
        "values",
        [{"total": "12.345"}, {"total": "1e20"}, {"total": True}, {"duration": 3600}, {"duration": "soon"}],
    )
    def test_bad_values_are_400s_on_their_field(self, owner, api, values):
        made = order(owner)
        response = api.update("order", made.pk, values)
        assert response.status_code == 400, response.json()
        assert error_fields(response) == list(values)
        made.refresh_from_db()
        assert (made.total, made.duration) == (Decimal("1.00"), None)


def test_a_uuid_column_takes_only_strings_in_writes(fresh_bridge):
    """DRF's UUIDField reads the number 5 as 00000000-...-000000000005."""
    from django_ai.conversations.bridge import expose
    from django_ai.conversations.bridge.permissions import IsOwner, OnlyActions

    expose(
        Order,
        name="refs",
        permission_classes=[IsOwner(path="owner"), OnlyActions("read", "update")],
        read_fields=["id", "reference"],
        update_fields=["reference"],
    )
    owner = UserFactory()
    made = order(owner)
    api = user_api(owner)
    response = api.update("refs", made.pk, {"reference": 5})
    assert response.status_code == 400 and error_fields(response) == ["reference"]
    new = uuid.uuid4()
    assert api.update("refs", made.pk, {"reference": str(new)}).json()["included"]["refs"][str(made.pk)][
        "reference"
    ] == str(new)


@pytest.mark.usefixtures("echo_agent")
class TestTextFields:
    @pytest.mark.parametrize("value", [5, 5.5, True, {"a": 1}, ["x"]])
    def test_message_content_must_be_a_string(self, value):
        user = UserFactory()
        session = SessionFactory(user=user, agent_path="test-agent")
        response = user_api(user).create("message", {"session": str(session.pk), "content": value})
        assert response.status_code == 400, response.json()
        assert error_fields(response) == ["content"]
        assert not ConversationMessage.objects.filter(session=session).exists()

    @pytest.mark.parametrize(("field", "value"), [("title", 5), ("title", False), ("status", 1)])
    def test_session_text_fields_must_be_strings(self, field, value):
        user = UserFactory()
        session = SessionFactory(user=user, title="kept")
        response = user_api(user).update("session", session.pk, {field: value})
        assert response.status_code == 400, response.json()
        assert error_fields(response) == [field]
        session.refresh_from_db()
        assert session.title == "kept" and session.status == "active"

    def test_strings_still_work(self):
        user = UserFactory()
        session = SessionFactory(user=user, title="kept")
        response = user_api(user).update("session", session.pk, {"title": "  5  "})
        assert response.status_code == 200, response.json()
        session.refresh_from_db()
        assert session.title == "  5  "


@pytest.mark.usefixtures("echo_agent")
class TestRelationIdsAreStrings:
    @pytest.mark.parametrize("bad", [5, True, 0])
    def test_a_number_is_not_a_session_id(self, bad):
        user = UserFactory()
        SessionFactory(user=user)
        response = user_api(user).create("message", {"session": bad, "content": "hi"})
        assert response.status_code == 400
        assert error_codes(response) == ["invalid"] and error_fields(response) == ["session"]
        # Not "Invalid pk 00000000-0000-0000-0000-000000000005 - object does not exist".
        assert "0000" not in response.json()["errors"][0]["message"]
        assert ConversationMessage.objects.count() == 0

    def test_a_number_is_not_a_file_id(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        mine = FileFactory(user=user)
        response = user_api(user).create(
            "message", {"session": str(session.pk), "content": "hi", "files": [str(mine.pk), 7]}
        )
        assert response.status_code == 400 and error_codes(response) == ["invalid"]
        assert error_fields(response) == ["files"]
        assert ConversationMessage.objects.count() == 0
