"""The attacker's suite: everything a hostile client tries against the bridge, and what it gets.

Every test sets up a victim's data, attacks it from another identity, and checks both the answer
(status + error envelope, or rows that leave the victim's data out) and that nothing changed.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from django_ai.conversations.constants import MessageType, ProcessingStatus, SessionStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession, ConversationWidget, File
from django_ai.conversations.owners import new_anonymous_id, valid_anonymous_id
from django_ai.conversations.testing.factories import (
    FileFactory,
    MessageFactory,
    SessionFactory,
    UserFactory,
    WidgetFactory,
)

from .bridge_support import API, Api, ai, echo_agent, error_codes, error_fields, fresh_bridge, rows, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]


@pytest.fixture
def victim():
    user = UserFactory(username="victim")
    session = SessionFactory(user=user, title="secret plans", context={"api_key": "sk-victim"})
    message = MessageFactory(session=session, content="my secret")
    file = FileFactory(user=user, session=session, text="secret document")
    widget = WidgetFactory(session=session, data={"card": "secret"})
    return {"user": user, "session": session, "message": message, "file": file, "widget": widget}


@pytest.fixture
def attacker():
    return user_api(UserFactory(username="attacker"))


def _nothing_leaked(response, victim):
    text = response.content.decode()
    for secret in ("my secret", "secret plans", "sk-victim", "secret document", str(victim["session"].pk)):
        assert secret not in text, (secret, text)


class TestOtherOwnersRows:
    def test_by_id_in_a_filter(self, victim, attacker):
        for name, key in (("session", "session"), ("message", "message"), ("file", "file"), ("widget", "widget")):
            response = attacker.query(name, {"filter": {"id": str(victim[key].pk)}})
            assert rows(response, name) == []
            assert victim[key].pk and str(victim[key].pk) not in response.content.decode()

    def test_by_foreign_key_filter(self, victim, attacker):
        for name in ("message", "widget", "file"):
            response = attacker.query(name, {"filter": {"session": str(victim["session"].pk)}})
            assert rows(response, name) == []

    def test_by_id_in_the_url(self, victim, attacker):
        for response in (
            attacker.update("session", victim["session"].pk, {"title": "pwned"}),
            attacker.update("widget", victim["widget"].pk, {"display_data": {"x": 1}}),
            attacker.delete("file", victim["file"].pk),
            attacker.post("cancel/", {"session_id": str(victim["session"].pk)}),
        ):
            # 404, exactly as for an id that does not exist: ids are not confirmed.
            assert response.status_code == 404, response.json()
            assert error_codes(response) == ["not_found"]
        victim["session"].refresh_from_db()
        victim["widget"].refresh_from_db()
        assert victim["session"].title == "secret plans" and victim["widget"].display_data == {}
        assert File.objects.filter(pk=victim["file"].pk).exists()

    def test_writing_into_their_conversation(self, victim, attacker):
        response = attacker.create("message", {"session": str(victim["session"].pk), "content": "injected"})
        assert response.status_code == 400 and error_fields(response) == ["session"]
        assert not ConversationMessage.objects.filter(content="injected").exists()

    def test_attaching_their_file(self, victim, attacker):
        mine = SessionFactory(user=attacker.user)
        response = attacker.create(
            "message", {"session": str(mine.pk), "content": "x", "files": [str(victim["file"].pk)]}
        )
        assert response.status_code == 400 and error_fields(response) == ["files"]
        assert not ConversationMessage.objects.filter(session=mine).exists()
        victim["file"].refresh_from_db()
        assert victim["file"].session_id == victim["session"].pk

    def test_include_leaves_out_rows_of_others(self, victim):
        # A reply_to pointing into another owner's conversation (only the server could do this)
        # still never brings that row along.
        user = UserFactory()
        session = SessionFactory(user=user)
        MessageFactory(session=session, reply_to=victim["message"])
        mine = MessageFactory(session=session)
        mine.files.set([victim["file"]])
        response = user_api(user).query("message", {"include": ["reply_to", "files"]})
        assert response.status_code == 200
        body = response.json()
        assert str(victim["message"].pk) not in body["included"].get("message", {})
        assert body["included"].get("file", {}) == {}
        assert all(r["files"] == [] for r in body["included"]["message"].values())
        assert "my secret" not in response.content.decode()


class TestPaths:
    @pytest.mark.parametrize(
        "key",
        [
            "session__user__password",
            "session__user__password__startswith",
            "session__user",
            "session__user__username",
            "session__user__is_superuser",
            "session__anonymous_id",
            "session__anonymous_id__startswith",
            "session__context__api_key",
            "session__context",
            "metadata",
            "cancel_requested_at__isnull",
            "files__extracted_text__icontains",
            "content__regex",
            "content",
            "timestamp__year",
            "pk__gte",  # pk and pk__in are every model's; other lookups on it are not
            "pk__isnull",
            "session__messages__content",
            "id__in__exact",
            "__class__",
            "",
        ],
    )
    def test_undeclared_filter_paths(self, victim, attacker, key):
        for part in ("filter", "exclude"):
            response = attacker.query("message", {part: {key: "a"}})
            assert response.status_code == 400, (key, response.json())
            assert error_codes(response) == ["unknown_filter"]
            assert error_fields(response) == [f"{part}.{key}"]

    def test_password_hash_never_reachable(self, victim):
        # The victim themselves cannot reach their own hash through the bridge either.
        api = user_api(victim["user"])
        for body in (
            {"filter": {"session__user__password__startswith": "pbkdf2"}},
            {"order_by": ["session__user__password"]},
            {"fields": ["session__user__password"]},
            {"include": ["session__user"]},
        ):
            response = api.query("message", body)
            assert response.status_code == 400, body
            assert victim["user"].password not in response.content.decode()
            assert victim["user"].password.split("$")[-1] not in response.content.decode()
        response = api.query("session", {"fields": ["user"]})
        assert response.status_code == 400

    @pytest.mark.parametrize(
        "order",
        [
            "anonymous_id",
            "-anonymous_id",
            "context",
            "user",
            "user__password",
            "metadata",
            "?",
            "pk__foo",
            "turn_token",
            "-",
            "id",
            5,
        ],
    )
    def test_ordering_on_hidden_fields(self, victim, attacker, order):
        response = attacker.query("session", {"order_by": [order]})
        assert response.status_code == 400 and error_fields(response)[0] == "order_by"

    @pytest.mark.parametrize(
        "field", ["anonymous_id", "context", "user", "metadata", "turn_token", "active_turn", "__dict__"]
    )
    def test_hidden_fields_cannot_be_asked_for(self, victim, field):
        response = user_api(victim["user"]).query("session", {"fields": ["title", field]})
        assert response.status_code == 400 and error_fields(response) == ["fields"]

    def test_rows_never_carry_hidden_fields_or_str(self, victim):
        body = user_api(victim["user"]).query("session").json()
        row = body["included"]["session"][str(victim["session"].pk)]
        assert "context" not in row and "anonymous_id" not in row and "user" not in row
        assert str(victim["session"]) not in json.dumps({k: v for k, v in row.items() if k != "title"})

    def test_include_undeclared_relation(self, victim):
        api = user_api(victim["user"])
        for name, rel in (("session", "user"), ("message", "session__user"), ("file", "user"), ("message", "widget")):
            response = api.query(name, {"include": [rel]})
            assert response.status_code == 400 and error_fields(response) == ["include"]


class TestMassAssignment:
    @pytest.mark.parametrize(
        "extra",
        [
            {"id": "00000000-0000-0000-0000-000000000001"},
            {"message_type": "agent"},
            {"message_type": "system"},
            {"processing_status": "completed"},
            {"timestamp": "2000-01-01T00:00:00Z"},
            {"updated_at": "2000-01-01T00:00:00Z"},
            {"reply_to": None},
            {"component_type": "payment_form"},
            {"component_data": {"amount": 1}},
            {"metrics": {}},
            {"metadata": {"admin": True}},
            {"stream_sequence": 99},
            {"session__user": 1},
            {"attempts": 0},
        ],
    )
    def test_message_fields_a_user_may_not_set(self, victim, extra):
        api = user_api(victim["user"])
        body = {"session": str(victim["session"].pk), "content": "hi", **extra}
        response = api.create("message", body)
        assert response.status_code == 400, response.json()
        assert error_codes(response) == ["field_not_allowed"] and error_fields(response) == list(extra)
        assert ConversationMessage.objects.filter(session=victim["session"]).count() == 2  # the victim's + the widget's

    @pytest.mark.parametrize(
        "change",
        [
            {"id": "00000000-0000-0000-0000-000000000001"},
            {"user": 1},
            {"anonymous_id": "anon_x"},
            {"context": {"api_key": "mine"}},
            {"metadata": {"a": 1}},
            {"agent_path": "other"},
            {"created_at": "2000-01-01T00:00:00Z"},
            {"updated_at": "2000-01-01T00:00:00Z"},
            {"active_turn": None},
            {"turn_token": ""},
            {"status": "completed"},
            {"status": "deleted"},
            {"status": "bogus"},
        ],
    )
    def test_session_fields_an_owner_may_not_set(self, victim, change):
        session = victim["session"]
        if change.get("status") == "deleted":  # archived -> deleted is refused too (delete is DELETE)
            ConversationSession.objects.filter(pk=session.pk).update(status=SessionStatus.ARCHIVED)
        before = ConversationSession.objects.filter(pk=session.pk).values().get()
        response = user_api(victim["user"]).update("session", session.pk, {"title": "new", **change})
        assert response.status_code == 400, response.json()
        assert error_fields(response) == [next(iter(change))]
        assert ConversationSession.objects.filter(pk=session.pk).values().get() == before

    def test_type_and_status_forced_even_for_staff_superusers(self, victim):
        admin = UserFactory(is_staff=True, is_superuser=True)
        session = SessionFactory(user=admin)
        response = user_api(admin).create("message", {"session": str(session.pk), "content": "hi"})
        assert response.status_code == 201
        message = ConversationMessage.objects.get(pk=response.json()["data"])
        assert message.message_type == MessageType.USER and message.processing_status == ProcessingStatus.PENDING


class TestBulkTricks:
    @pytest.mark.parametrize(
        "body",
        [
            [{"session": "x", "content": "a"}, {"session": "y", "content": "b"}],
            "content",
            42,
            None,
            True,
        ],
    )
    def test_non_object_bodies_on_writes(self, victim, body):
        api = user_api(victim["user"])
        for response in (
            api.create("message", body) if body is not None else api.create("message", None, raw="null"),
            api.update("session", victim["session"].pk, body)
            if body is not None
            else api.update("session", victim["session"].pk, None, raw="null"),
        ):
            assert response.status_code == 400, response.content
            assert error_codes(response) == ["invalid_body"]

    @pytest.mark.parametrize("body", [[], [{"filter": {}}], "select * from auth_user", 1, True])
    def test_non_object_query_bodies(self, victim, body):
        response = user_api(victim["user"]).query("message", body)
        assert response.status_code == 400 and error_codes(response) == ["invalid_body"]

    def test_huge_in_lists_and_too_many_conditions(self, victim):
        api = user_api(victim["user"])
        response = api.query("message", {"filter": {"id__in": [str(victim["message"].pk)] * 201}})
        assert response.status_code == 400 and error_fields(response) == ["filter.id__in"]
        response = api.query("message", {"filter": {f"id{'__exact' * i}": "x" for i in range(60)}})
        assert response.status_code == 400

    def test_too_many_files_in_one_message(self, victim):
        api = user_api(victim["user"])
        response = api.create(
            "message", {"session": str(victim["session"].pk), "content": "x", "files": [str(victim["file"].pk)] * 21}
        )
        assert response.status_code == 400 and error_fields(response) == ["files"]

    def test_wildcard_like_pks_do_not_match_rows(self, victim, attacker):
        for pk in ("*", "%", "..", "1 OR 1=1", "' OR ''='", "00000000-0000-0000-0000-000000000000", "%2e%2e"):
            response = attacker.delete("file", pk)
            assert response.status_code == 404, (pk, response.content)
        assert File.objects.filter(pk=victim["file"].pk).exists()


class TestAnonymousVisitors:
    def test_guessed_and_forged_ids(self, victim):
        visitor = new_anonymous_id()
        session = SessionFactory(anonymous_id=visitor)
        MessageFactory(session=session, content="visitor secret")
        for forged in (
            new_anonymous_id(),  # a valid-looking guess
            visitor[:-1] + ("A" if visitor[-1] != "A" else "B"),  # off by one character
            visitor.upper(),
            visitor + " ",
            "",
            "anon_",
            "anon_" + "a" * 200,
            "' OR 1=1 --",
        ):
            api = Api(anonymous_id=forged) if forged else Api()
            response = api.query("message")
            if forged and not valid_anonymous_id(forged):
                # Not an id this server issues: refused as such, never taken for a new visitor.
                assert response.status_code == 400 and error_codes(response) == ["invalid_anonymous_id"], forged
                assert "visitor secret" not in response.content.decode()
            else:
                assert rows(response, "message") == [], forged
            assert api.update("session", session.pk, {"title": "x"}).status_code in (400, 403, 404)
            assert api.create("message", {"session": str(session.pk), "content": "x"}).status_code in (400, 403)
        assert [r["content"] for r in rows(Api(anonymous_id=visitor).query("message"), "message")] == ["visitor secret"]

    def test_a_visitor_never_sees_user_sessions_with_an_empty_id(self, victim):
        # User-owned sessions have anonymous_id "": no visitor id may match them.
        SessionFactory(user=UserFactory(), anonymous_id="")
        assert rows(Api().query("session"), "session") == []

    def test_visitor_without_id_may_not_write(self, victim):
        response = Api().create("message", {"session": str(victim["session"].pk), "content": "x"})
        assert response.status_code == 403 and error_codes(response) == ["permission_denied"]

    def test_cookie_visitor_needs_the_csrf_token(self):
        client = Client(enforce_csrf_checks=True)
        api = Api(client)
        started = api.post("start/", {"agent_path": "test-agent"})  # no cookie yet: nothing to forge
        assert started.status_code == 201
        session_id = started.json()["session_id"]
        response = api.create("message", {"session": session_id, "content": "from evil.example"})
        assert response.status_code == 403 and "CSRF" in response.json()["errors"][0]["message"]
        token = client.cookies["csrftoken"].value
        response = api.create("message", {"session": session_id, "content": "mine"}, HTTP_X_CSRFTOKEN=token)
        assert response.status_code == 201, response.json()
        assert list(ConversationMessage.objects.values_list("content", flat=True)) == ["mine"]

    def test_logged_in_user_needs_the_csrf_token(self, victim):
        client = Client(enforce_csrf_checks=True)
        client.force_login(victim["user"])
        response = Api(client).update("session", victim["session"].pk, {"title": "csrf"})
        assert response.status_code == 403
        victim["session"].refresh_from_db()
        assert victim["session"].title == "secret plans"


class TestMalformedInput:
    @pytest.mark.parametrize(
        "body",
        [
            {"limit": 10**9},
            {"limit": -1},
            {"limit": "10"},
            {"limit": True},
            {"limit": 1.5},
            {"offset": -1},
            {"offset": 10**12},
            {"offset": "0"},
            {"count": "yes"},
            {"order_by": "timestamp; drop table x"},
            {"order_by": [["timestamp"]]},
            {"fields": "content,session"},
            {"fields": [1]},
            {"include": {"session": True}},
            {"filter": []},
            {"filter": "id=1"},
            {"exclude": [["id", 1]]},
            {"exclude": "id=1"},
            {"exclude": [{"message_type": "user"}] * 11},
            {"exclude": [{"message_type": "user"}, {"nope": 1}]},
            {"exclude": [{"message_type": 5}]},
            {"unknown": 1},
            {"filter": {"timestamp__gte": 123}},
            {"filter": {"timestamp__gte": "yesterday"}},
            {"filter": {"timestamp__gte": True}},
            {"filter": {"session": 123}},
            {"filter": {"session": {"$ne": None}}},
            {"filter": {"session": ["a", "b"]}},
            {"filter": {"session": "not-a-uuid"}},
            {"filter": {"session": None}},
            {"filter": {"id__in": "abc"}},
            {"filter": {"id__in": [None]}},
            {"filter": {"id__in": [["nested"]]}},
            {"filter": {"reply_to__isnull": "yes"}},
            {"filter": {"reply_to__isnull": 1}},
            {"filter": {"message_type": "user\x00"}},
            {"filter": {"message_type": 5}},
            {"filter": {"message_type": 1.5}},
            {"filter": {"message_type__in": [1, 2]}},
            {"filter": {"timestamp__gte": "2024-01-01T00:00:00\x00"}},
            {"filter": {"session__status": "x" * 10_000}},
        ],
    )
    def test_bad_query_values_are_400(self, victim, body):
        response = user_api(victim["user"]).query("message", body)
        assert response.status_code == 400, (body, response.content)
        error_codes(response)

    def test_errors_are_collected_per_field(self, victim):
        response = user_api(victim["user"]).query("message", {"limit": -1, "offset": -1, "filter": {"nope": 1}})
        assert sorted(error_fields(response)) == ["filter.nope", "limit", "offset"]
        response = user_api(victim["user"]).query(
            "message", {"exclude": [{"message_type": "user"}, {"nope": 1, "session__user": 1}]}
        )
        assert sorted(error_fields(response)) == ["exclude[1].nope", "exclude[1].session__user"]

    @pytest.mark.parametrize(
        "raw", ["{bad", '{"filter": }', "\xff\xfe", "[1,", "NaN", '{"limit": Infinity}', '{"a":1}{']
    )
    def test_malformed_json(self, victim, raw):
        api = user_api(victim["user"])
        response = api.query("message", None, raw=raw)
        assert response.status_code == 400 and error_codes(response) == ["parse_error"]
        response = api.create("message", None, raw=raw)
        assert response.status_code == 400 and error_codes(response) == ["parse_error"]

    def test_other_content_types_are_415(self, victim):
        api = user_api(victim["user"])
        response = api.client.post(API + "models/message/", {"session": str(victim["session"].pk), "content": "x"})
        assert response.status_code == 415 and error_codes(response) == ["unsupported_media_type"]

    def test_lying_content_length_is_still_capped(self, victim):
        api = user_api(victim["user"])
        body = json.dumps({"session": str(victim["session"].pk), "content": "y" * 5000})
        with ai(BRIDGE_MAX_BODY_SIZE=1000):
            response = api.client.generic(
                "POST", API + "models/message/", body, content_type="application/json", CONTENT_LENGTH="10"
            )
        assert response.status_code in (400, 413)
        assert not ConversationMessage.objects.filter(content__startswith="y").exists()

    def test_bad_operation_id_header(self, victim):
        response = user_api(victim["user"]).update(
            "session", victim["session"].pk, {"title": "t"}, HTTP_X_OPERATION_ID="x" * 500
        )
        assert response.status_code == 400 and error_fields(response) == ["X-Operation-Id"]

    def test_nul_in_written_text(self, victim):
        api = user_api(victim["user"])
        response = api.create("message", {"session": str(victim["session"].pk), "content": "a\x00b"})
        assert response.status_code == 400 and error_fields(response) == ["content"]
        response = api.update("widget", victim["widget"].pk, {"display_data": {"k\x00": "v"}})
        assert response.status_code == 400
        assert ConversationWidget.objects.get(pk=victim["widget"].pk).display_data == {}
