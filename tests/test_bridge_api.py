"""The bridge over HTTP: queries, writes, schema, start/cancel, events, limits (real database)."""

from __future__ import annotations

import datetime
import uuid

import django_filters
import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_ai.conversations.bridge import expose, get_exposed
from django_ai.conversations.bridge.builtins import MessageFilterSet
from django_ai.conversations.bridge.errors import UnknownModel
from django_ai.conversations.bridge.permissions import AllowAny, IsOwner, IsStaff, ReadOnly
from django_ai.conversations.constants import EventName, MessageType, ProcessingStatus, SessionStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession, File
from django_ai.conversations.registry import register_agent
from django_ai.conversations.testing.factories import (
    FileFactory,
    MessageFactory,
    SessionFactory,
    UserFactory,
    WidgetFactory,
)

from .bridge_support import ai, RejectAgent, anonymous_api, echo_agent, error_codes, error_fields, fresh_bridge, rows, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]


def _messages(session, n, *, start=None):
    start = start or timezone.now() - datetime.timedelta(hours=1)
    return [
        MessageFactory(session=session, content=f"m{i}", timestamp=start + datetime.timedelta(seconds=i))
        for i in range(n)
    ]


class TestQuery:
    def test_latest_messages_of_a_conversation(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        made = _messages(session, 7)
        _messages(SessionFactory(user=user), 3)  # another conversation of the same user
        api = user_api(user)
        response = api.query("message", {"filter": {"session": str(session.pk)}, "order_by": ["-timestamp"], "limit": 5})
        got = rows(response, "message")
        assert [r["content"] for r in got] == ["m6", "m5", "m4", "m3", "m2"]
        assert response.json()["meta"] == {"limit": 5, "offset": 0, "has_more": True}
        assert got[0]["id"] == str(made[6].pk) and got[0]["session"] == str(session.pk)
        nxt = api.query("message", {"filter": {"session": str(session.pk)}, "order_by": ["-timestamp"], "limit": 5, "offset": 5, "count": True})
        assert [r["content"] for r in rows(nxt, "message")] == ["m1", "m0"]
        assert nxt.json()["meta"] == {"limit": 5, "offset": 5, "has_more": False, "count": 7}

    def test_filters_exclude_and_lookups(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        start = timezone.now() - datetime.timedelta(hours=1)
        msgs = _messages(session, 6, start=start)
        ConversationMessage.objects.filter(pk=msgs[5].pk).update(message_type=MessageType.AGENT)
        api = user_api(user)
        cut = (start + datetime.timedelta(seconds=2)).isoformat()
        got = rows(api.query("message", {"filter": {"timestamp__gte": cut}, "exclude": {"message_type": "agent"}}), "message")
        assert [r["content"] for r in got] == ["m2", "m3", "m4"]
        got = rows(api.query("message", {"filter": {"id__in": [str(msgs[0].pk), str(msgs[3].pk)]}}), "message")
        assert [r["content"] for r in got] == ["m0", "m3"]
        # exclude is NOT (a AND b): rows matching only one condition stay
        got = rows(api.query("message", {"exclude": {"message_type": "user", "timestamp__lt": cut}}), "message")
        assert [r["content"] for r in got] == ["m2", "m3", "m4", "m5"]
        # a list of exclude objects drops each one: NOT (a) AND NOT (b), as chained .exclude() calls
        got = rows(api.query("message", {"exclude": [{"message_type": "agent"}, {"timestamp__lt": cut}]}), "message")
        assert [r["content"] for r in got] == ["m2", "m3", "m4"]
        got = rows(api.query("message", {"exclude": [{"message_type": "user", "timestamp__lt": cut}, {"id": str(msgs[4].pk)}]}), "message")
        assert [r["content"] for r in got] == ["m2", "m3", "m5"]
        assert [r["content"] for r in rows(api.query("message", {"exclude": []}), "message")] == [f"m{i}" for i in range(6)]
        got = rows(api.query("message", {"filter": {"reply_to__isnull": True, "session__status": "active"}}), "message")
        assert len(got) == 6
        assert rows(api.query("message", {"filter": {"session__status": "archived"}}), "message") == []
        assert len(rows(api.query("message", {"filter": {"session__exact": str(session.pk)}}), "message")) == 6

    def test_sessions_list_titles_and_ordering(self):
        user = UserFactory()
        a = SessionFactory(user=user, title="Billing question")
        b = SessionFactory(user=user, title="Shipping")
        ConversationSession.objects.filter(pk=a.pk).update(updated_at=timezone.now() + datetime.timedelta(minutes=1))
        api = user_api(user)
        assert [r["title"] for r in rows(api.query("session"), "session")] == ["Billing question", "Shipping"]
        assert [r["title"] for r in rows(api.query("session", {"order_by": ["title"]}), "session")] == ["Billing question", "Shipping"]
        assert [r["id"] for r in rows(api.query("session", {"filter": {"title__icontains": "SHIP"}}), "session")] == [str(b.pk)]
        row = rows(api.query("session"), "session")[0]
        assert set(row) == {"id", "agent_path", "title", "status", "created_at", "updated_at", "last_message_at"}

    def test_fields_narrow_the_row_and_pk_is_always_there(self):
        user = UserFactory()
        MessageFactory(session=SessionFactory(user=user))
        got = rows(user_api(user).query("message", {"fields": ["content"]}), "message")
        assert set(got[0]) == {"id", "content"}

    def test_file_text_only_when_asked(self):
        user = UserFactory()
        FileFactory(user=user, text="extracted words")
        api = user_api(user)
        row = rows(api.query("file"), "file")[0]
        assert "extracted_text" not in row and row["extraction_status"] == "done"
        assert "file" not in row  # the storage path is never served
        row = rows(api.query("file", {"fields": ["extracted_text", "filename"]}), "file")[0]
        assert row["extracted_text"] == "extracted words"

    def test_include_related_rows_without_n_plus_one(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        files = [FileFactory(user=user, session=session) for _ in range(3)]

        def make(n):
            for m in _messages(session, n):
                m.files.set(files[:2])

        api = user_api(user)
        counts = {}
        for n in (3, 40):
            ConversationMessage.objects.filter(session=session).delete()
            make(n)
            body = {"filter": {"session": str(session.pk)}, "include": ["session", "files"], "limit": 50, "count": True}
            api.query("message", body)  # warm the auth session
            with CaptureQueriesContext(connection) as queries:
                response = api.query("message", body)
            got = rows(response, "message")
            assert len(got) == n and all(len(r["files"]) == 2 for r in got)
            included = response.json()["included"]
            assert list(included["session"]) == [str(session.pk)]
            assert set(included["file"]) == {str(f.pk) for f in files[:2]}
            counts[n] = len(queries)
        assert counts[3] == counts[40], counts
        # auth session + user, count, rows, the rows' files, included sessions, included files
        assert counts[40] <= 7, counts

    def test_widget_rows(self):
        user = UserFactory()
        widget = WidgetFactory(session=SessionFactory(user=user), data={"slots": [1, 2]})
        got = rows(user_api(user).query("widget", {"include": ["message"]}), "widget")
        assert got[0]["data"] == {"slots": [1, 2]} and got[0]["message"] == str(widget.message_id)

    def test_anonymous_visitor_by_header_and_by_session_cookie(self):
        anon = anonymous_api()
        own = SessionFactory(anonymous_id=anon.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"])
        SessionFactory()  # somebody else's
        assert [r["id"] for r in rows(anon.query("session"), "session")] == [str(own.pk)]
        # A cookie visitor: start/ stores the id in their Django session.
        cookie = anonymous_api()
        cookie.headers.clear()
        started = cookie.post("start/", {"agent_path": "test-agent"})
        assert started.status_code == 201, started.json()
        assert started.json()["anonymous_id"].startswith("anon_")
        assert [r["id"] for r in rows(cookie.query("session"), "session")] == [started.json()["session_id"]]

    def test_limit_defaults_and_maximum(self):
        user = UserFactory()
        _messages(SessionFactory(user=user), 5)
        api = user_api(user)
        with ai(QUERY_DEFAULT_LIMIT=2, QUERY_MAX_LIMIT=3):
            assert api.query("message").json()["meta"]["limit"] == 2
            assert len(rows(api.query("message", {"limit": 3}), "message")) == 3
            response = api.query("message", {"limit": 4})
            assert response.status_code == 400 and error_fields(response) == ["limit"]
        assert api.query("message", {"limit": 0, "count": True}).json() == {
            "data": [], "included": {"message": {}}, "meta": {"limit": 0, "offset": 0, "has_more": True, "count": 5}
        }


class TestWrites:
    def test_create_user_message_forces_type_and_status(self, django_capture_on_commit_callbacks, events):
        user = UserFactory()
        session = SessionFactory(user=user)
        f = FileFactory(user=user, text="notes")  # extracted: the turn does not wait for it
        api = user_api(user)
        with django_capture_on_commit_callbacks(execute=True):
            response = api.create(
                "message", {"session": str(session.pk), "content": "    Hello\n", "files": [str(f.pk)]}, HTTP_X_OPERATION_ID="op-1"
            )
        assert response.status_code == 201, response.json()
        body = response.json()
        pk = body["data"]
        row = body["included"]["message"][pk]
        # Stored as sent (indentation kept), typed and queued whatever the client could have said.
        assert row["message_type"] == "user" and row["content"] == "    Hello\n" and row["files"] == [str(f.pk)]
        assert row["processing_status"] in {s.value for s in ProcessingStatus}
        message = ConversationMessage.objects.get(pk=pk)
        assert message.message_type == MessageType.USER and message.session_id == session.pk
        f.refresh_from_db()
        assert f.session_id == session.pk  # an unattached file joins the conversation
        changes = [p for p in events.of(EventName.MODEL_CHANGE) if p["model"] == "message" and p["pks"] == [pk]]
        assert changes and changes[0]["operation"] == "create" and changes[0]["operation_id"] == "op-1"
        file_changes = [p for p in events.of(EventName.MODEL_CHANGE) if p["model"] == "file" and p["pks"] == [str(f.pk)]]
        assert file_changes and file_changes[0]["operation_id"] == "op-1"

    def test_message_validation_errors_per_field(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        api = user_api(user)
        response = api.create("message", {"session": str(session.pk), "content": "   "})
        assert response.status_code == 400 and error_fields(response) == ["content"]
        with ai(MAX_MESSAGE_LENGTH=10):
            response = api.create("message", {"session": str(session.pk), "content": "x" * 11})
        assert response.status_code == 400 and error_fields(response) == ["content"]
        response = api.create("message", {"content": "hi"})
        assert response.status_code == 400 and error_fields(response) == ["session"]
        response = api.create("message", {"session": "not-a-uuid", "content": "hi"})
        assert response.status_code == 400 and error_fields(response) == ["session"]
        assert not ConversationMessage.objects.exists()

    def test_no_message_in_archived_session(self):
        user = UserFactory()
        session = SessionFactory(user=user, status=SessionStatus.ARCHIVED)
        response = user_api(user).create("message", {"session": str(session.pk), "content": "hi"})
        assert response.status_code == 409 and error_codes(response) == ["session_not_active"]
        assert not ConversationMessage.objects.exists()

    def test_reject_policy_is_409_while_a_turn_runs(self):
        register_agent("strict", RejectAgent)
        user = UserFactory()
        session = SessionFactory(user=user, agent_path="strict")
        MessageFactory(session=session, processing_status=ProcessingStatus.PROCESSING)
        response = user_api(user).create("message", {"session": str(session.pk), "content": "again"})
        assert response.status_code == 409 and error_codes(response) == ["turn_in_progress"]
        assert ConversationMessage.objects.filter(session=session).count() == 1

    def test_rename_and_archive_a_session(self, django_capture_on_commit_callbacks, events):
        user = UserFactory()
        session = SessionFactory(user=user, context={"tier": "gold"})
        api = user_api(user)
        with django_capture_on_commit_callbacks(execute=True):
            response = api.update("session", session.pk, {"title": "Renamed", "status": "archived"})
        assert response.status_code == 200, response.json()
        assert response.json()["included"]["session"][str(session.pk)]["title"] == "Renamed"
        session.refresh_from_db()
        assert (session.title, session.status, session.context) == ("Renamed", "archived", {"tier": "gold"})
        assert any(p["model"] == "session" and p["operation"] == "update" for p in events.of(EventName.MODEL_CHANGE))
        response = api.update("session", session.pk, {"status": "active"})
        assert response.status_code == 400 and error_fields(response) == ["status"]
        response = api.update("session", session.pk, {"title": "x" * 201})
        assert response.status_code == 400 and error_fields(response) == ["title"]
        response = api.update("session", session.pk, {})
        assert response.status_code == 400

    def test_widget_display_data_but_not_data(self):
        user = UserFactory()
        widget = WidgetFactory(session=SessionFactory(user=user), data={"slots": ["a"]})
        api = user_api(user)
        response = api.update("widget", widget.pk, {"display_data": {"selected": "a"}})
        assert response.status_code == 200, response.json()
        response = api.update("widget", widget.pk, {"data": {"slots": ["hacked"]}})
        assert response.status_code == 400 and error_fields(response) == ["data"]
        response = api.update("widget", widget.pk, {"display_data": ["not", "an", "object"]})
        assert response.status_code == 400 and error_fields(response) == ["display_data"]
        widget.refresh_from_db()
        assert widget.data == {"slots": ["a"]} and widget.display_data == {"selected": "a"}

    def test_delete_own_file_removes_the_bytes_after_commit(self, django_capture_on_commit_callbacks):
        user = UserFactory()
        f = FileFactory(user=user)
        storage, name = f.file.storage, f.file.name
        assert storage.exists(name)
        with django_capture_on_commit_callbacks(execute=True):
            response = user_api(user).delete("file", f.pk)
        assert response.status_code == 204
        assert not File.objects.filter(pk=f.pk).exists() and not storage.exists(name)

    def test_operations_not_offered_are_403(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        message = MessageFactory(session=session)
        widget = WidgetFactory(session=session)
        api = user_api(user)
        for response in (
            api.delete("session", session.pk),
            api.delete("message", message.pk),
            api.update("message", message.pk, {"content": "edited"}),
            api.delete("widget", widget.pk),
            api.create("session", {"agent_path": "test-agent"}),
            api.create("widget", {"session": str(session.pk)}),
            api.create("file", {"filename": "x"}),
        ):
            assert response.status_code == 403, response.json()
            assert error_codes(response) in (["permission_denied"], ["operation_not_allowed"])
        assert ConversationSession.objects.filter(pk=session.pk).exists()
        message.refresh_from_db()
        assert message.content != "edited"


class TestEndpoints:
    def test_schema_describes_models_agents_and_events(self):
        user = UserFactory()
        body = user_api(user).get("schema/").json()
        message = body["models"]["message"]
        assert message["actions"] == ["read", "create"]
        assert message["create_fields"] == ["session", "content", "files"]
        assert message["fields"]["session"] == {"type": "relation", "null": False, "related": "session"}
        assert message["fields"]["message_type"]["choices"] == ["user", "agent", "system", "widget"]
        assert message["filters"]["timestamp"] == ["gt", "gte", "lt", "lte"]
        assert "context" not in body["models"]["session"]["fields"]
        assert body["models"]["session"]["actions"] == ["read", "update"]
        assert body["models"]["file"]["actions"] == ["read", "delete"]
        assert {"path": "test-agent", "name": "EchoAgent", "description": "Answers with the message.", "start_params": None} in body["agents"]
        assert body["events"] == [str(e) for e in EventName]

    def test_schema_tells_the_upload_limit(self):
        api = user_api(UserFactory())
        assert api.get("schema/").json()["uploads"] == {"max_size": 20 * 1024 * 1024}
        with ai(MAX_UPLOAD_SIZE=1000):
            assert api.get("schema/").json()["uploads"] == {"max_size": 1000}

    def test_start_validates_its_body(self):
        api = user_api(UserFactory())
        response = api.post("start/", {"agent_path": "nope"})
        assert response.status_code == 404 and error_codes(response) == ["agent_not_found"]
        response = api.post("start/", {"agent_path": "test-agent", "context": "x"})
        assert response.status_code == 400 and error_fields(response) == ["context"]
        response = api.post("start/", {"agent_path": "test-agent", "owner": 1})
        assert response.status_code == 400 and error_codes(response) == ["unknown_key"]
        response = api.post("start/", {"agent_path": "test-agent", "title": "Mine"})
        assert response.status_code == 201 and response.json()["title"] == "Mine"
        assert "csrftoken" in response.cookies

    def test_cancel_own_turn(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        waiting = MessageFactory(session=session, processing_status=ProcessingStatus.PENDING)
        api = user_api(user)
        response = api.post("cancel/", {"session_id": str(session.pk)})
        assert response.json() == {"status": "cancelling", "cancelled": [str(waiting.pk)]}
        waiting.refresh_from_db()
        assert waiting.processing_status == ProcessingStatus.CANCELLED
        assert api.post("cancel/", {"session_id": str(session.pk)}).json() == {"status": "idle", "cancelled": []}
        response = api.post("cancel/", {"session_id": str(SessionFactory().pk)})
        assert response.status_code == 404

    def test_message_creation_is_throttled(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        api = user_api(user)
        with ai(MESSAGE_CREATE_THROTTLE_RATE="2/min"):
            codes = [api.create("message", {"session": str(session.pk), "content": f"m{i}"}).status_code for i in range(2)]
            response = api.create("message", {"session": str(session.pk), "content": "m3"})
            other = user_api(UserFactory())  # another user has their own budget
            assert other.query("message").status_code == 200
        assert codes == [201, 201]
        assert response.status_code == 429 and error_codes(response) == ["throttled"]
        assert int(response["Retry-After"]) > 0
        assert ConversationMessage.objects.filter(session=session).count() == 2

    def test_request_size_limit_is_413(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        with ai(BRIDGE_MAX_BODY_SIZE=1000):
            response = user_api(user).create("message", {"session": str(session.pk), "content": "x" * 2000})
        assert response.status_code == 413 and error_codes(response) == ["request_too_large"]
        assert not ConversationMessage.objects.exists()

    def test_unknown_model_is_404_everywhere(self):
        api = user_api(UserFactory())
        for response in (
            api.query("nope"),
            api.create("nope", {}),
            api.update("nope", uuid.uuid4(), {"a": 1}),
            api.delete("nope", uuid.uuid4()),
            api.query("__class__"),
        ):
            assert response.status_code == 404 and error_codes(response) == ["unknown_model"]
        with pytest.raises(UnknownModel):
            get_exposed("nope")


class GroupFilterSet(django_filters.FilterSet):
    class Meta:
        model = Group
        fields = {"name": ["exact", "startswith"]}


class TestRegistration:
    def test_expose_any_model_in_one_registration(self):
        seen = []
        expose(
            Group,
            name="group",
            permission_classes=[AllowAny],
            read_fields=["name"],
            create_fields=["name"],
            update_fields=["name"],
            filterset_class=GroupFilterSet,
            orderings=["name"],
            default_ordering=["name"],
            hooks=[lambda **kw: seen.append((kw["operation"], kw["phase"], kw["instance"].name, kw["request"].method))],
        )
        api = anonymous_api()
        created = api.create("group", {"name": "beta"})
        assert created.status_code == 201, created.json()
        Group.objects.create(name="alpha")
        assert [r["name"] for r in rows(api.query("group"), "group")] == ["alpha", "beta"]
        assert [r["name"] for r in rows(api.query("group", {"filter": {"name__startswith": "al"}}), "group")] == ["alpha"]
        pk = created.json()["data"]
        assert api.update("group", pk, {"name": "gamma"}).status_code == 200
        assert api.delete("group", pk).status_code == 204
        assert seen == [
            ("create", "before", "beta", "POST"),
            ("create", "after", "beta", "POST"),
            ("update", "before", "gamma", "PATCH"),
            ("update", "after", "gamma", "PATCH"),
            ("delete", "before", "gamma", "DELETE"),
            ("delete", "after", "gamma", "DELETE"),
        ]
        response = api.query("group", {"filter": {"permissions__codename": "x"}})
        assert response.status_code == 400 and error_codes(response) == ["unknown_filter"]

    def test_to_many_filter_paths_do_not_repeat_rows(self):
        from django.contrib.auth.models import Permission

        class ByPermission(django_filters.FilterSet):
            class Meta:
                model = Group
                fields = {"permissions__codename": ["exact", "in"]}

        expose(Group, name="group", permission_classes=[AllowAny], read_fields=["name"], filterset_class=ByPermission,
               orderings=["name"], default_ordering=["name"])
        group = Group.objects.create(name="editors")
        group.permissions.set(Permission.objects.filter(codename__in=["add_group", "change_group"]))
        Group.objects.create(name="readers")
        got = rows(anonymous_api().query("group", {"filter": {"permissions__codename__in": ["add_group", "change_group"]}, "count": True}), "group")
        assert [r["name"] for r in got] == ["editors"]
        got = rows(anonymous_api().query("group", {"exclude": {"permissions__codename": "add_group"}}), "group")
        assert [r["name"] for r in got] == ["readers"]

    def test_a_hook_refusing_rolls_the_write_back(self):
        from django_ai.conversations.exceptions import ConversationError

        def refuse(*, operation, instance, request, phase):
            if phase == "after" and instance.name == "forbidden":
                raise ConversationError("Not that name.", code="name_refused", field="name")

        expose(Group, name="group", permission_classes=[AllowAny], read_fields=["name"], create_fields=["name"], hooks=[refuse])
        response = anonymous_api().create("group", {"name": "forbidden"})
        assert response.status_code == 400 and error_codes(response) == ["name_refused"]
        assert not Group.objects.filter(name="forbidden").exists()

    def test_bad_declarations_fail_at_registration(self):
        from django.core.exceptions import ImproperlyConfigured

        for options in (
            {"read_fields": ["nope"]},
            {"create_fields": ["id"]},
            {"orderings": ["permissions__codename"]},
            {"orderings": ["nope"]},
            {"orderings": ["name"], "default_ordering": ["-id"]},
            {"relations": {"user": "user"}},
            {"relations": {"nope": "user"}},
            {"filterset_class": MessageFilterSet},
        ):
            with pytest.raises(ImproperlyConfigured):
                expose(Group, name="group", permission_classes=[AllowAny], read_fields=options.pop("read_fields", ["name"]), **options)

    def test_no_permission_classes_means_no_access(self):
        expose(Group, name="group", read_fields=["name"], create_fields=["name"])
        Group.objects.create(name="hidden")
        api = anonymous_api()
        assert api.query("group").status_code == 403
        assert api.create("group", {"name": "x"}).status_code == 403
        assert Group.objects.count() == 1

    def test_read_only_composition(self):
        expose(Group, name="group", permission_classes=[AllowAny & ReadOnly], read_fields=["name"], create_fields=["name"])
        Group.objects.create(name="visible")
        api = anonymous_api()
        assert [r["name"] for r in rows(api.query("group"), "group")] == ["visible"]
        assert api.create("group", {"name": "x"}).status_code == 403

    def test_staff_access_is_opt_in(self):
        staff = UserFactory(is_staff=True)
        others = SessionFactory(user=UserFactory())
        api = user_api(staff)
        assert rows(api.query("session"), "session") == []
        from django_ai.conversations.bridge.builtins import ExposedSession

        from django_ai.conversations.bridge import bridge_registry  # the name docs/bridge.md first used

        bridge_registry.register(ExposedSession(permission_classes=[IsOwner() | IsStaff]))
        assert [r["id"] for r in rows(api.query("session"), "session")] == [str(others.pk)]
        assert api.update("session", others.pk, {"title": "Checked by support"}).status_code == 200
        # A non-staff user still sees only their own.
        assert rows(user_api(UserFactory()).query("session"), "session") == []

    def test_global_permission_classes_close_the_bridge_to_visitors(self):
        anon = anonymous_api()
        SessionFactory(anonymous_id=anon.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"])
        with ai(BRIDGE_PERMISSION_CLASSES=["django_ai.conversations.bridge.permissions.IsAuthenticated"]):
            assert anon.query("session").status_code == 403
            assert anon.post("start/", {"agent_path": "test-agent"}).status_code == 403
        assert len(rows(anon.query("session"), "session")) == 1


@pytest.mark.django_db(transaction=True)
def test_a_message_created_through_the_bridge_is_answered():
    """The production path: the request commits, the turn runs in a background thread of the
    in-process task runner, the reply is read back through the bridge."""
    from django_ai.conversations.testing import wait_for_turns, wait_until

    user = UserFactory()
    session = SessionFactory(user=user)
    api = user_api(user)
    with ai(IN_PROCESS_TURN_THREADS=2):
        response = api.create("message", {"session": str(session.pk), "content": "ping"})
        assert response.status_code == 201, response.json()
        pk = response.json()["data"]
        wait_for_turns(15)
    reply = wait_until(
        lambda: rows(api.query("message", {"filter": {"reply_to": pk, "message_type": "agent"}}), "message"), 10
    )
    assert reply[0]["content"] == "echo: ping" and reply[0]["processing_status"] == "completed"
    assert rows(api.query("message", {"filter": {"id": pk}}), "message")[0]["processing_status"] == "completed"
