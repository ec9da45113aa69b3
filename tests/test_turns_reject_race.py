"""Ten messages posted at the same moment to an idle conversation whose agent's policy is
``reject``: exactly one is accepted, the nine others are refused with ``TurnInProgress`` (409
through the bridge), and nothing of theirs is written.

What makes it hold: the policy's check and the message's insert run in one transaction that locks
the session's row first, so the posters are checked one after the other and each sees the
messages the earlier ones committed.

PostgreSQL (READ COMMITTED, row locks): ``SELECT ... FOR UPDATE`` on the session; a poster waits
for the lock, then its check reads the committed rows of the poster before it.
SQLite (no row locks): the policy writes the session's row, which takes the database's write lock
until the commit (the demo settings' ``transaction_mode="IMMEDIATE"`` takes it at BEGIN already);
the posters wait for it (busy timeout) and then see the committed message. Both run here.
(Without the lock both tests fail on PostgreSQL; on SQLite the ``send_message`` one fails, while
the bridge's already ran its check inside its IMMEDIATE transaction. With ``transaction_mode``
DEFERRED it fails too.)
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import override_settings

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.exceptions import TurnInProgress
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import isolated_registry, wait_for_turns, wait_until
from django_ai.conversations.testing.factories import UserFactory

from .bridge_support import error_codes, user_api
from .test_turns_queue import IMMEDIATE
from .turns_support import Background, ai_settings

N = 10
#: Opened by the tests once every poster has been answered: the accepted turn then ends.
GATE = threading.Event()


class HeldRejectingAgent(ConversationAgent):
    """Refuses messages while a turn runs; its turn lasts until GATE opens."""

    concurrency = "reject"

    def get_response(self, message, request=None, **kwargs):
        if not GATE.wait(30):
            raise RuntimeError("GATE was never opened")
        return f"accepted {message}"


@pytest.fixture(autouse=True)
def _setup():
    GATE.clear()
    with isolated_registry({"held-reject": HeldRejectingAgent}), override_settings(TASKS=IMMEDIATE), ai_settings(
        IN_PROCESS_TURN_THREADS=2
    ):
        yield
        GATE.set()
        wait_for_turns(20)


def _at_once(send, warm=None) -> list[Background]:
    """Start N threads with their own connections that call ``send(i)`` at the same moment
    (after ``warm(i)``, if given)."""
    barrier = threading.Barrier(N)

    def poster(i: int) -> Background:
        def run():
            connection.ensure_connection()  # connect first: the race is the check, not the connect
            if warm is not None:
                warm(i)
            barrier.wait(10)
            return send(i)

        return Background(run, name=f"poster-{i}")

    posters = [poster(i) for i in range(N)]
    for thread in posters:
        thread.start()
    return posters


def _user_messages(session) -> list[ConversationMessage]:
    return list(ConversationMessage.objects.filter(session=session, message_type=MessageType.USER))


def _assert_one_accepted_and_answered(session, accepted_text: str) -> None:
    (message,) = _user_messages(session)
    assert message.content == accepted_text
    assert message.processing_status == ProcessingStatus.COMPLETED
    replies = ConversationMessage.objects.filter(session=session).exclude(message_type=MessageType.USER)
    assert [(r.message_type, r.content, r.reply_to_id) for r in replies] == [
        (MessageType.AGENT, f"accepted {accepted_text}", message.pk)
    ]
    session.refresh_from_db()
    assert session.turn_token == "" and session.active_turn is None


@pytest.mark.django_db(transaction=True)
def test_simultaneous_send_message_calls_accept_exactly_one():
    session = ConversationService.create_session("held-reject")
    posters = _at_once(lambda i: ConversationService.send_message(session.pk, f"m{i}"))
    # The accepted poster answers its message inline and waits for GATE; the others return.
    wait_until(
        lambda: sum(not t.is_alive() for t in posters) + len(_user_messages(session)) >= N,
        20,
        message="the posters neither returned nor saved their messages",
    )
    refused = [t for t in posters if not t.is_alive()]
    assert all(isinstance(t.error, TurnInProgress) for t in refused), [t.error for t in refused]
    assert len(refused) == N - 1, f"{N - len(refused)} messages were accepted at once"
    assert len(_user_messages(session)) == 1

    GATE.set()
    (accepted,) = [t for t in posters if t not in refused]
    result = accepted.outcome(30)
    assert result["status"] == "success"
    _assert_one_accepted_and_answered(session, result["response"].removeprefix("accepted "))


@pytest.mark.django_db(transaction=True)
def test_simultaneous_bridge_posts_get_one_201_and_409s():
    user = UserFactory()
    session = ConversationSession.objects.create(agent_path="held-reject", user=user)
    apis = [user_api(user) for _ in range(N)]
    posters = _at_once(
        lambda i: apis[i].create("message", {"session": str(session.pk), "content": f"m{i}"}),
        warm=lambda i: apis[i].query("session"),  # the first request of a client does more work
    )
    responses = [t.outcome(30) for t in posters]  # the turn runs in a background thread

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (N - 1), statuses
    for response in responses:
        if response.status_code == 409:
            assert error_codes(response) == ["turn_in_progress"]
    (created,) = [r for r in responses if r.status_code == 201]
    body = created.json()
    accepted_text = body["included"]["message"][body["data"]]["content"]
    assert [m.content for m in _user_messages(session)] == [accepted_text]

    GATE.set()
    wait_for_turns(20)
    _assert_one_accepted_and_answered(session, accepted_text)
