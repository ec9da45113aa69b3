import pytest
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.registry import register_agent, registry
from django_ai.conversations.service import ConversationService
from django_ai.conversations.models import ConversationMessage


class CountingAgent(ConversationAgent):
    class Context(BaseModel):
        n: int = 0

    async def get_response(self, message, request=None, **kwargs):
        self.context.n += 1
        with ResponseStream() as s:
            s.write("n=")
            s.write(str(self.context.n))
        return s.content


class SyncAgent(ConversationAgent):
    def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as s:
            s.write("sync:")
            s.write(message)
        return s.content


@pytest.mark.django_db
def test_turns(events):
    register_agent("counting", CountingAgent)
    register_agent("sync", SyncAgent)
    s = ConversationService.create_session("counting")
    r1 = ConversationService.send_message(s.id, "hi")
    r2 = ConversationService.send_message(s.id, "hi")
    assert r1["status"] == "success" and r1["response"] == "n=1"
    assert r2["response"] == "n=2"
    s.refresh_from_db()
    assert s.context == {"n": 2}
    assert events.text(r2["message_id"]) == "n=2"
    s2 = ConversationService.create_session("sync")
    r = ConversationService.send_message(s2.id, "x")
    assert r["response"] == "sync:x"
    assert ConversationMessage.objects.filter(session=s2).count() == 2


@pytest.mark.django_db
def test_cancel_idle_is_noop():
    register_agent("sync", SyncAgent)
    s = ConversationService.create_session("sync")
    assert ConversationService.cancel_turn(s.id) == {"status": "idle", "cancelled": []}
