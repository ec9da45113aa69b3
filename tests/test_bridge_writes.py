"""Writes over HTTP: creating, updating and deleting rows of the built-in models (what each may
change, forced values, validation per field), hooks, and the turn a created message starts.

Real parts: the database and its commits, the test client, the in-process turn runner.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from django_ai.conversations.bridge import expose
from django_ai.conversations.bridge.permissions import AllowAny
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

from .bridge_support import (  # noqa: F401
    RejectAgent,
    ai,
    anonymous_api,
    echo_agent,
    error_codes,
    error_fields,
    fresh_bridge,
    rows,
    user_api,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]


class TestWrites:
    def test_create_user_message_forces_type_and_status(self, django_capture_on_commit_callbacks, events):
        user = UserFactory()
        session = SessionFactory(user=user)
        f = FileFactory(user=user, text="notes")  # extracted: the turn does not wait for it
        api = user_api(user)
        with django_capture_on_commit_callbacks(execute=True):
            response = api.create(
                "message",
                {"session": str(session.pk), "content": "    Hello\n", "files": [str(f.pk)]},
                HTTP_X_OPERATION_ID="op-1",
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
        file_changes = [
            p for p in events.of(EventName.MODEL_CHANGE) if p["model"] == "file" and p["pks"] == [str(f.pk)]
        ]
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
        response = api.update("session", session.pk, {"status": "deleted"})
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


class TestHooks:
    """Hooks run inside the write's transaction."""

    def test_a_hook_refusing_rolls_the_write_back(self):
        from django_ai.conversations.exceptions import ConversationError

        def refuse(*, operation, instance, request, phase):
            if phase == "after" and instance.name == "forbidden":
                raise ConversationError("Not that name.", code="name_refused", field="name")

        expose(
            Group,
            name="group",
            permission_classes=[AllowAny],
            read_fields=["name"],
            create_fields=["name"],
            hooks=[refuse],
        )
        response = anonymous_api().create("group", {"name": "forbidden"})
        assert response.status_code == 400 and error_codes(response) == ["name_refused"]
        assert not Group.objects.filter(name="forbidden").exists()


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
