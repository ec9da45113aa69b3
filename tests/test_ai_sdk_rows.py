"""A conversation's rows as the AI SDK's UIMessages (``GET ai-sdk/chat/<id>/messages/``): the parts
of a reply are its text cut by its tool steps and widgets at their ``text_offset`` (UTF-16 units),
tool steps in each of their states, files of user messages, the notice of a failed turn. The rows
are written as the turn writes them (docs/tools.md, "Tool steps"); the endpoint and the translator
that builds the parts are the real ones."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from django_ai.conversations.ai_sdk.rows import read_reply
from django_ai.conversations.constants import ExtractionStatus, MessageType, ProcessingStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession, File
from django_ai.conversations.realtime.coalescer import utf16_len
from django_ai.conversations.testing import MessageFactory, SessionFactory, WidgetFactory

API = "/api/conversations/"

pytestmark = pytest.mark.django_db


def step(session, user, call_id, name, offset, status, **data):
    return MessageFactory(
        session=session,
        message_type=MessageType.TOOL,
        reply_to=user,
        component_type=name,
        processing_status=status,
        component_data={
            "call_id": call_id,
            "name": name,
            "arguments": {"q": call_id},
            "round": 0,
            "index": 0,
            "text_offset": offset,
            "result": None,
            "error": None,
            "duration_ms": 3,
            "approval": None,
            **data,
        },
    )


@pytest.fixture
def visitor():
    client = Client()
    response = client.post(API + "start/", {"agent_path": "ai-sdk-test"}, content_type="application/json")
    assert response.status_code == 201
    return client, response.json()["session_id"]


def history(client, session_id):
    response = client.get(f"{API}ai-sdk/chat/{session_id}/messages/")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == session_id
    return response.json()["messages"]


def test_a_reply_is_its_text_cut_by_steps_and_widgets_where_they_happened(visitor):
    client, session_id = visitor
    session = ConversationSession.objects.get(pk=session_id)
    user = MessageFactory(session=session, content="find tea")
    first, middle, last = "Looking 😀 for tea. ", "Found: ", "two teas."
    MessageFactory(
        session=session,
        message_type=MessageType.AGENT,
        reply_to=user,
        content=first + middle + last,
        processing_status=ProcessingStatus.COMPLETED,
    )
    after_first = utf16_len(first)  # the emoji counts two units, as in JavaScript
    step(session, user, "call_a", "search", after_first, ProcessingStatus.COMPLETED, result={"n": 2})
    step(
        session,
        user,
        "call_b",
        "delete_all",
        after_first,
        ProcessingStatus.FAILED,
        error={"code": "tool_rejected", "message": "No."},
    )
    step(
        session,
        user,
        "call_c",
        "weather",
        after_first,
        ProcessingStatus.FAILED,
        error={"code": "tool_error", "message": "It broke."},
    )
    WidgetFactory(
        session=session,
        widget_type="list",
        data={"items": 2},
        message__reply_to=user,
        message__message_type=MessageType.WIDGET,
        message__text_offset=after_first + len(middle),
    )
    messages = history(client, session_id)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["parts"] == [{"type": "text", "text": "find tea"}]
    parts = messages[1]["parts"]
    assert [p["type"] for p in parts] == [
        "text",
        "tool-search",
        "tool-delete_all",
        "tool-weather",
        "text",
        "data-widget",
        "text",
    ]
    assert [p["text"] for p in parts if p["type"] == "text"] == [first, middle, last]
    assert all(p["state"] == "done" for p in parts if p["type"] == "text")
    search, rejected, broken = parts[1:4]
    assert search == {
        "type": "tool-search",
        "toolCallId": "call_a",
        "state": "output-available",
        "input": {"q": "call_a"},
        "output": {"n": 2},
    }
    assert rejected["state"] == "output-denied"
    assert broken["state"] == "output-error"
    assert broken["errorText"] == "It broke."
    assert parts[5]["data"]["widget_type"] == "list"
    assert parts[5]["data"]["data"] == {"items": 2}
    assert messages[1]["metadata"]["reply_to"] == str(user.pk)


def test_a_step_awaiting_approval_is_an_approval_request_named_by_its_row(visitor):
    client, session_id = visitor
    session = ConversationSession.objects.get(pk=session_id)
    user = MessageFactory(session=session, content="refund me", processing_status=ProcessingStatus.AWAITING_APPROVAL)
    row = step(
        session,
        user,
        "call_r",
        "refund",
        0,
        ProcessingStatus.AWAITING_APPROVAL,
        approval={"status": "pending", "reason": "", "answered_by": None, "answered_at": None, "expires_at": None},
    )
    parts = history(client, session_id)[1]["parts"]
    assert parts == [
        {
            "type": "tool-refund",
            "toolCallId": "call_r",
            "state": "approval-requested",
            "input": {"q": "call_r"},
            "approval": {"id": str(row.pk)},
        }
    ]
    # Nothing streams while the turn waits for the answer.
    assert client.get(f"{API}ai-sdk/chat/{session_id}/stream/").status_code == 204


def test_files_and_failed_turns(visitor):
    client, session_id = visitor
    session = ConversationSession.objects.get(pk=session_id)
    user = MessageFactory(session=session, content="read this", processing_status=ProcessingStatus.FAILED)
    upload = File.objects.create(
        anonymous_id=session.anonymous_id, session=session, filename="a.txt", content_type="text/plain", file="a.txt"
    )
    user.files.add(upload)
    MessageFactory(session=session, message_type=MessageType.SYSTEM, reply_to=user, content="Sorry, that failed.")
    messages = history(client, session_id)
    assert messages[0]["parts"] == [
        {"type": "file", "mediaType": "text/plain", "filename": "a.txt", "url": f"django-ai-file:{upload.pk}"},
        {"type": "text", "text": "read this"},
    ]
    assert messages[1]["parts"] == []
    assert messages[1]["metadata"]["error"] == "Sorry, that failed."


def test_a_rerun_reply_is_its_newest_answer_not_the_failed_attempt_before_it(visitor):
    """A failed message answered again (``rerun_messages``, crash recovery's retry) keeps its
    failed attempt's rows: the reply is the newest agent message, and the old notice is no
    error of a reply that then succeeded."""
    client, session_id = visitor
    session = ConversationSession.objects.get(pk=session_id)
    now = timezone.now()
    user = MessageFactory(session=session, content="hi", timestamp=now)
    MessageFactory(
        session=session,
        message_type=MessageType.AGENT,
        reply_to=user,
        content="Partial ",
        processing_status=ProcessingStatus.FAILED,
        timestamp=now + timedelta(seconds=1),
    )
    MessageFactory(
        session=session,
        message_type=MessageType.SYSTEM,
        reply_to=user,
        content="Sorry, that failed.",
        timestamp=now + timedelta(seconds=2),
    )
    again = MessageFactory(
        session=session,
        message_type=MessageType.AGENT,
        reply_to=user,
        content="Fine answer.",
        timestamp=now + timedelta(seconds=3),
    )
    messages = history(client, session_id)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["id"] == str(again.pk)
    assert messages[1]["parts"] == [{"type": "text", "text": "Fine answer.", "state": "done"}]
    assert "error" not in messages[1]["metadata"]
    # While the new attempt waits or runs, the failed one is not its text (a resumed stream
    # would cut the new text by the old one's length).
    again.delete()
    user.processing_status = ProcessingStatus.PENDING
    user.save()
    snapshot = read_reply(user.pk)
    assert (snapshot.agent_id, snapshot.text) == (None, "")


def test_another_visitors_history_is_404(visitor):
    _, session_id = visitor
    response = Client().get(f"{API}ai-sdk/chat/{session_id}/messages/")
    assert response.status_code == 404
    assert not ConversationMessage.objects.filter(session_id=session_id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_file_part_names_an_uploaded_file(visitor):
    """A user message's file part (``django-ai-file:<id>``) attaches the caller's upload; another
    visitor's file is refused as the bridge refuses it."""
    client, session_id = visitor
    session = ConversationSession.objects.get(pk=session_id)
    mine = File.objects.create(
        anonymous_id=session.anonymous_id, filename="m.txt", file="m.txt", extraction_status=ExtractionStatus.DONE
    )
    theirs = File.objects.create(anonymous_id=SessionFactory().anonymous_id, filename="t.txt", file="t.txt")

    def send(file_id):
        part = {"type": "file", "mediaType": "text/plain", "url": f"django-ai-file:{file_id}"}
        message = {"id": "x", "role": "user", "parts": [part, {"type": "text", "text": "plain ok"}]}
        body = {"id": session_id, "messages": [message], "trigger": "submit-message"}
        return client.post(f"{API}ai-sdk/chat/", body, content_type="application/json")

    refused = send(theirs.pk)
    assert refused.status_code == 400, refused.content
    assert not ConversationMessage.objects.filter(session_id=session_id).exists()
    response = send(mine.pk)
    assert response.status_code == 200
    assert b'"delta":"ok"' in b"".join(response.streaming_content)  # the reply, up to [DONE]
    response.close()
    user = ConversationMessage.objects.get(session_id=session_id, message_type=MessageType.USER)
    assert list(user.files.all()) == [mine]
