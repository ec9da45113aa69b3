"""How an agent's ``get_response`` is called: a sync agent off the event loop, an async one awaited
on one, ``asend_message`` from async code, both outside a transaction (the production path), and
what the agent sees of its turn (``self.session``, ``self.request``, ``self.files``,
``self.message``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent, register_agent
from django_ai.conversations.context import ResponseStream, current_session, display_widget
from django_ai.conversations.models import ConversationMessage, ConversationWidget
from django_ai.conversations.registry import registry
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FileFactory, UserFactory
from tests.helpers import make_request, run_agent

pytestmark = pytest.mark.django_db


def on_an_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.mark.django_db
def test_sync_agent_runs_off_the_event_loop():
    seen: dict[str, Any] = {}

    class SyncAgent(ConversationAgent):
        class Context(BaseModel):
            turns: int = 0

        def get_response(self, message, request=None, **kwargs):
            seen["loop"] = on_an_event_loop()
            # Plain ORM work is fine in a sync agent.
            seen["messages"] = ConversationMessage.objects.filter(session=self.session).count()
            self.context.turns += 1
            with ResponseStream() as stream:
                stream.write("sync ")
                stream.write(message)
            return stream.content

    session, results = run_agent(SyncAgent, "one", "two")
    assert registry.get("under-test").is_async is False
    assert [r["response"] for r in results] == ["sync one", "sync two"]
    assert seen["loop"] is False
    assert seen["messages"] == 3  # two of the first turn, the second user message
    assert session.context == {"turns": 2}


@pytest.mark.django_db
def test_async_agent_is_awaited_on_an_event_loop(events):
    seen: dict[str, Any] = {}

    class AsyncAgent(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            seen["loop"] = asyncio.get_running_loop()
            await asyncio.sleep(0.01)
            # Helpers work from the loop without await: their database work runs on the turn's thread.
            with ResponseStream() as stream:
                for word in ("async", "reply"):
                    stream.write(word + " ")
                    await asyncio.sleep(0)
            display_widget("card", {"n": 1})
            return stream.content.strip()

    session, (result,) = run_agent(AsyncAgent, "go")
    assert registry.get("under-test").is_async is True
    assert isinstance(seen["loop"], asyncio.AbstractEventLoop)
    assert result["response"] == "async reply"
    assert events.text(result["message_id"]) == "async reply "
    assert ConversationWidget.objects.filter(session=session).count() == 1


def test_asend_message_from_async_code():
    class Echo(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            return message.upper()

    register_agent("under-test", Echo)
    session = ConversationService.create_session("under-test")

    async def main() -> dict:
        asyncio.get_running_loop()
        return await ConversationService.asend_message(session.id, "quiet")

    # As in an async view: the turn runs in the thread-sensitive sync thread, off the loop.
    assert async_to_sync(main)()["response"] == "QUIET"


@pytest.mark.django_db(transaction=True)
def test_sync_and_async_agents_outside_a_transaction(events):
    """The production path: no transaction is open around send_message, so the agent runs in a
    helper thread with its own database connection (tests wrapped in a transaction run sync
    agents in the caller's thread instead)."""
    seen: dict[str, Any] = {}

    class SyncCounter(ConversationAgent):
        class Context(BaseModel):
            n: int = 0

        def get_response(self, message, request=None, **kwargs):
            seen["sync_loop"] = on_an_event_loop()
            seen["rows"] = ConversationMessage.objects.filter(session_id=self.session.pk).count()
            self.context.n += 1
            with ResponseStream() as stream:
                stream.write(f"sync {self.context.n}")
            return stream.content

    class AsyncCounter(SyncCounter):
        async def get_response(self, message, request=None, **kwargs):
            seen["async_loop"] = asyncio.get_running_loop() is not None
            self.context.n += 1
            display_widget("counter", {"n": self.context.n})
            return f"async {self.context.n}"

    register_agent("sync-counter", SyncCounter)
    register_agent("async-counter", AsyncCounter)
    sync_session = ConversationService.create_session("sync-counter")
    async_session = ConversationService.create_session("async-counter")
    sync_replies = [ConversationService.send_message(sync_session.id, "x")["response"] for _ in range(2)]
    async_replies = [ConversationService.send_message(async_session.id, "x")["response"] for _ in range(2)]

    assert sync_replies == ["sync 1", "sync 2"] and async_replies == ["async 1", "async 2"]
    assert seen == {"sync_loop": False, "rows": 3, "async_loop": True}
    sync_session.refresh_from_db()
    async_session.refresh_from_db()
    assert sync_session.context == {"n": 2} and async_session.context == {"n": 2}
    assert ConversationWidget.objects.filter(session=async_session).count() == 2
    agent_ids = sync_session.messages.filter(message_type="agent").values_list("pk", flat=True)
    assert sorted(events.text(pk) for pk in agent_ids) == ["sync 1", "sync 2"]


@pytest.mark.django_db
def test_self_session_request_files_and_message_inside_get_response(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    seen: dict[str, Any] = {}

    class Inspecting(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            seen.update(
                session=self.session,
                request=self.request,
                request_arg=request,
                files=self.files,
                message=self.message,
                current=current_session(),
                kwargs=kwargs,
            )
            return "ok"

    user = UserFactory()
    request = make_request(user)
    register_agent("under-test", Inspecting)
    session = ConversationService.create_session("under-test", user=user)
    first, second = FileFactory(user=user, text="a"), FileFactory(user=user, text="b")
    result = ConversationService.send_message(session.id, "look", user=user, request=request, files=[second, first])

    assert seen["session"].pk == session.pk and seen["current"].pk == session.pk
    assert seen["request"] is request and seen["request_arg"] is request
    assert seen["files"] == [second, first]
    assert str(seen["message"].pk) == result["user_message_id"] and seen["message"].content == "look"
    assert seen["kwargs"] == {}
