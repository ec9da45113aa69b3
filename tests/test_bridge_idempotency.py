"""Message creates are idempotent on ``X-Operation-Id``: a client that did not get the answer to
its create (a dropped connection) sends the same request again and gets the message stored the
first time, not a second message and a second turn.

Real database and the bridge over Django's test client; the concurrent case runs requests from
separate threads with their own connections (on PostgreSQL too when DATABASE_URL is set).
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import override_settings

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import MessageType
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.testing import isolated_registry, wait_for_turns
from django_ai.conversations.testing.factories import FileFactory, SessionFactory, UserFactory

from .bridge_support import anonymous_api, echo_agent, error_codes, fresh_bridge, user_api  # noqa: F401
from .turns_support import IMMEDIATE, Background, ai_settings


def _op(value: str) -> dict[str, str]:
    return {"HTTP_X_OPERATION_ID": value}


def _created_id(response) -> str:
    return response.json()["data"]


def _user_messages(session) -> list[ConversationMessage]:
    return list(ConversationMessage.objects.filter(session=session, message_type=MessageType.USER))


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_bridge", "echo_agent")
class TestRetriedCreates:
    def test_the_same_request_again_gets_the_stored_message_and_no_second_turn(
        self, django_capture_on_commit_callbacks
    ):
        user = UserFactory()
        session = SessionFactory(user=user, agent_path="test-agent")
        api = user_api(user)
        body = {"session": str(session.pk), "content": "  Where is my order?  "}
        with django_capture_on_commit_callbacks(execute=True):
            first = api.create("message", body, **_op("op-1"))
        assert first.status_code == 201, first.content
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            again = api.create("message", body, **_op("op-1"))
        assert again.status_code == 200, again.content
        assert _created_id(again) == _created_id(first)
        assert callbacks == [], "a repeated request starts no turn and sends no event"
        assert [m.content for m in _user_messages(session)] == [body["content"]]
        replies = ConversationMessage.objects.filter(session=session, message_type=MessageType.AGENT)
        assert [r.reply_to_id for r in replies] == [_user_messages(session)[0].pk]

    def test_the_same_id_with_other_content_or_files_is_a_409_and_stores_nothing(self):
        user = UserFactory()
        session = SessionFactory(user=user, agent_path="test-agent")
        api = user_api(user)
        file = FileFactory(user=user, session=session)
        assert api.create("message", {"session": str(session.pk), "content": "one"}, **_op("op-2")).status_code == 201
        for body in (
            {"session": str(session.pk), "content": "two"},
            {"session": str(session.pk), "content": "one", "files": [str(file.pk)]},
        ):
            response = api.create("message", body, **_op("op-2"))
            assert response.status_code == 409, response.content
            assert error_codes(response) == ["operation_id_reused"]
        assert [m.content for m in _user_messages(session)] == ["one"]

    def test_ids_are_per_conversation_and_without_an_id_every_create_is_new(self):
        user = UserFactory()
        first, second = (
            SessionFactory(user=user, agent_path="test-agent"),
            SessionFactory(user=user, agent_path="test-agent"),
        )
        api = user_api(user)
        assert api.create("message", {"session": str(first.pk), "content": "hi"}, **_op("op-3")).status_code == 201
        assert api.create("message", {"session": str(second.pk), "content": "hi"}, **_op("op-3")).status_code == 201
        assert api.create("message", {"session": str(first.pk), "content": "hi"}).status_code == 201
        assert api.create("message", {"session": str(first.pk), "content": "hi"}).status_code == 201
        assert len(_user_messages(first)) == 3 and len(_user_messages(second)) == 1

    def test_another_visitor_learns_nothing_from_a_known_id(self):
        owner = anonymous_api()
        session_id = owner.post("start/", {"agent_path": "test-agent"}).json()["session_id"]
        assert owner.create("message", {"session": session_id, "content": "mine"}, **_op("op-4")).status_code == 201
        stranger = anonymous_api()
        with_id = stranger.create("message", {"session": session_id, "content": "mine"}, **_op("op-4"))
        without_id = stranger.create("message", {"session": session_id, "content": "mine"})
        # Refused exactly as without the id: no replay of the owner's row, no hint that it exists.
        assert with_id.status_code == without_id.status_code == 400
        assert with_id.json() == without_id.json()
        assert [m.content for m in _user_messages(ConversationSession.objects.get(pk=session_id))] == ["mine"]


N = 6


class SlowAgent(ConversationAgent):
    def get_response(self, message, request=None, **kwargs):
        return f"answered {message}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("policy", ["enqueue", "reject"])
def test_the_same_request_sent_at_once_from_several_connections_stores_one_message(policy):
    agent = type(f"Slow{policy.title()}", (SlowAgent,), {"concurrency": policy})
    with isolated_registry({"slow": agent}), override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=2):
        user = UserFactory()
        session = ConversationSession.objects.create(agent_path="slow", user=user)
        apis = [user_api(user) for _ in range(N)]
        barrier = threading.Barrier(N)

        def poster(i: int) -> Background:
            def run():
                connection.ensure_connection()
                apis[i].query("session")  # the first request of a client does more work
                barrier.wait(10)
                return apis[i].create("message", {"session": str(session.pk), "content": "once"}, **_op("op-same"))

            return Background(run, name=f"poster-{i}")

        posters = [poster(i) for i in range(N)]
        for thread in posters:
            thread.start()
        responses = [t.outcome(30) for t in posters]
        wait_for_turns(20)

        assert sorted(r.status_code for r in responses) == [200] * (N - 1) + [201], [r.content for r in responses]
        assert len({_created_id(r) for r in responses}) == 1
        (message,) = _user_messages(session)
        assert str(message.pk) == _created_id(responses[0])
        replies = ConversationMessage.objects.filter(session=session, message_type=MessageType.AGENT)
        assert [r.content for r in replies] == ["answered once"]
