"""Feedback on agent replies: ``POST models/message/<pk>/feedback/`` and
``ConversationService.give_feedback``: thumbs up or down with an optional comment, withdrawn with
null; the ``message_feedback`` signal once it commits; the admin's "Feedback" filter.

Real parts: the bridge's views over Django's test client, the database, Django's signals and
on-commit callbacks, the admin with a logged-in superuser.
"""

from __future__ import annotations

import pytest
from django.test import Client

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import MessageType, SessionStatus
from django_ai.conversations.exceptions import InvalidInput, MessageNotFound
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.signals import message_feedback
from django_ai.conversations.testing.factories import MessageFactory, SessionFactory, UserFactory

from .bridge_support import anonymous_api, error_codes, error_fields, fresh_bridge, user_api  # noqa: F401


class Helper(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        return "ok"


@pytest.fixture
def reply(fresh_bridge):
    """Alice's conversation (agent "helper") with a question and the agent's reply; her client."""
    register_agent("helper", Helper)
    user = UserFactory(username="alice")
    session = SessionFactory(user=user, agent_path="helper")
    question = MessageFactory(session=session, content="What time is it?")
    answer = MessageFactory(session=session, message_type=MessageType.AGENT, content="Noon.", reply_to=question)
    return {"user": user, "api": user_api(user), "session": session, "question": question, "answer": answer}


@pytest.fixture
def received():
    calls = []

    def receiver(sender, **kwargs):
        calls.append({"sender": sender, **kwargs})

    message_feedback.connect(receiver, dispatch_uid="test-feedback-receiver")
    yield calls
    message_feedback.disconnect(dispatch_uid="test-feedback-receiver")


def _feedback(api, message, body):
    return api.post(f"models/message/{message.pk}/feedback/", body)


def _stored(message):
    return ConversationMessage.objects.values("feedback", "feedback_comment", "feedback_at").get(pk=message.pk)


@pytest.mark.django_db
def test_up_down_and_withdraw(reply, django_capture_on_commit_callbacks):
    api, answer = reply["api"], reply["answer"]
    with django_capture_on_commit_callbacks(execute=True):
        response = _feedback(api, answer, {"rating": "up", "comment": "  Spot on.  "})
    assert response.status_code == 200, response.json()
    row = response.json()["included"]["message"][str(answer.pk)]
    assert (row["feedback"], row["feedback_comment"]) == ("up", "Spot on.")
    first = _stored(answer)
    assert first["feedback"] == "up" and first["feedback_at"] is not None

    response = _feedback(api, answer, {"rating": "down"})
    assert response.status_code == 200
    assert _stored(answer)["feedback"] == "down" and _stored(answer)["feedback_comment"] == ""

    # Withdrawn: the comment goes with it, even one sent along.
    response = _feedback(api, answer, {"rating": None, "comment": "ignored"})
    assert response.status_code == 200
    assert _stored(answer) == {"feedback": "", "feedback_comment": "", "feedback_at": None}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "rating", "required"),
        ({"comment": "no rating"}, "rating", "required"),
        ({"rating": "meh"}, "rating", "invalid"),
        ({"rating": "UP"}, "rating", "invalid"),
        ({"rating": 1}, "rating", "invalid"),
        ({"rating": True}, "rating", "invalid"),
        ({"rating": ["up"]}, "rating", "invalid"),
        ({"rating": "up", "comment": "x" * 2001}, "comment", "invalid"),
        ({"rating": "up", "comment": "a\x00b"}, "comment", "invalid"),
        ({"rating": "up", "comment": 5}, "comment", "invalid"),
        ({"rating": "up", "stars": 5}, "stars", "unknown_key"),
    ],
)
def test_bad_bodies_are_400_and_keep_the_rating(reply, body, field, code):
    api, answer = reply["api"], reply["answer"]
    assert _feedback(api, answer, {"rating": "up", "comment": "kept"}).status_code == 200
    response = _feedback(api, answer, body)
    assert response.status_code == 400, response.json()
    assert error_codes(response) == [code] and error_fields(response) == [field]
    assert _stored(answer)["feedback"] == "up" and _stored(answer)["feedback_comment"] == "kept"


@pytest.mark.django_db
def test_a_comment_of_exactly_the_limit_is_kept(reply):
    response = _feedback(reply["api"], reply["answer"], {"rating": "down", "comment": "y" * 2000})
    assert response.status_code == 200
    assert _stored(reply["answer"])["feedback_comment"] == "y" * 2000


@pytest.mark.django_db
@pytest.mark.parametrize("message_type", [MessageType.USER, MessageType.SYSTEM, MessageType.TOOL, MessageType.WIDGET])
def test_only_an_agent_reply_can_be_rated(reply, message_type):
    row = MessageFactory(session=reply["session"], message_type=message_type, content="not a reply")
    response = _feedback(reply["api"], row, {"rating": "up"})
    assert response.status_code == 400 and error_codes(response) == ["not_an_agent_reply"]
    assert _stored(row)["feedback"] == ""


@pytest.mark.django_db
def test_another_owners_reply_is_404(reply):
    answer = reply["answer"]
    for intruder in (user_api(UserFactory()), anonymous_api()):
        response = _feedback(intruder, answer, {"rating": "down"})
        assert response.status_code == 404 and error_codes(response) == ["not_found"]
    assert _stored(answer)["feedback"] == ""
    with pytest.raises(MessageNotFound):
        ConversationService.give_feedback(answer.pk, "down", user=UserFactory())


@pytest.mark.django_db
def test_a_reply_in_a_deleted_conversation_is_404(reply):
    session = reply["session"]
    session.status = SessionStatus.DELETED
    session.save()
    assert _feedback(reply["api"], reply["answer"], {"rating": "up"}).status_code == 404
    with pytest.raises(MessageNotFound):
        ConversationService.give_feedback(reply["answer"].pk, "up", user=reply["user"])


@pytest.mark.django_db
def test_an_anonymous_visitor_rates_their_reply(fresh_bridge, received, django_capture_on_commit_callbacks):
    register_agent("helper", Helper)
    session = SessionFactory(agent_path="helper")
    answer = MessageFactory(session=session, message_type=MessageType.AGENT, content="hi")
    api = anonymous_api(session.anonymous_id)
    with django_capture_on_commit_callbacks(execute=True):
        assert _feedback(api, answer, {"rating": "up"}).status_code == 200
    assert len(received) == 1 and received[0]["user"] is None and received[0]["sender"] is Helper


@pytest.mark.django_db
def test_the_signal_is_sent_once_after_commit_with_its_kwargs(reply, received, django_capture_on_commit_callbacks):
    api, answer, user = reply["api"], reply["answer"], reply["user"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert _feedback(api, answer, {"rating": "down", "comment": "Wrong time zone."}).status_code == 200
    # Not before the commit...
    assert received == []
    for callback in callbacks:
        callback()
    # ... and once after it.
    assert len(received) == 1
    call = received[0]
    assert call["sender"] is Helper
    assert call["session"].pk == reply["session"].pk
    assert call["message"].pk == answer.pk and call["message"].feedback == "down"
    assert (call["rating"], call["comment"], call["user"]) == ("down", "Wrong time zone.", user)
    assert set(call) == {"sender", "signal", "session", "message", "rating", "comment", "user"}


@pytest.mark.django_db
def test_a_refused_rating_sends_no_signal(reply, received, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert _feedback(reply["api"], reply["answer"], {"rating": "sideways"}).status_code == 400
        assert _feedback(reply["api"], reply["question"], {"rating": "up"}).status_code == 400
    assert received == []


@pytest.mark.django_db
def test_the_sender_of_an_unregistered_agent_is_the_base_class(
    fresh_bridge, received, django_capture_on_commit_callbacks
):
    session = SessionFactory(agent_path="gone.Agent")
    answer = MessageFactory(session=session, message_type=MessageType.AGENT, content="hi")
    with django_capture_on_commit_callbacks(execute=True):
        ConversationService.give_feedback(answer.pk, None)
    assert [c["sender"] for c in received] == [ConversationAgent]
    assert received[0]["rating"] is None and received[0]["comment"] == ""


@pytest.mark.django_db
def test_give_feedback_from_python(reply, received, django_capture_on_commit_callbacks):
    answer, user = reply["answer"], reply["user"]
    with django_capture_on_commit_callbacks(execute=True):
        message = ConversationService.give_feedback(answer.pk, "up", "Thanks", user=user)
    assert message.pk == answer.pk and message.feedback == "up" and message.feedback_comment == "Thanks"
    assert [(c["rating"], c["comment"], c["user"]) for c in received] == [("up", "Thanks", user)]
    with pytest.raises(InvalidInput) as caught:
        ConversationService.give_feedback(reply["question"].pk, "up", user=user)
    assert caught.value.code == "not_an_agent_reply" and caught.value.status_code == 400
    with pytest.raises(InvalidInput) as caught:
        ConversationService.give_feedback(answer.pk, "up", "z" * 2001, user=user)
    assert caught.value.field == "comment"
    with pytest.raises(MessageNotFound):
        ConversationService.give_feedback("not-a-uuid", "up", user=user)
    assert _stored(answer)["feedback_comment"] == "Thanks"


@pytest.mark.django_db
def test_the_admin_lists_replies_by_feedback(reply):
    session = reply["session"]
    up = reply["answer"]
    ConversationService.give_feedback(up.pk, "up", "Great answer")
    down = MessageFactory(session=session, message_type=MessageType.AGENT, content="Later reply")
    ConversationService.give_feedback(down.pk, "down")
    unrated = MessageFactory(session=session, message_type=MessageType.AGENT, content="Unrated reply")
    staff = UserFactory(username="staff", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    changelist = "/admin/django_ai_conversations/conversationmessage/"

    def listed(value):
        response = client.get(changelist, {"feedback": value})
        assert response.status_code == 200
        html = response.content.decode()
        return {m.pk for m in (up, down, unrated, reply["question"]) if str(m.pk)[:8] in html}

    assert listed("up") == {up.pk}
    assert listed("down") == {down.pk}
    assert listed("rated") == {up.pk, down.pk}
    assert listed("none") == {unrated.pk}  # agent replies without a rating
    page = client.get(changelist).content.decode()
    assert "Feedback" in page or "feedback" in page
    change = client.get(f"{changelist}{up.pk}/change/").content.decode()
    assert "Great answer" in change
