"""Review of the bridge's HTTP surface: malformed input gets a clear error in the envelope, never a
silent change of identity, a misleading message or Django's HTML page."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from django_ai.conversations.bridge import expose
from django_ai.conversations.bridge.permissions import AllowAny, BasePermission
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.owners import new_anonymous_id, valid_anonymous_id
from django_ai.conversations.testing.factories import FileFactory, MessageFactory, SessionFactory, UserFactory

from .bridge_support import API, Api, echo_agent, error_codes, error_fields, fresh_bridge, rows, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]

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
            API + "models/session/query/", "{}", content_type="application/json", HTTP_X_CONVERSATION_ANONYMOUS_ID="garbage"
        )
        assert [r["id"] for r in rows(listed, "session")] == [started.json()["session_id"]]


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
        response = user_api(user).create("message", {"session": str(session.pk), "content": "hi", "files": [str(mine.pk), 7]})
        assert response.status_code == 400 and error_codes(response) == ["invalid"]
        assert error_fields(response) == ["files"]
        assert ConversationMessage.objects.count() == 0


class Refusing(BasePermission):
    """Reads go through the per-row object check (no declaration): hides names starting 'hidden'."""

    def has_object_permission(self, request, action, obj, exposed):
        return not obj.name.startswith("hidden")


class TestHasMoreWithLimitZero:
    def test_limit_zero_says_whether_rows_follow(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        for _ in range(3):
            MessageFactory(session=session)
        api = user_api(user)
        meta = lambda body: api.query("message", body).json()["meta"]  # noqa: E731
        assert meta({"limit": 0})["has_more"] is True
        assert meta({"limit": 0, "offset": 2})["has_more"] is True
        assert meta({"limit": 0, "offset": 3})["has_more"] is False
        assert meta({"limit": 0, "count": True}) == {"limit": 0, "offset": 0, "has_more": True, "count": 3}
        # Same answers as a page of one row says about what follows it.
        assert meta({"limit": 1, "offset": 2})["has_more"] is False
        assert meta({"limit": 1, "offset": 1})["has_more"] is True

    def test_the_scoped_and_the_checked_path_agree(self):
        expose(Group, name="fast", permission_classes=[AllowAny], read_fields=["name"], orderings=["name"], default_ordering=["name"])
        expose(Group, name="checked", permission_classes=[Refusing], read_fields=["name"], orderings=["name"], default_ordering=["name"])
        for name in ("alpha", "beta"):
            Group.objects.create(name=name)
        api = Api(anonymous_id=new_anonymous_id())
        for body in ({"limit": 0}, {"limit": 0, "offset": 1}, {"limit": 0, "offset": 2}):
            fast, checked = (api.query(n, body).json()["meta"]["has_more"] for n in ("fast", "checked"))
            assert fast == checked == (body["offset"] < 2 if "offset" in body else True), body


class TestMalformedBodiesKeepTheEnvelope:
    def test_a_form_in_another_charset_from_a_cookie_visitor(self):
        client = Client(enforce_csrf_checks=True)
        started = client.post(API + "start/", json.dumps({"agent_path": "test-agent"}), content_type="application/json")
        assert started.status_code == 201
        # The CSRF check reads the form, which Django refuses in any charset but UTF-8 (BadRequest).
        response = client.post(API + "cancel/", "session_id=x", content_type="application/x-www-form-urlencoded; charset=latin-1")
        assert response.status_code == 400 and response["Content-Type"] == "application/json"
        assert error_codes(response) == ["bad_request"]
