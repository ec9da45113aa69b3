"""CSRF and the bridge: a query is a read, so a JSON query needs no token, even as the first
request of a page whose CSRF cookie is not set yet; writes still need it; a query that another
site's page could make a browser send (a form: urlencoded, multipart, text/plain) is still
checked, and refused before any of the bridge's code (permissions, scopes) runs.

Real parts: Django's CSRF machinery (``Client(enforce_csrf_checks=True)``), DRF's
SessionAuthentication as the demo configures it, the test project's ``shop.Order``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from django_ai.conversations.bridge import expose
from django_ai.conversations.bridge.permissions import BasePermission, IsOwner, OnlyActions
from django_ai.conversations.testing import SessionFactory, UserFactory
from tests.shop.models import Order

from .bridge_support import API, Api, ai, echo_agent, error_codes, fresh_bridge, rows, shop  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("shop")]


def signed_in(user) -> Client:
    """A browser that signed in and has not loaded any page since: no CSRF cookie."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert "csrftoken" not in client.cookies
    return client


@pytest.fixture
def owner():
    user = UserFactory()
    Order.objects.create(owner=user, total=Decimal("12.50"))
    return user


def test_the_first_request_of_a_signed_in_browser_may_be_a_query(owner):
    api = Api(signed_in(owner))
    assert [r["total"] for r in rows(api.query("order"), "order")] == ["12.50"]
    SessionFactory(user=owner, title="mine")
    assert [r["title"] for r in rows(api.query("session"), "session")] == ["mine"]


def test_a_cookie_visitor_queries_without_the_token(echo_agent):
    client = Client(enforce_csrf_checks=True)
    api = Api(client)
    started = api.post("start/", {"agent_path": "test-agent"})
    assert started.status_code == 201
    # No X-CSRFToken header: the visitor is known by the session cookie alone.
    assert [r["id"] for r in rows(api.query("session"), "session")] == [started.json()["session_id"]]


def test_writes_still_need_the_token(owner):
    client = signed_in(owner)
    api = Api(client)
    made = Order.objects.get(owner=owner)
    response = api.update("order", made.pk, {"status": "paid"})
    assert response.status_code == 403 and "CSRF" in response.json()["errors"][0]["message"]
    made.refresh_from_db()
    assert made.status == "open"


class _Recorder(BasePermission):
    """Records every request that reaches the bridge's permission checks."""

    scope_matches_object_permission = True
    seen: list[str] = []

    def has_permission(self, request, action, exposed):
        self.seen.append(action)
        return True


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"filter": {}}', "text/plain"),
        ("filter=1", "application/x-www-form-urlencoded"),
        (None, None),  # a multipart form, as the test client sends a dict
    ],
)
def test_a_query_another_site_could_send_is_still_checked(owner, body, content_type):
    """What a form on another site can submit is refused with the CSRF error before the bridge
    runs anything (no permission class is asked, so nothing it does on a read happens)."""
    expose(
        Order,
        name="recorded",
        permission_classes=[_Recorder(), IsOwner(path="owner"), OnlyActions("read")],
        read_fields=["id", "total"],
    )
    _Recorder.seen.clear()
    client = signed_in(owner)
    url = API + "models/recorded/query/"
    response = (
        client.post(url, body, content_type=content_type) if body is not None else client.post(url, {"filter": "x"})
    )
    assert response.status_code == 403
    assert error_codes(response) == ["permission_denied"] and "CSRF" in response.json()["errors"][0]["message"]
    assert _Recorder.seen == []
    # The same read as JSON is answered.
    assert [r["total"] for r in rows(Api(client).query("recorded"), "recorded")] == ["12.50"]
    assert _Recorder.seen and set(_Recorder.seen) == {"read"}


def test_a_json_content_type_with_parameters_counts_as_json(owner):
    client = signed_in(owner)
    response = client.post(API + "models/order/query/", "{}", content_type="application/json; charset=utf-8")
    assert response.status_code == 200, response.json()


def test_a_refused_forgery_costs_the_visitor_none_of_their_rate(echo_agent):
    """The CSRF check of a cookie-identified visitor runs before throttles count, as DRF's own
    check for signed-in users does: another site's page cannot use up a visitor's messages."""
    client = Client(enforce_csrf_checks=True)
    api = Api(client)
    with ai(MESSAGE_CREATE_THROTTLE_RATE="2/min"):
        session = api.post("start/", {"agent_path": "test-agent"}).json()["session_id"]
        for _ in range(3):
            forged = client.post(API + "models/message/", {"session": session, "content": "from evil.example"})
            assert forged.status_code == 403 and "CSRF" in forged.json()["errors"][0]["message"]
        token = client.cookies["csrftoken"].value
        sent = api.create("message", {"session": session, "content": "mine"}, HTTP_X_CSRFTOKEN=token)
        assert sent.status_code == 201, sent.json()
