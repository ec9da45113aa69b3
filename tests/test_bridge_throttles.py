"""Throttles: message creation and conversations started have rates of their own, per user, per
anonymous visitor and per client address (all anonymous writes of one address together), and which
client address the per-address throttles count.

DRF's own ``get_ident`` believes ``X-Forwarded-For`` when ``NUM_PROXIES`` is unset; a client that
sends a made-up header with every request would then escape every per-address limit. The app's
throttles count ``REMOTE_ADDR`` unless ``REST_FRAMEWORK['NUM_PROXIES']`` says proxies sit in front.
Real parts: the demo project's URLs, the database and the default cache through Django's test client.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from rest_framework.throttling import SimpleRateThrottle

from django_ai.conversations.api import throttling as throttles
from django_ai.conversations.bridge import expose
from django_ai.conversations.bridge.permissions import IsOwner
from django_ai.conversations.models import ConversationMessage, ConversationSession, File
from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.testing import SessionFactory, UserFactory, wait_for_turns
from tests.shop.exposed import ExposedOrder
from tests.shop.models import Order

from .bridge_support import API, ai, echo_agent, error_codes, fresh_bridge, shop, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("echo_agent")]

START = json.dumps({"agent_path": "test-agent"})
HEADER = "HTTP_X_CONVERSATION_ANONYMOUS_ID"


def start(**meta: str) -> int:
    """A start/ from a new anonymous visitor (a fresh id header, no cookie)."""
    response = Client().post(
        API + "start/",
        START,
        content_type="application/json",
        HTTP_X_CONVERSATION_ANONYMOUS_ID=new_anonymous_id(),
        **meta,
    )
    if response.status_code == 429:
        assert error_codes(response) == ["throttled"]
    return response.status_code


@pytest.fixture
def three_per_address(settings):
    settings.DJANGO_AI = {
        **settings.DJANGO_AI,
        "SESSION_START_THROTTLE_RATE": "100/min",
        "UPLOAD_THROTTLE_RATE": "100/min",
        "ANONYMOUS_ADDRESS_THROTTLE_RATE": "3/min",
    }


def test_a_made_up_forwarded_for_header_does_not_escape_the_per_address_limit(three_per_address):
    answers = [start(HTTP_X_FORWARDED_FOR=f"203.0.113.{n}") for n in range(6)]
    assert answers == [201, 201, 201, 429, 429, 429]
    assert ConversationSession.objects.count() == 3


def test_uploads_count_the_socket_address_too(three_per_address, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    answers = []
    for n in range(4):
        body = {"file": SimpleUploadedFile("notes.txt", b"some notes", content_type="text/plain")}
        response = Client().post(
            API + "files/",
            body,
            HTTP_X_CONVERSATION_ANONYMOUS_ID=new_anonymous_id(),
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        )
        answers.append(response.status_code)
    wait_for_turns(30)
    assert answers == [201, 201, 201, 429]
    assert File.objects.count() == 3


def test_behind_proxies_the_address_the_outermost_trusted_proxy_saw_is_counted(three_per_address, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    # One proxy appends the address it saw: whatever the client put before it is ignored.
    same_client = [start(HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 192.0.2.7") for n in range(4)]
    assert same_client == [201, 201, 201, 429]
    # Another client behind the same proxy (same REMOTE_ADDR) has a count of its own.
    assert start(HTTP_X_FORWARDED_FOR="10.9.9.1, 192.0.2.8") == 201


def test_with_no_proxy_the_header_is_ignored_and_the_socket_address_counts(three_per_address, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}
    assert [start(HTTP_X_FORWARDED_FOR=f"192.0.2.{n}") for n in range(4)] == [201, 201, 201, 429]
    # Without the header the same socket address is already at its limit.
    assert start() == 429


def test_client_address_follows_num_proxies(settings):
    request = type(
        "R", (), {"META": {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.1.1.1, 2.2.2.2, 3.3.3.3"}}
    )()
    assert throttles.client_address(request) == "10.0.0.1"
    for proxies, expected in [(0, "10.0.0.1"), (1, "3.3.3.3"), (2, "2.2.2.2"), (3, "1.1.1.1"), (9, "1.1.1.1")]:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": proxies}
        assert throttles.client_address(request) == expected, proxies


def test_an_ignored_header_is_logged_once(caplog, monkeypatch):
    monkeypatch.setattr(throttles, "_warned_forwarded_for", False)
    request = type("R", (), {"META": {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "1.1.1.1"}})()
    with caplog.at_level(logging.WARNING, logger=throttles.logger.name):
        throttles.client_address(request)
        throttles.client_address(request)
    warnings = [r for r in caplog.records if "NUM_PROXIES" in r.getMessage()]
    assert len(warnings) == 1


def _check_ids() -> list[str]:
    from django.core import checks

    return [m.id for m in checks.run_checks(tags=["django_ai"])]


def test_system_check_warns_when_project_throttles_trust_the_header(settings):
    assert "django_ai.W050" not in _check_ids()  # the demo's settings: no DRF default throttles
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle"],
        "DEFAULT_THROTTLE_RATES": {"anon": "10/min"},
    }
    assert "django_ai.W050" in _check_ids()
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}
    assert "django_ai.W050" not in _check_ids()


def test_system_check_accepts_throttles_built_on_the_apps_address(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["django_ai.conversations.bridge.throttles.AnonymousAddressThrottle"],
    }
    assert "django_ai.W050" not in _check_ids()
    call_command("check")  # and the project's own check command runs with it


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_bridge", "echo_agent")
class TestMessageCreation:
    """Message creation has rates of its own (the built-in message model's throttles)."""

    def test_message_creation_is_throttled(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        api = user_api(user)
        with ai(MESSAGE_CREATE_THROTTLE_RATE="2/min"):
            codes = [
                api.create("message", {"session": str(session.pk), "content": f"m{i}"}).status_code for i in range(2)
            ]
            response = api.create("message", {"session": str(session.pk), "content": "m3"})
            other = user_api(UserFactory())  # another user has their own budget
            assert other.query("message").status_code == 200
        assert codes == [201, 201]
        assert response.status_code == 429 and error_codes(response) == ["throttled"]
        assert int(response["Retry-After"]) > 0
        assert ConversationMessage.objects.filter(session=session).count() == 2


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_bridge", "echo_agent")
def test_starting_conversations_is_throttled_per_visitor(settings):
    from django.core.cache import cache

    cache.clear()
    settings.DJANGO_AI = {**settings.DJANGO_AI, "SESSION_START_THROTTLE_RATE": "2/min"}
    client = Client()
    body = json.dumps({"agent_path": "test-agent"})
    # The first start gives the visitor its id (that request is counted under its address); from
    # then on the visitor's own count applies.
    answers = [client.post(API + "start/", body, content_type="application/json").status_code for _ in range(4)]
    assert answers == [201, 201, 201, 429]
    assert ConversationSession.objects.count() == 3
    # Another visitor has a count of its own.
    assert Client().post(API + "start/", body, content_type="application/json").status_code == 201
    cache.clear()


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_bridge", "echo_agent")
def test_fresh_anonymous_ids_do_not_escape_the_per_address_limit(settings):
    """The header id is the client's to choose: one machine presenting a new id with every
    request is still bounded by ANONYMOUS_ADDRESS_THROTTLE_RATE."""
    from django.core.cache import cache

    from django_ai.conversations.owners import new_anonymous_id

    cache.clear()
    settings.DJANGO_AI = {
        **settings.DJANGO_AI,
        "SESSION_START_THROTTLE_RATE": "100/min",
        "ANONYMOUS_ADDRESS_THROTTLE_RATE": "3/min",
    }
    body = json.dumps({"agent_path": "test-agent"})
    answers = []
    for _ in range(4):
        response = Client().post(API + "start/", body, content_type="application/json", **{HEADER: new_anonymous_id()})
        answers.append(response.status_code)
    assert answers == [201, 201, 201, 429]
    assert ConversationSession.objects.count() == 3
    # Signed-in users are counted per user, not per address.
    user_client = Client()
    user_client.force_login(UserFactory())
    assert user_client.post(API + "start/", body, content_type="application/json").status_code == 201
    cache.clear()


class _TwoPerMinute(SimpleRateThrottle):
    scope = "test_order_updates"

    def get_rate(self):
        return "2/min"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


@pytest.mark.django_db
@pytest.mark.usefixtures("shop")
def test_an_exposed_model_throttles_the_actions_it_names():
    """``throttle_classes`` per action: the model's own throttles replace DRF's defaults for
    requests performing that action, and only those."""
    from django.core.cache import cache

    cache.clear()
    expose(
        Order,
        exposed_class=ExposedOrder,
        permission_classes=[IsOwner(path="owner")],
        read_fields=["id", "status"],
        create_fields=["total"],
        update_fields=["status"],
        throttle_classes={"update": [_TwoPerMinute]},
    )
    api = user_api(UserFactory())
    created = [api.create("order", {"total": "1.00"}) for _ in range(3)]
    assert [r.status_code for r in created] == [201, 201, 201], "creates are not throttled"
    pk = created[0].json()["data"]
    answers = [api.update("order", pk, {"status": "paid"}) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert error_codes(answers[-1]) == ["throttled"] and answers[-1]["Retry-After"]
    cache.clear()
