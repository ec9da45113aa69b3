"""Managing conversations through the bridge: rename, archive and unarchive, delete (soft), and what
follows a delete: the conversation and everything in it are 404 for its owner on every path, its
running turn is cancelled, staff restore it in the admin, ``purge_conversations`` removes it.

Real parts: the bridge's views over Django's test client, the realtime auth and SSE endpoints, the
AI SDK endpoints, the admin with a logged-in superuser, the management command, files stored in a
real (temporary) media folder, turns run by the in-process task runner (the cancel test).
"""

from __future__ import annotations

import datetime
import json
import os
import uuid
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.utils import timezone

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import EventName, MessageType, ProcessingStatus, SessionStatus
from django_ai.conversations.exceptions import FileNotFound, SessionNotActive, SessionNotFound
from django_ai.conversations.models import ConversationMessage, ConversationSession, ConversationWidget, File
from django_ai.conversations.realtime import reset_backend
from django_ai.conversations.realtime.channels import owner_channel, session_channel
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import capture_events, isolated_registry, wait_for_turns, wait_until
from django_ai.conversations.testing.factories import (
    FileFactory,
    MessageFactory,
    SessionFactory,
    UserFactory,
    WidgetFactory,
)
from django_ai.conversations.turns.runner import process_pending

from .bridge_support import API, ai, error_codes, error_fields, fresh_bridge, rows, user_api  # noqa: F401
from .turns_support import IMMEDIATE, SlowStreamAgent, ai_settings, post, reply_to, status_of

REALTIME_AUTH = API + "realtime/auth/"
REALTIME_EVENTS = API + "realtime/events/"
CHAT = API + "ai-sdk/chat/"


class Echo(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        return f"echo: {message}"


@pytest.fixture
def alice(fresh_bridge):
    register_agent("test-agent", Echo)
    user = UserFactory(username="alice")
    return user, user_api(user)


def _conversation(user, **fields):
    """A conversation with a question, its answer (the agent's), a widget and a file."""
    session = SessionFactory(user=user, title=fields.pop("title", "Trip to Lisbon"), **fields)
    question = MessageFactory(session=session, content="Where should we eat?")
    answer = MessageFactory(session=session, message_type=MessageType.AGENT, content="Try Ramiro.", reply_to=question)
    widget = WidgetFactory(session=session)
    upload = FileFactory(user=user, session=session, content=b"menu")
    return session, question, answer, widget, upload


def _session_ids(api, **query):
    return [row["id"] for row in rows(api.query("session", query), "session")]


# Rename


@pytest.mark.django_db
def test_the_owner_renames_a_conversation(alice):
    user, api = alice
    session = SessionFactory(user=user, title="old")
    response = api.update("session", session.pk, {"title": "Holidays 2027"})
    assert response.status_code == 200, response.json()
    session.refresh_from_db()
    assert session.title == "Holidays 2027"
    # Blank is allowed: the conversation goes back to untitled.
    assert api.update("session", session.pk, {"title": ""}).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "title",
    ["x" * 201, "bad\x00title", 42, None, ["a"], {"t": "a"}],
    ids=["too-long", "nul", "number", "null", "list", "object"],
)
def test_a_bad_title_is_400_and_the_old_one_stays(alice, title):
    user, api = alice
    session = SessionFactory(user=user, title="kept")
    response = api.update("session", session.pk, {"title": title})
    assert response.status_code == 400, response.json()
    assert error_fields(response) == ["title"]
    session.refresh_from_db()
    assert session.title == "kept"


@pytest.mark.django_db
def test_another_owners_conversation_cannot_be_renamed(alice):
    _, api = alice
    theirs = SessionFactory(user=UserFactory(), title="theirs")
    response = api.update("session", theirs.pk, {"title": "mine now"})
    assert response.status_code == 404 and error_codes(response) == ["not_found"]
    theirs.refresh_from_db()
    assert theirs.title == "theirs"


# Archive, unarchive


@pytest.mark.django_db
def test_archive_then_unarchive(alice):
    user, api = alice
    session = SessionFactory(user=user)
    response = api.update("session", session.pk, {"status": "archived"})
    assert (
        response.status_code == 200 and response.json()["included"]["session"][str(session.pk)]["status"] == "archived"
    )
    # An archived conversation takes no message...
    refused = api.create("message", {"session": str(session.pk), "content": "hello?"})
    assert refused.status_code == 409 and error_codes(refused) == ["session_not_active"]
    # ... until its owner unarchives it.
    response = api.update("session", session.pk, {"status": "active"})
    assert response.status_code == 200, response.json()
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE
    assert api.create("message", {"session": str(session.pk), "content": "hello"}).status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("current", "wanted"),
    [
        (SessionStatus.ACTIVE, "deleted"),
        (SessionStatus.ARCHIVED, "deleted"),
        (SessionStatus.ACTIVE, "completed"),
        (SessionStatus.COMPLETED, "active"),
        (SessionStatus.COMPLETED, "archived"),
    ],
)
def test_status_changes_an_owner_may_not_make_are_400_invalid_status(alice, current, wanted):
    user, api = alice
    session = SessionFactory(user=user, status=current)
    response = api.update("session", session.pk, {"status": wanted})
    assert response.status_code == 400, response.json()
    assert error_codes(response) == ["invalid_status"] and error_fields(response) == ["status"]
    session.refresh_from_db()
    assert session.status == current and session.deleted_at is None


# Delete


@pytest.mark.django_db
def test_delete_is_soft_and_tells_the_owner_channel(alice, events, django_capture_on_commit_callbacks):
    user, api = alice
    session, *_ = _conversation(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete("session", session.pk)
    assert response.status_code == 204
    session.refresh_from_db()
    assert session.status == SessionStatus.DELETED
    assert session.deleted_at is not None and timezone.now() - session.deleted_at < datetime.timedelta(minutes=1)
    assert ConversationMessage.objects.filter(session=session).count() == 3  # nothing is lost yet
    changes = events.of(EventName.MODEL_CHANGE, channel=owner_channel(user_id=user.pk))
    assert [(c["model"], c["operation"], c["pks"]) for c in changes] == [("session", "update", [str(session.pk)])]


@pytest.mark.django_db
def test_a_deleted_conversation_is_404_on_every_bridge_path(alice):
    user, api = alice
    session, question, answer, widget, upload = _conversation(user)
    kept, *_ = _conversation(user, title="Kept")
    loose = FileFactory(user=user, session=None, content=b"not in a conversation")
    assert api.delete("session", session.pk).status_code == 204

    # Lists: gone, the other conversation (and a file in none) stay.
    assert _session_ids(api) == [str(kept.pk)]
    assert _session_ids(api, filter={"id": str(session.pk)}) == []
    assert _session_ids(api, filter={"status": "deleted"}) == []
    assert rows(api.query("message", {"filter": {"session": str(session.pk)}}), "message") == []
    assert rows(api.query("message", {"filter": {"id__in": [str(question.pk), str(answer.pk)]}}), "message") == []
    assert rows(api.query("widget", {"filter": {"session": str(session.pk)}}), "widget") == []
    file_ids = {row["id"] for row in rows(api.query("file"), "file")}
    assert str(upload.pk) not in file_ids and {str(loose.pk)} <= file_ids
    # A kept conversation's message does not lead to the deleted one through an include either.
    assert rows(api.query("message", {"filter": {"session": str(kept.pk)}}), "message")

    # Writes and row actions: 404, nothing changes.
    checks = [
        api.update("session", session.pk, {"title": "back?"}),
        api.update("session", session.pk, {"status": "active"}),
        api.delete("session", session.pk),
        api.update("widget", widget.pk, {"display_data": {"open": False}}),
        api.delete("file", upload.pk),
        api.post(f"models/message/{answer.pk}/feedback/", {"rating": "up"}),
        api.post(f"models/message/{question.pk}/regenerate/", {}),
        api.post("cancel/", {"session_id": str(session.pk)}),
    ]
    for response in checks:
        assert response.status_code == 404, response.json()
    created = api.create("message", {"session": str(session.pk), "content": "still there?"})
    assert created.status_code in (400, 404) and error_fields(created) == ["session"], created.json()
    assert ConversationMessage.objects.filter(session=session).count() == 3
    assert File.objects.filter(pk=upload.pk).exists()
    session.refresh_from_db()
    assert session.status == SessionStatus.DELETED and session.title == "Trip to Lisbon"

    # An upload into it: 404, as for a conversation that does not exist.
    response = api.client.post(API + "files/", {"file": _upload("notes.txt"), "session": str(session.pk)})
    assert response.status_code == 404 and error_codes(response) == ["session_not_found"]


@pytest.mark.django_db
def test_a_file_another_conversation_also_names_stays_readable_there_after_a_delete(alice):
    user, api = alice
    deleted, question, _, _, shared = _conversation(user)
    question.files.set([shared])
    kept = SessionFactory(user=user, title="Kept", agent_path="test-agent")
    also = MessageFactory(session=kept, content="the same menu")
    also.files.set([shared])
    assert api.delete("session", deleted.pk).status_code == 204

    shared.refresh_from_db()
    assert shared.session_id == kept.pk
    found = rows(api.query("file", {"filter": {"session": str(kept.pk)}}), "file")
    assert [row["id"] for row in found] == [str(shared.pk)]
    # The deleted conversation's own message still names it, and is still missing.
    assert list(question.files.all()) == [shared]
    assert rows(api.query("message", {"filter": {"id": str(question.pk)}}), "message") == []


def _upload(name: str):
    return SimpleUploadedFile(name, b"some notes\n", content_type="text/plain")


@pytest.mark.django_db
def test_a_deleted_conversation_is_404_for_the_python_api(alice):
    user, _ = alice
    session, *_ = _conversation(user)
    session.status, session.deleted_at = SessionStatus.DELETED, timezone.now()
    session.save()
    with pytest.raises(SessionNotFound):
        ConversationService.get_session(session.pk, user=user)
    with pytest.raises(SessionNotFound) as caught:
        ConversationService.send_message(session.pk, "hello", user=user)
    assert caught.value.status_code == 404
    with pytest.raises(SessionNotFound):
        ConversationService.cancel_turn(session.pk, user=user)
    # Server code (no user, no request) still reaches it, and may not talk in it.
    assert ConversationService.get_session(session.pk) == session
    with pytest.raises(SessionNotActive):
        ConversationService.send_message(session.pk, "hello")
    assert ConversationMessage.objects.filter(session=session, content="hello").count() == 0


@pytest.mark.django_db
def test_a_deleted_conversations_file_cannot_be_attached_elsewhere_through_the_python_api(alice):
    user, api = alice
    deleted, _, _, _, upload = _conversation(user)
    other = SessionFactory(user=user, agent_path="test-agent")
    ConversationSession.objects.filter(pk=deleted.pk).update(status=SessionStatus.DELETED, deleted_at=timezone.now())
    # As on the bridge, where the file is missing too.
    created = api.create("message", {"session": str(other.pk), "content": "see", "files": [str(upload.pk)]})
    assert created.status_code == 400 and error_fields(created) == ["files"], created.json()
    with pytest.raises(FileNotFound) as caught:
        ConversationService.send_message(other.pk, "see the menu", files=[upload.pk], user=user)
    assert caught.value.status_code == 404
    assert not ConversationMessage.objects.filter(session=other).exists()


@pytest.mark.django_db
def test_a_deleted_conversation_is_404_for_realtime_auth_and_the_event_stream(fresh_bridge):
    session = SessionFactory(status=SessionStatus.DELETED, deleted_at=timezone.now())
    header = {"HTTP_X_CONVERSATION_ANONYMOUS_ID": session.anonymous_id}
    body = {"socket_id": "123.456", "channel_name": session_channel(session.pk)}
    pusher = {"APP_ID": "1", "KEY": "k", "SECRET": "s", "HOST": "127.0.0.1", "PORT": 9, "SCHEME": "http"}
    try:
        with override_settings(DJANGO_AI={"PUSHER": pusher}):
            reset_backend()
            response = Client().post(REALTIME_AUTH, body, **header)
            assert response.status_code == 404 and error_codes(response) == ["session_not_found"]
        with override_settings(DJANGO_AI={"REALTIME_BACKEND": "django_ai.conversations.realtime.local.LocalBackend"}):
            reset_backend()
            response = Client().get(REALTIME_EVENTS, {"channel": session_channel(session.pk)}, **header)
            assert response.status_code == 404 and error_codes(response) == ["session_not_found"]
            # Restored, the same requests are allowed again: the refusal was the deletion.
            session.status, session.deleted_at = SessionStatus.ACTIVE, None
            session.save()
            allowed = Client().post(REALTIME_AUTH, body, **header)
            assert allowed.status_code == 200, allowed.json()
    finally:
        reset_backend()


@pytest.mark.django_db
def test_a_deleted_conversation_is_404_for_the_ai_sdk_endpoints(fresh_bridge):
    session = SessionFactory(status=SessionStatus.DELETED, deleted_at=timezone.now())
    header = {"HTTP_X_CONVERSATION_ANONYMOUS_ID": session.anonymous_id}
    client = Client()
    chat = {
        "id": str(session.pk),
        "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
        "trigger": "submit-message",
    }
    assert client.post(CHAT, json.dumps(chat), content_type="application/json", **header).status_code == 404
    assert client.get(f"{CHAT}{session.pk}/stream/", **header).status_code == 404
    assert client.get(f"{CHAT}{session.pk}/messages/", **header).status_code == 404
    assert not ConversationMessage.objects.filter(session=session).exists()


@pytest.mark.django_db
def test_another_owner_cannot_delete_a_conversation(alice):
    _, api = alice
    theirs = SessionFactory(user=UserFactory())
    response = api.delete("session", theirs.pk)
    assert response.status_code == 404
    assert api.delete("session", uuid.uuid4()).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == SessionStatus.ACTIVE and theirs.deleted_at is None


@pytest.mark.django_db(transaction=True)
def test_deleting_cancels_the_running_turn_and_the_waiting_messages():
    user = UserFactory()
    api = user_api(user)
    with (
        isolated_registry({"slow": SlowStreamAgent}),
        override_settings(TASKS=IMMEDIATE),
        ai_settings(IN_PROCESS_TURN_THREADS=2),
    ):
        session = ConversationService.create_session("slow", user=user)
        running = post(session, "slow 30")
        wait_until(lambda: status_of(running) == ProcessingStatus.PROCESSING, 10)
        wait_until(lambda: reply_to(running) is not None, 10)
        waiting = post(session, "slow 0")
        assert api.delete("session", session.pk).status_code == 204
        # Not the 30 s the turn would take.
        wait_until(lambda: status_of(running) == ProcessingStatus.CANCELLED, 20)
        wait_for_turns(20)
        assert status_of(waiting) == ProcessingStatus.CANCELLED
        assert reply_to(waiting) is None  # it never started
        partial = reply_to(running)
        assert partial.processing_status == ProcessingStatus.CANCELLED and partial.content.startswith("working")
        session.refresh_from_db()
        # The turn's end did not bring the conversation back.
        assert session.status == SessionStatus.DELETED and session.turn_token == ""


@pytest.mark.django_db
def test_a_message_left_waiting_in_a_deleted_conversation_never_starts(alice):
    # A message sent at the moment its conversation is deleted can commit after the delete's
    # cancel: its turn, when it comes, finds the conversation deleted and does not run the agent.
    user, _ = alice
    session = SessionFactory(user=user, agent_path="test-agent")
    waiting = MessageFactory(session=session, content="hello?", processing_status=ProcessingStatus.PENDING)
    ConversationSession.objects.filter(pk=session.pk).update(status=SessionStatus.DELETED, deleted_at=timezone.now())
    process_pending(session.pk)
    assert status_of(waiting) == ProcessingStatus.CANCELLED
    assert list(ConversationMessage.objects.filter(session=session).values_list("pk", flat=True)) == [waiting.pk]


# Restore (admin), purge


@pytest.fixture
def admin_client(fresh_bridge):
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    return client


CHANGELIST = "/admin/django_ai_conversations/conversationsession/"


@pytest.mark.django_db
def test_staff_see_deleted_conversations_and_restore_them_in_the_admin(alice, admin_client):
    user, api = alice
    session, *_ = _conversation(user)
    active = SessionFactory(user=user, title="Still active")
    assert api.delete("session", session.pk).status_code == 204

    listing = admin_client.get(CHANGELIST, {"status__exact": "deleted"})
    assert listing.status_code == 200
    assert str(session.pk)[:8] in listing.content.decode() and str(active.pk)[:8] not in listing.content.decode()
    change = admin_client.get(f"{CHANGELIST}{session.pk}/change/")
    assert change.status_code == 200 and "deleted at" in change.content.decode().lower()

    response = admin_client.post(
        CHANGELIST,
        {"action": "restore_deleted", "_selected_action": [str(session.pk), str(active.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "1 conversation(s) restored." in response.content.decode()
    session.refresh_from_db()
    assert session.status == SessionStatus.ACTIVE and session.deleted_at is None
    # Its owner has it back, with everything in it.
    assert str(session.pk) in _session_ids(api)
    assert len(rows(api.query("message", {"filter": {"session": str(session.pk)}}), "message")) == 3


@pytest.mark.django_db
def test_deleting_in_the_admins_form_dates_it(admin_client):
    session = SessionFactory(user=UserFactory(), title="by staff")
    page = admin_client.get(f"{CHANGELIST}{session.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data["status"] = "deleted"
    response = admin_client.post(f"{CHANGELIST}{session.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    session.refresh_from_db()
    assert session.status == SessionStatus.DELETED and session.deleted_at is not None


def _deleted_days_ago(user, days: float, title: str):
    session, question, answer, widget, upload = _conversation(user, title=title)
    ConversationSession.objects.filter(pk=session.pk).update(
        status=SessionStatus.DELETED, deleted_at=timezone.now() - datetime.timedelta(days=days)
    )
    return session, upload


@pytest.mark.django_db
def test_purge_removes_conversations_deleted_long_ago_with_their_files_bytes(
    fresh_bridge, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    user = UserFactory()
    old, old_file = _deleted_days_ago(user, 40, "old")
    recent, recent_file = _deleted_days_ago(user, 3, "recent")
    active, *_ = _conversation(user, title="active")
    stored = old_file.file.path
    assert (tmp_path / old_file.file.name).exists()

    out = StringIO()
    call_command("purge_conversations", "--dry-run", stdout=out)
    assert out.getvalue().strip() == (
        "Would purge 1 conversations, 3 messages, 1 widgets, 1 files (deleted more than 30 days ago)."
    )
    assert ConversationSession.objects.filter(pk=old.pk).exists() and (tmp_path / old_file.file.name).exists()

    out = StringIO()
    # The bytes go once the rows are committed; and no model_change goes out for rows nobody can
    # see (one per purged message, widget and file would only load the realtime backend).
    with capture_events() as events, django_capture_on_commit_callbacks(execute=True):
        call_command("purge_conversations", stdout=out)
    assert events.of(EventName.MODEL_CHANGE) == []
    assert "Purged 1 conversations, 3 messages, 1 widgets, 1 files" in out.getvalue()
    assert not ConversationSession.objects.filter(pk=old.pk).exists()
    assert not ConversationMessage.objects.filter(session_id=old.pk).exists()
    assert not ConversationWidget.objects.filter(session_id=old.pk).exists()
    assert not File.objects.filter(pk=old_file.pk).exists()
    assert not os.path.exists(stored)
    # Within the retention period, and not deleted: untouched.
    assert ConversationSession.objects.filter(pk__in=[recent.pk, active.pk]).count() == 2
    assert os.path.exists(recent_file.file.path)

    out = StringIO()
    call_command("purge_conversations", "--days", "2", stdout=out)
    assert "Purged 1 conversations" in out.getvalue()
    assert not ConversationSession.objects.filter(pk=recent.pk).exists()
    assert ConversationSession.objects.filter(pk=active.pk).exists()


@pytest.mark.django_db
def test_purge_keeps_a_file_that_a_message_of_another_conversation_names(
    alice, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    user, api = alice
    old, _, _, _, shared = _conversation(user, title="old")
    kept = SessionFactory(user=user, title="kept", agent_path="test-agent")
    also = MessageFactory(session=kept, content="the same menu")
    also.files.set([shared])
    ConversationSession.objects.filter(pk=old.pk).update(
        status=SessionStatus.DELETED, deleted_at=timezone.now() - datetime.timedelta(days=40)
    )

    out = StringIO()
    call_command("purge_conversations", "--dry-run", stdout=out)
    assert "1 conversations, 3 messages, 1 widgets, 0 files" in out.getvalue()
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_conversations", stdout=out)
    assert "Purged 1 conversations, 3 messages, 1 widgets, 0 files" in out.getvalue()
    assert not ConversationSession.objects.filter(pk=old.pk).exists()
    # The other conversation's message still has it, bytes included, and its owner reads it there.
    assert list(also.files.all()) == [shared]
    shared.refresh_from_db()
    assert shared.session_id == kept.pk and os.path.exists(shared.file.path)
    assert [row["id"] for row in rows(api.query("file", {"filter": {"session": str(kept.pk)}}), "file")] == [
        str(shared.pk)
    ]


@pytest.mark.django_db
def test_purge_uses_the_retention_setting_and_refuses_negative_days(fresh_bridge, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    old, _ = _deleted_days_ago(UserFactory(), 10, "ten days")
    out = StringIO()
    call_command("purge_conversations", stdout=out)
    assert out.getvalue().startswith("Purged 0 conversations")
    with ai(DELETED_CONVERSATION_RETENTION_DAYS=7):
        out = StringIO()
        call_command("purge_conversations", stdout=out)
    assert "Purged 1 conversations" in out.getvalue()
    assert not ConversationSession.objects.filter(pk=old.pk).exists()
    with pytest.raises(CommandError, match="--days"):
        call_command("purge_conversations", "--days", "-1")
