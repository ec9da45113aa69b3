"""What every error answer looks like (the envelope of api/errors.py, from each kind of error) and how
request bodies are read: JSON only, UTF-8, values no database can store refused as parse errors,
nesting bounded before parsing, the body-size limit, the anonymous id header checked.

Real parts: the app's views (or a view built on BaseAPIView), the test client, the database.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from django.test import Client
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from django_ai.conversations.api.views import BaseAPIView
from django_ai.conversations.bridge import base as documented_base
from django_ai.conversations.exceptions import ContextValidationError, SessionNotActive, TurnInProgress
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.owners import new_anonymous_id, valid_anonymous_id
from django_ai.conversations.testing.factories import SessionFactory, UserFactory

from .bridge_support import (  # noqa: F401
    API,
    Api,
    ai,
    echo_agent,
    error_codes,
    error_fields,
    fresh_bridge,
    owner,
    rows,
    send_raw,
    user_api,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]


class _Raises(BaseAPIView):
    exc: BaseException

    def post(self, request):
        raise self.exc


class _Serializer(serializers.Serializer):
    title = serializers.CharField(max_length=3)
    tags = serializers.ListField(child=serializers.IntegerField())
    nested = serializers.DictField(child=serializers.IntegerField())


class _Validates(BaseAPIView):
    def post(self, request):
        s = _Serializer(data=request.data)
        s.is_valid(raise_exception=True)
        return None


def _answer(exc):
    view = type("V", (_Raises,), {"exc": exc}).as_view()
    response = view(APIRequestFactory().post("/x/", {}, format="json"))
    response.render()
    return response


def test_the_documented_base_view_is_the_http_layers():
    """docs/bridge.md first named ``bridge.base.BridgeAPIView``: views subclassing it keep working."""
    assert documented_base.BridgeAPIView is BaseAPIView


@pytest.mark.parametrize(
    ("exc", "status", "code", "field"),
    [
        (SessionNotActive("Closed.", field="session"), 409, "session_not_active", "session"),
        (TurnInProgress(), 409, "turn_in_progress", None),
        (Http404("secret path /etc/x"), 404, "not_found", None),
        (PermissionDenied(), 403, "permission_denied", None),
        (RequestDataTooBig(), 413, "request_too_large", None),
        (drf_exceptions.Throttled(wait=12), 429, "throttled", None),
        (drf_exceptions.ParseError(), 400, "parse_error", None),
        (drf_exceptions.MethodNotAllowed("PUT"), 405, "method_not_allowed", None),
        (drf_exceptions.NotAuthenticated(), 403, "not_authenticated", None),
        (drf_exceptions.AuthenticationFailed("bad token"), 403, "authentication_failed", None),
    ],
)
def test_known_errors_become_the_envelope(exc, status, code, field):
    response = _answer(exc)
    assert response.status_code == status
    error = response.data["errors"][0]
    assert error["code"] == code and error.get("field") == field and error["message"]
    assert "secret path" not in error["message"]
    if status == 429:
        assert response["Retry-After"] == "12"


def test_validation_errors_one_entry_per_field():
    view = _Validates.as_view()
    response = view(
        APIRequestFactory().post("/x/", {"title": "long", "tags": ["a", 2], "nested": {"k": "v"}}, format="json")
    )
    response.render()
    assert response.status_code == 400
    fields = sorted((e["field"], e["code"]) for e in response.data["errors"])
    assert fields == [("nested.k", "invalid"), ("tags.0", "invalid"), ("title", "max_length")]


def test_context_errors_keep_their_fields():
    exc = ContextValidationError("bad", errors=[{"field": "tier", "message": "not allowed"}, {"message": "general"}])
    errors = _answer(exc).data["errors"]
    assert errors == [
        {"code": "invalid_context", "message": "not allowed", "field": "tier"},
        {"code": "invalid_context", "message": "general"},
    ]


def test_unknown_errors_stay_real_500s(caplog):
    with pytest.raises(ZeroDivisionError):
        _answer(ZeroDivisionError("boom"))


def test_server_side_conversation_errors_are_logged(caplog):
    from django_ai.conversations.exceptions import NoActiveConversation

    with caplog.at_level(logging.ERROR, logger="django_ai.conversations.bridge"):
        response = _answer(NoActiveConversation("outside a turn"))
    assert response.status_code == 500 and response.data["errors"][0]["code"] == "no_active_conversation"
    assert "outside a turn" in caplog.text


def test_unmatched_methods_and_media_types():
    response = type("V", (_Raises,), {"exc": ValueError()}).as_view()(APIRequestFactory().get("/x/"))
    response.render()
    assert response.status_code == 405 and response.data["errors"][0]["code"] == "method_not_allowed"


class TestMalformedBodiesKeepTheEnvelope:
    def test_a_form_in_another_charset_from_a_cookie_visitor(self):
        client = Client(enforce_csrf_checks=True)
        started = client.post(API + "start/", json.dumps({"agent_path": "test-agent"}), content_type="application/json")
        assert started.status_code == 201
        # The CSRF check reads the form, which Django refuses in any charset but UTF-8 (BadRequest).
        response = client.post(
            API + "cancel/", "session_id=x", content_type="application/x-www-form-urlencoded; charset=latin-1"
        )
        assert response.status_code == 400 and response["Content-Type"] == "application/json"
        assert error_codes(response) == ["bad_request"]


def _surrogate_bodies(owner):
    """(method, path, raw JSON) with a lone UTF-16 surrogate escape in some string."""
    s, w = owner["session"].pk, owner["widget"].pk
    return [
        ("post", "models/session/query/", '{"filter": {"title__icontains": "\\ud800"}}'),
        ("post", "models/session/query/", '{"filter": {"agent_path__in": ["x\\udfff"]}}'),
        ("post", "start/", '{"agent_path": "test-agent", "title": "hi \\ud800"}'),
        ("post", "start/", '{"agent_path": "test-agent", "context": {"\\ud800": 1}}'),
        ("post", "start/", '{"agent_path": "\\ud800"}'),
        ("post", "models/message/", '{"session": "%s", "content": "hello \\udc00"}' % s),
        ("patch", f"models/widget/{w}/", '{"display_data": {"\\ud800": true}}'),
        ("patch", f"models/widget/{w}/", '{"display_data": {"k": ["\\ud800"]}}'),
        ("post", "cancel/", '{"session_id": "\\ud800"}'),
    ]


def assert_parse_errors_change_nothing(owner, bodies):
    """Each ``(method, path, raw)`` is a 400 ``parse_error``; no conversation, message or widget
    changed."""
    before = (ConversationSession.objects.count(), ConversationMessage.objects.count())
    for method, path, raw in bodies:
        response = send_raw(owner["client"], method, path, raw)
        assert response.status_code == 400, (path, raw, response.content)
        assert error_codes(response) == ["parse_error"], (path, raw)
    assert (ConversationSession.objects.count(), ConversationMessage.objects.count()) == before
    owner["widget"].refresh_from_db()
    assert owner["widget"].display_data == {"open": True}


def test_lone_surrogate_escapes_are_a_parse_error_not_a_500(owner):
    """JSON allows ``"\\ud800"``; no database can store or compare it (UnicodeEncodeError)."""
    assert_parse_errors_change_nothing(owner, _surrogate_bodies(owner))


def test_numbers_out_of_the_double_range_are_a_parse_error_not_infinity(owner):
    """``1e400`` parses as ``float("inf")``, which no JSON column stores (PostgreSQL refuses
    ``Infinity``; SQLite would keep text that is not JSON)."""
    s, w = owner["session"].pk, owner["widget"].pk
    bodies = [
        ("post", "start/", '{"agent_path": "test-agent", "context": {"x": 1e400}}'),
        ("post", "start/", '{"agent_path": "test-agent", "context": {"x": [-1e400]}}'),
        ("patch", f"models/widget/{w}/", '{"display_data": {"n": 1e999}}'),
        ("post", "models/message/query/", '{"filter": {"session": "%s"}, "limit": 1e400}' % s),
    ]
    assert_parse_errors_change_nothing(owner, bodies)
    # Large but finite numbers are fine.
    response = send_raw(owner["client"], "patch", f"models/widget/{w}/", '{"display_data": {"n": 1e300}}')
    assert response.status_code == 200, response.content


def test_valid_astral_characters_still_work(owner):
    """A proper surrogate *pair* is one real character (an emoji): still accepted."""
    response = send_raw(
        owner["client"], "patch", f"models/session/{owner['session'].pk}/", '{"title": "\\ud83d\\ude00"}'
    )
    assert response.status_code == 200, response.content
    owner["session"].refresh_from_db()
    assert owner["session"].title == "\U0001f600"


@pytest.mark.parametrize("depth", [5000, 200_000])
def test_deeply_nested_json_is_a_parse_error_not_a_500(owner, depth):
    """Nesting deep enough to exhaust the JSON parser's recursion limit (RecursionError, which
    DRF's parser does not turn into a ParseError) fits easily in the 1 MB body limit."""
    nested = "[" * depth + "]" * depth
    for method, path, raw in [
        ("post", "models/message/query/", '{"filter": {"id__in": %s}}' % nested),
        ("patch", f"models/widget/{owner['widget'].pk}/", '{"display_data": {"a": %s}}' % nested),
        ("post", "start/", '{"agent_path": "test-agent", "context": {"x": %s}}' % nested),
    ]:
        response = send_raw(owner["client"], method, path, raw)
        assert response.status_code in (400, 413), (path, response.content[:200])
        if response.status_code == 400:
            assert error_codes(response) == ["parse_error"]
    owner["widget"].refresh_from_db()
    assert owner["widget"].display_data == {"open": True}


def test_ordinary_nesting_is_accepted(owner):
    nested = {"a": [{"b": [[1, 2], {"c": "d"}]}]}
    response = send_raw(
        owner["client"], "patch", f"models/widget/{owner['widget'].pk}/", json.dumps({"display_data": nested})
    )
    assert response.status_code == 200, response.content
    owner["widget"].refresh_from_db()
    assert owner["widget"].display_data == nested


def test_nesting_is_refused_from_a_fixed_depth_before_parsing(owner):
    """Depth is checked before the parser runs: on some Python versions a deeply nested body
    overflows the C stack (a crash) instead of raising RecursionError."""
    from django_ai.conversations.api.parsing import MAX_JSON_DEPTH

    def send(levels: int):
        value = "[" * levels + "]" * levels
        return send_raw(
            owner["client"], "patch", f"models/widget/{owner['widget'].pk}/", '{"display_data": {"a": %s}}' % value
        )

    inside = send(MAX_JSON_DEPTH - 2)  # plus the two objects around it
    assert inside.status_code == 200, inside.content
    too_deep = send(MAX_JSON_DEPTH)
    assert too_deep.status_code == 400 and error_codes(too_deep) == ["parse_error"]
    assert b"nested more than" in too_deep.content
    # Brackets inside strings are text, not nesting.
    text = send_raw(
        owner["client"], "patch", f"models/widget/{owner['widget'].pk}/", json.dumps({"display_data": {"a": "[" * 500}})
    )
    assert text.status_code == 200, text.content


class TestBodySize:
    """Bodies over ``BRIDGE_MAX_BODY_SIZE`` (test_bridge_body_limits.py: under ASGI servers)."""

    def test_request_size_limit_is_413(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        with ai(BRIDGE_MAX_BODY_SIZE=1000):
            response = user_api(user).create("message", {"session": str(session.pk), "content": "x" * 2000})
        assert response.status_code == 413 and error_codes(response) == ["request_too_large"]
        assert not ConversationMessage.objects.exists()


HEADER = "X-Conversation-Anonymous-Id"


class TestAnonymousIdHeader:
    @pytest.mark.parametrize(
        "value",
        [
            "anon_" + "a" * 200,  # too long
            "anon_short",  # too short
            "x" * 48,  # not this app's format
            "anon_" + "é" * 40,  # letters, but not ASCII
            "anon_" + "a" * 30 + " " + "b" * 10,
        ],
    )
    def test_a_malformed_id_is_a_400_not_a_new_visitor(self, value):
        api = Api(anonymous_id=value)
        started = api.post("start/", {"agent_path": "test-agent"})
        assert started.status_code == 400, started.json()
        assert error_codes(started) == ["invalid_anonymous_id"] and error_fields(started) == [HEADER]
        assert ConversationSession.objects.count() == 0
        listed = api.query("session")
        assert listed.status_code == 400 and error_codes(listed) == ["invalid_anonymous_id"]

    def test_non_ascii_letters_are_not_the_issued_format(self):
        assert not valid_anonymous_id("anon_" + "é" * 40)
        assert not valid_anonymous_id("anon_" + "٣" * 40)  # Arabic-Indic digits are isalnum() too
        assert valid_anonymous_id(new_anonymous_id())

    def test_a_valid_id_still_works_and_signed_in_users_are_not_bothered(self):
        visitor = Api(anonymous_id=new_anonymous_id())
        started = visitor.post("start/", {"agent_path": "test-agent"})
        assert started.status_code == 201, started.json()
        assert [r["id"] for r in rows(visitor.query("session"), "session")] == [started.json()["session_id"]]
        # The header is not what identifies a signed-in user: a stale value there is ignored.
        user = UserFactory()
        signed_in = user_api(user)
        signed_in.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"] = "garbage"
        assert signed_in.query("session").status_code == 200

    def test_a_cookie_visitor_is_known_by_the_session_not_the_header(self):
        client = Client()
        started = client.post(API + "start/", json.dumps({"agent_path": "test-agent"}), content_type="application/json")
        assert started.status_code == 201
        listed = client.post(
            API + "models/session/query/",
            "{}",
            content_type="application/json",
            HTTP_X_CONVERSATION_ANONYMOUS_ID="garbage",
        )
        assert [r["id"] for r in rows(listed, "session")] == [started.json()["session_id"]]
