"""An agent that fails: the turn ends failed with the generic system message (details per
``DEBUG``/``EXPOSE_ERROR_DETAILS``, the traceback in the log), the stored context stays that of the
last good turn, and replies or contexts that cannot be stored fail the turn, not the app."""

from __future__ import annotations

import logging
from unittest.mock import ANY

import pytest
from django.test import override_settings
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent, register_agent
from django_ai.conversations.constants import EventName, MessageType, ProcessingStatus
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from tests.helpers import run_agent

pytestmark = pytest.mark.django_db


GENERIC = "Sorry, something went wrong while answering. Please try again."


class Exploding(ConversationAgent):
    class Context(BaseModel):
        count: int = 0

    async def get_response(self, message, request=None, **kwargs):
        self.context.count += 1
        if message == "boom":
            with ResponseStream() as stream:
                stream.write("partial ")
                raise RuntimeError("database password is hunter2")
        return f"count={self.context.count}"


@pytest.mark.django_db
def test_agent_that_raises(caplog, events):
    caplog.set_level(logging.ERROR, logger="django_ai")
    session, (ok, failed) = run_agent(Exploding, "hi", "boom")

    assert ok["status"] == "success"
    assert failed["status"] == "error"
    assert failed["response"] == ""
    assert failed["error"] == GENERIC
    assert "hunter2" not in str(failed)
    # Context as it was before the failed turn.
    assert session.context == {"count": 1}
    messages = list(session.messages.order_by("timestamp", "id"))
    user_message = next(m for m in messages if m.content == "boom")
    assert user_message.processing_status == ProcessingStatus.FAILED
    system = ConversationMessage.objects.get(session=session, message_type=MessageType.SYSTEM)
    assert system.content == GENERIC and system.reply_to_id == user_message.pk
    assert "hunter2" not in system.content and "RuntimeError" not in system.content
    assert system.metadata == {"code": "agent_error", "error_id": ANY}
    partial = ConversationMessage.objects.get(reply_to=user_message, message_type=MessageType.AGENT)
    assert partial.processing_status == ProcessingStatus.FAILED and partial.content == "partial "
    # Details are in the log, with the traceback.
    records = [r for r in caplog.records if r.name.startswith("django_ai") and r.levelno == logging.ERROR]
    assert records and records[0].exc_info and "hunter2" in str(records[0].exc_info[1])
    assert str(session.pk) in records[0].getMessage()
    statuses = [e["status"] for e in events.of(EventName.MESSAGE_STATUS) if e["message_id"] == str(user_message.pk)]
    assert statuses[-1] == ProcessingStatus.FAILED

    # The conversation goes on with the context of the last good turn.
    assert ConversationService.send_message(session.id, "again")["response"] == "count=2"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        ({"DJANGO_AI": {"EXPOSE_ERROR_DETAILS": True}, "DEBUG": False}, True),
        ({"DJANGO_AI": {}, "DEBUG": True}, True),
        ({"DJANGO_AI": {"EXPOSE_ERROR_DETAILS": False}, "DEBUG": True}, False),
        ({"DJANGO_AI": {}, "DEBUG": False}, False),
    ],
)
def test_error_details_follow_debug_or_expose_error_details(overrides, shown):
    with override_settings(**overrides):
        session, (result,) = run_agent(Exploding, "boom")
    assert result["status"] == "error"
    assert ("RuntimeError: database password is hunter2" in result["error"]) is shown
    assert result["error"].startswith(GENERIC)


@pytest.mark.django_db
def test_custom_generic_error_message():
    with override_settings(DJANGO_AI={"GENERIC_ERROR_MESSAGE": "Oops, try later."}):
        session, (result,) = run_agent(Exploding, "boom")
    assert result["error"] == "Oops, try later."
    assert session.messages.get(message_type="system").content == "Oops, try later."


@pytest.mark.django_db
def test_non_str_reply_fails_the_turn(caplog):
    class Numbers(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            return 42

    session, (result,) = run_agent(Numbers, "?")
    assert result["status"] == "error"
    assert "returned int" in caplog.text


@pytest.mark.django_db
def test_context_left_invalid_fails_the_turn_and_keeps_the_stored_context():
    class Corrupting(ConversationAgent):
        class Context(BaseModel):
            count: int = 0

        def get_response(self, message, request=None, **kwargs):
            self.context.count = "many" if message == "corrupt" else self.context.count + 1
            return "done"

    session, results = run_agent(Corrupting, "ok", "corrupt", "ok")
    assert [r["status"] for r in results] == ["success", "error", "success"]
    assert session.context == {"count": 2}
    codes = list(session.messages.filter(message_type="system").values_list("metadata__code", flat=True))
    assert codes == ["invalid_context"]


@pytest.mark.django_db
def test_context_that_cannot_be_stored_fails_the_turn():
    class Storing(ConversationAgent):
        class Context(BaseModel):
            note: str = ""

        def get_response(self, message, request=None, **kwargs):
            self.context.note = message.replace("NUL", "\x00")
            return "noted"

    session, results = run_agent(Storing, "plain", "with NUL inside", "plain again")
    assert [r["status"] for r in results] == ["success", "error", "success"]
    assert session.context == {"note": "plain again"}
    assert session.messages.get(message_type="system").metadata == {"code": "invalid_context", "error_id": ANY}


@pytest.mark.django_db
def test_stored_context_that_no_longer_fits_fails_with_invalid_context_code():
    class Strict(ConversationAgent):
        class Context(BaseModel):
            user_id: int

        async def get_response(self, message, request=None, **kwargs):
            return "never"

    register_agent("under-test", Strict)
    session = ConversationSession.objects.create(agent_path="under-test", context={"user_id": "not a number"})
    result = ConversationService.send_message(session.id, "hi")
    assert result["status"] == "error"
    assert session.messages.get(message_type="system").metadata == {"code": "invalid_context", "error_id": ANY}
    session.refresh_from_db()
    assert session.context == {"user_id": "not a number"}


@pytest.mark.django_db
def test_nul_characters_in_replies_are_stored_safely():
    class Nul(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            with ResponseStream() as stream:
                stream.write("a\x00b")
            return stream.content + "\x00"

    session, (result,) = run_agent(Nul, "x")
    assert result["status"] == "success"
    assert result["response"] == "a\ufffdb\ufffd"
    assert session.messages.get(message_type="agent").content == "a\ufffdb\ufffd"
