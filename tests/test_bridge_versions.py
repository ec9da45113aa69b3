"""Versions through the bridge: the row actions ``regenerate``, ``edit`` and ``activate`` of
``message`` (``POST models/message/<pk>/<action>/``), the default active-path scope of message
queries, and the ``model_change`` events that keep clients' views of the path current.

Real parts: the bridge's views over Django's test client (sessions, CSRF, DRF throttles in the
cache), real turns of an agent whose Context records the turns it saw (answered in the test's
thread when the request's transaction commits), the database (SQLite, or PostgreSQL with
DATABASE_URL), the in-memory realtime backend capturing what is published.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import EventName, MessageType, ProcessingStatus, SessionStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.realtime.channels import session_channel
from django_ai.conversations.registry import register_agent
from django_ai.conversations.testing.factories import FileFactory, MessageFactory, SessionFactory, UserFactory

from .bridge_support import Api, ai, anonymous_api, error_codes, error_fields, fresh_bridge, rows, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge")]


class RecallAgent(ConversationAgent):
    """Its Context lists the messages of the turns it answered; its reply says them, so a reply
    shows which Context its turn started from."""

    class Context(BaseModel):
        seen: list[str] = []

    async def get_response(self, message, request=None, **kwargs):
        self.context.seen = [*self.context.seen, message]
        return " ".join(self.context.seen)


class RejectingRecallAgent(RecallAgent):
    concurrency = "reject"


@pytest.fixture
def chat(django_capture_on_commit_callbacks):
    """A signed-in user's conversation with the RecallAgent, and helpers to talk to it: each
    write's turn runs when its transaction commits (in the test's thread)."""
    register_agent("recall", RecallAgent)
    register_agent("recall-reject", RejectingRecallAgent)
    user = UserFactory()
    session = SessionFactory(user=user, agent_path="recall")
    return Chat(user, session, django_capture_on_commit_callbacks)


class Chat:
    def __init__(self, user: Any, session: ConversationSession, capture: Any):
        self.user = user
        self.session = session
        self.api = user_api(user)
        self.capture = capture

    def committed(self, send: Any) -> Any:
        """``send()``'s response, once the turns its commit scheduled have run."""
        with self.capture(execute=True):
            response = send()
        return response

    def say(self, text: str) -> str:
        response = self.committed(
            lambda: self.api.create("message", {"session": str(self.session.pk), "content": text})
        )
        assert response.status_code == 201, response.json()
        return response.json()["data"]

    def action(self, pk: Any, name: str, body: Any = None, api: Api | None = None, **extra: Any) -> Any:
        return self.committed(lambda: (api or self.api).post(f"models/message/{pk}/{name}/", body or {}, **extra))

    def reply_to(self, pk: Any) -> ConversationMessage:
        return ConversationMessage.objects.get(reply_to_id=pk, message_type=MessageType.AGENT)

    def path(self, **body: Any) -> list[tuple[str, str]]:
        """(type, text) of the messages a plain query of the conversation answers."""
        found = rows(self.api.query("message", {"filter": {"session": str(self.session.pk)}, **body}), "message")
        return [(row["message_type"], row["content"]) for row in found]


def _row(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.json()
    body = response.json()
    return body["included"]["message"][str(body["data"])]


class TestRegenerate:
    def test_the_last_reply_is_answered_again_from_the_context_its_turn_started_from(self, chat):
        chat.say("a")
        b = chat.say("b")
        assert chat.reply_to(b).content == "a b"
        # Named by its reply (what a UI shows a Regenerate button on).
        with chat.capture(execute=False):
            pending = chat.api.post(f"models/message/{chat.reply_to(b).pk}/regenerate/", {})
        row = _row(pending)
        assert row["id"] != b
        assert {k: row[k] for k in ("message_type", "content", "processing_status", "revision")} == {
            "message_type": "user",
            "content": "b",
            "processing_status": "pending",
            "revision": "regenerate",
        }
        assert (row["version_group"], row["version_index"], row["version_count"], row["active"]) == (b, 2, 2, True)

    def test_the_new_version_is_answered_and_the_old_one_kept_off_the_path(self, chat):
        chat.say("a")
        b = chat.say("b")
        new = _row(chat.action(b, "regenerate"))["id"]
        version = ConversationMessage.objects.get(pk=new)
        assert version.processing_status == ProcessingStatus.COMPLETED
        # The Context the first "b" turn started from: ["a"], not ["a", "b"].
        assert chat.reply_to(new).content == "a b"
        assert chat.path() == [("user", "a"), ("agent", "a"), ("user", "b"), ("agent", "a b")]
        assert [r["id"] for r in rows(chat.api.query("message", {"filter": {"message_type": "user"}}), "message")][
            -1
        ] == new
        old = ConversationMessage.objects.get(pk=b)
        assert (old.active, old.version_count, chat.reply_to(b).active) == (False, 2, False)
        # A next message continues from the new version's Context.
        c = chat.say("c")
        assert chat.reply_to(c).content == "a b c"

    def test_an_earlier_message_is_answered_again_and_what_followed_leaves_the_path(self, chat):
        a = chat.say("a")
        chat.say("b")
        chat.say("c")
        new = _row(chat.action(a, "regenerate"))["id"]
        assert chat.reply_to(new).content == "a"
        assert chat.path() == [("user", "a"), ("agent", "a")]
        superseded = chat.path(filter={"session": str(chat.session.pk), "active": False})
        assert superseded == [
            ("user", "a"),
            ("agent", "a"),
            ("user", "b"),
            ("agent", "a b"),
            ("user", "c"),
            ("agent", "a b c"),
        ]

    def test_a_row_that_answers_no_user_message_is_refused(self, chat):
        greeting = MessageFactory(session=chat.session, message_type=MessageType.AGENT, content="Hello")
        response = chat.action(greeting.pk, "regenerate")
        assert response.status_code == 400 and error_codes(response) == ["not_a_user_message"]
        assert ConversationMessage.objects.filter(session=chat.session).count() == 1


class TestEdit:
    def test_an_edited_message_is_a_new_version_answered_from_the_original_turns_context(self, chat):
        chat.say("a")
        b = chat.say("b")
        chat.say("c")
        file = FileFactory(user=chat.user, session=None, text="notes")
        row = _row(chat.action(b, "edit", {"content": "B!", "files": [str(file.pk)]}))
        assert (row["content"], row["revision"], row["version_group"], row["version_index"]) == ("B!", "edit", b, 2)
        assert row["files"] == [str(file.pk)]
        assert chat.reply_to(row["id"]).content == "a B!"
        assert chat.path() == [("user", "a"), ("agent", "a"), ("user", "B!"), ("agent", "a B!")]
        file.refresh_from_db()
        assert file.session_id == chat.session.pk  # an upload joins the conversation, as with a create

    def test_without_files_the_edit_keeps_the_messages_own(self, chat):
        file = FileFactory(user=chat.user, session=chat.session, text="notes")
        response = chat.committed(
            lambda: chat.api.create(
                "message", {"session": str(chat.session.pk), "content": "a", "files": [str(file.pk)]}
            )
        )
        a = response.json()["data"]
        assert _row(chat.action(a, "edit", {"content": "A"}))["files"] == [str(file.pk)]
        assert _row(chat.action(a, "edit", {"content": "A", "files": []}))["files"] == []

    @pytest.mark.parametrize(
        ("body", "field", "code"),
        [
            ({}, "content", "required"),
            ({"content": "   "}, "content", "invalid_message"),
            ({"content": "a\x00b"}, "content", "invalid"),
            ({"content": 5}, "content", "invalid"),
            ({"content": "ok", "files": "x"}, "files", None),
            ({"content": "ok", "files": ["not-a-uuid"]}, "files", None),
            ({"content": "ok", "files": ["00000000-0000-0000-0000-000000000001"]}, "files", "does_not_exist"),
            (
                {"content": "ok", "files": [f"00000000-0000-0000-0000-{n:012}" for n in range(21)]},
                "files",
                "too_many_values",
            ),
            ({"content": "ok", "speed": 1}, "speed", "unknown_key"),
        ],
    )
    def test_a_bad_body_is_a_400_naming_the_field_and_changes_nothing(self, chat, body, field, code):
        b = chat.say("b")
        before = list(ConversationMessage.objects.values_list("pk", "active", "version_count"))
        response = chat.action(b, "edit", body)
        assert response.status_code == 400, response.json()
        assert error_fields(response)[0] == field
        if code:
            assert error_codes(response)[0] == code
        assert list(ConversationMessage.objects.values_list("pk", "active", "version_count")) == before

    def test_a_long_content_is_refused_as_in_a_create(self, chat):
        b = chat.say("b")
        with ai(MAX_MESSAGE_LENGTH=10):
            response = chat.action(b, "edit", {"content": "x" * 11})
        assert response.status_code == 400 and error_fields(response) == ["content"]

    def test_another_owners_file_does_not_exist(self, chat):
        b = chat.say("b")
        theirs = FileFactory(user=UserFactory(), session=None)
        response = chat.action(b, "edit", {"content": "x", "files": [str(theirs.pk)]})
        assert response.status_code == 400 and error_fields(response) == ["files"]
        assert error_codes(response) == ["does_not_exist"]

    def test_only_a_user_message_is_edited(self, chat):
        b = chat.say("b")
        response = chat.action(chat.reply_to(b).pk, "edit", {"content": "x"})
        assert response.status_code == 400 and error_codes(response) == ["not_a_user_message"]


class TestActivate:
    def test_switching_versions_back_and_forth_moves_the_path_and_the_context(self, chat):
        chat.say("a")
        b = chat.say("b")
        chat.say("c")
        edited = _row(chat.action(b, "edit", {"content": "B"}))["id"]
        assert chat.path() == [("user", "a"), ("agent", "a"), ("user", "B"), ("agent", "a B")]
        # Back to the original "b": its path went on with "c".
        row = _row(chat.action(chat.reply_to(b).pk, "activate"))
        assert (row["id"], row["active"]) == (b, True)
        assert chat.path() == [
            ("user", "a"),
            ("agent", "a"),
            ("user", "b"),
            ("agent", "a b"),
            ("user", "c"),
            ("agent", "a b c"),
        ]
        d = chat.say("d")
        assert chat.reply_to(d).content == "a b c d"
        # And forth again: the edited branch's Context, without "c" or "d".
        assert _row(chat.action(edited, "activate"))["id"] == edited
        e = chat.say("e")
        assert chat.reply_to(e).content == "a B e"

    def test_activating_the_active_version_changes_nothing(self, chat):
        b = chat.say("b")
        before = list(ConversationMessage.objects.order_by("pk").values_list("pk", "active", "updated_at"))
        assert _row(chat.action(b, "activate"))["id"] == b
        assert list(ConversationMessage.objects.order_by("pk").values_list("pk", "active", "updated_at")) == before

    def test_refused_while_a_turn_runs(self, chat):
        b = chat.say("b")
        edited = _row(chat.action(b, "edit", {"content": "B"}))["id"]
        ConversationMessage.objects.filter(pk=edited).update(processing_status=ProcessingStatus.PROCESSING)
        response = chat.action(b, "activate")
        assert response.status_code == 409 and error_codes(response) == ["turn_in_progress"]
        assert ConversationMessage.objects.get(pk=edited).active


class TestDefaultScope:
    def test_queries_see_the_active_path_unless_they_name_a_version_field(self, chat):
        a = chat.say("a")
        first = _row(chat.action(a, "regenerate"))["id"]
        second = _row(chat.action(a, "edit", {"content": "A"}))["id"]
        users = {"session": str(chat.session.pk), "message_type": "user"}
        assert [r["id"] for r in rows(chat.api.query("message", {"filter": users}), "message")] == [second]
        # All versions of the message, in order, by the group the row names.
        group = rows(chat.api.query("message", {"filter": {**users, "version_group": a}}), "message")
        assert [(r["id"], r["version_index"], r["version_count"]) for r in group] == [
            (a, 1, 3),
            (first, 2, 3),
            (second, 3, 3),
        ]
        off = rows(chat.api.query("message", {"filter": {**users, "active": False}}), "message")
        assert [r["id"] for r in off] == [a, first]
        # By id: any version (what a client refetching a row it heard of gets).
        assert [r["id"] for r in rows(chat.api.query("message", {"filter": {"id": a}}), "message")] == [a]
        assert len(rows(chat.api.query("message", {"filter": {"id__in": [a, first, second]}}), "message")) == 3
        # An exclude names the field too; count and has_more are about the same rows.
        answer = chat.api.query("message", {"filter": users, "count": True, "limit": 1}).json()
        assert answer["meta"]["count"] == 1 and answer["meta"]["has_more"] is False
        excluded = chat.api.query("message", {"filter": users, "exclude": {"active": True}})
        assert [r["id"] for r in rows(excluded, "message")] == [a, first]

    def test_reads_by_pk_and_includes_see_every_version(self, chat):
        a = chat.say("a")
        chat.action(a, "regenerate")
        old_reply = chat.reply_to(a)
        included = chat.api.query("message", {"filter": {"id": str(old_reply.pk)}, "include": ["reply_to"]}).json()[
            "included"
        ]["message"]
        assert included[a]["active"] is False


class TestAccess:
    def test_another_user_and_a_visitor_get_404_on_every_action(self, chat):
        b = chat.say("b")
        others = [user_api(UserFactory()), anonymous_api()]
        for api in others:
            for name, body in (("regenerate", {}), ("edit", {"content": "x"}), ("activate", {})):
                response = chat.action(b, name, body, api=api)
                assert response.status_code == 404, (name, response.json())
                assert error_codes(response) == ["not_found"]
        assert ConversationMessage.objects.filter(session=chat.session, message_type=MessageType.USER).count() == 1

    def test_a_deleted_conversations_messages_are_not_found(self, chat):
        b = chat.say("b")
        ConversationSession.objects.filter(pk=chat.session.pk).update(status=SessionStatus.DELETED)
        for name, body in (("regenerate", {}), ("edit", {"content": "x"}), ("activate", {})):
            response = chat.action(b, name, body)
            assert response.status_code == 404 and error_codes(response) == ["not_found"], name
        assert ConversationMessage.objects.filter(session=chat.session, message_type=MessageType.USER).count() == 1

    def test_a_visitors_own_conversation_answers_them(self, chat):
        visitor = anonymous_api()
        session_id = visitor.post("start/", {"agent_path": "recall"}).json()["session_id"]
        a = chat.committed(lambda: visitor.create("message", {"session": session_id, "content": "hi"})).json()["data"]
        assert _row(chat.action(a, "regenerate", api=visitor))["content"] == "hi"

    def test_a_cookie_caller_needs_the_csrf_token(self, chat):
        client = Client(enforce_csrf_checks=True)
        client.force_login(chat.user)
        token = "k" * 32  # a CSRF secret as Django's cookie holds it
        client.cookies["csrftoken"] = token
        api = Api(client)
        b = chat.say("b")
        for name, body in (("regenerate", {}), ("edit", {"content": "x"}), ("activate", {})):
            refused = chat.action(b, name, body, api=api)
            assert refused.status_code == 403 and "CSRF" in refused.json()["errors"][0]["message"], name
        assert ConversationMessage.objects.filter(session=chat.session, message_type=MessageType.USER).count() == 1
        assert _row(chat.action(b, "regenerate", api=api, HTTP_X_CSRFTOKEN=token))["version_index"] == 2

    def test_regenerate_and_edit_count_against_the_message_create_rate(self, chat):
        with ai(MESSAGE_CREATE_THROTTLE_RATE="3/min"):
            b = chat.say("b")
            assert chat.action(b, "regenerate").status_code == 200
            assert chat.action(b, "edit", {"content": "B"}).status_code == 200
            throttled = [chat.action(b, "regenerate"), chat.action(b, "edit", {"content": "B"})]
            # Switching is a row action with its own rate.
            assert chat.action(b, "activate").status_code == 200
        for response in throttled:
            assert response.status_code == 429 and error_codes(response) == ["throttled"]
        assert ConversationMessage.objects.filter(version_group=b).count() == 3

    def test_an_archived_conversation_is_refused_with_409(self, chat):
        b = chat.say("b")
        ConversationSession.objects.filter(pk=chat.session.pk).update(status=SessionStatus.ARCHIVED)
        for name, body in (("regenerate", {}), ("edit", {"content": "x"})):
            response = chat.action(b, name, body)
            assert response.status_code == 409 and error_codes(response) == ["session_not_active"]
        assert ConversationMessage.objects.filter(session=chat.session, message_type=MessageType.USER).count() == 1

    def test_a_reject_agent_refuses_while_its_turn_waits(self, chat):
        ConversationSession.objects.filter(pk=chat.session.pk).update(agent_path="recall-reject")
        with chat.capture(execute=False):  # never committed: the turn does not run
            b = chat.api.create("message", {"session": str(chat.session.pk), "content": "b"}).json()["data"]
            response = chat.api.post(f"models/message/{b}/regenerate/", {})
        assert response.status_code == 409 and error_codes(response) == ["turn_in_progress"]

    @pytest.mark.parametrize("name", ["regenerate", "activate"])
    def test_a_body_key_is_unknown(self, chat, name):
        b = chat.say("b")
        response = chat.action(b, name, {"content": "x"})
        assert response.status_code == 400 and error_codes(response) == ["unknown_key"]
        assert error_fields(response) == ["content"]


class TestRetries:
    @pytest.mark.parametrize(("name", "body"), [("regenerate", {}), ("edit", {"content": "B"})])
    def test_the_same_operation_id_gets_the_same_version(self, chat, name, body):
        b = chat.say("b")
        first = _row(chat.action(b, name, body, HTTP_X_OPERATION_ID="op-1"))
        again = _row(chat.action(b, name, body, HTTP_X_OPERATION_ID="op-1"))
        assert again["id"] == first["id"]
        assert ConversationMessage.objects.filter(version_group=b).count() == 2
        assert ConversationMessage.objects.filter(reply_to_id=first["id"], message_type=MessageType.AGENT).count() == 1

    def test_the_same_operation_id_for_other_files_is_refused(self, chat):
        mine = FileFactory(user=chat.user, session=chat.session, text="notes")
        b = chat.say("b")
        first = _row(chat.action(b, "edit", {"content": "B", "files": [str(mine.pk)]}, HTTP_X_OPERATION_ID="op-2"))
        again = _row(chat.action(b, "edit", {"content": "B", "files": [str(mine.pk)]}, HTTP_X_OPERATION_ID="op-2"))
        assert again["id"] == first["id"]
        other = chat.action(b, "edit", {"content": "B", "files": []}, HTTP_X_OPERATION_ID="op-2")
        assert other.status_code == 409 and error_codes(other) == ["operation_id_reused"]
        assert ConversationMessage.objects.filter(version_group=b).count() == 2


class TestEvents:
    def test_clients_hear_of_every_row_the_change_touched(self, chat, events):
        a = chat.say("a")
        b = chat.say("b")
        replies = {str(chat.reply_to(a).pk), str(chat.reply_to(b).pk)}
        events.clear()
        new = _row(chat.action(a, "regenerate", HTTP_X_OPERATION_ID="op-ev"))["id"]
        changes = [
            c
            for c in events.of(EventName.MODEL_CHANGE, channel=session_channel(chat.session.pk))
            if c["model"] == "message"
        ]
        touched: dict[str, set[str]] = {}
        for change in changes:
            for pk in change["pks"]:
                touched.setdefault(pk, set()).add(change["operation"])
        assert "create" in touched[new]
        # The original: its version_count (2) and its active flag; the rows that left the path.
        assert {a, b, *replies} <= {pk for pk, ops in touched.items() if "update" in ops}
        # The new version's reply, created by its turn.
        assert "create" in touched[str(chat.reply_to(new).pk)]
        assert any(c["operation_id"] == "op-ev" for c in changes)
