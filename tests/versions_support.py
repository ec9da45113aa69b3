"""Agents and helpers of the tests of versions (regenerate, edit, switch) and Context snapshots
(tests/test_turn_versions.py, tests/test_turn_context_snapshots.py).

The agents count their turns in their Context, so the Context a turn started from shows in its
reply: ``#3 hello`` is the third turn of its path.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any

from django.test import override_settings
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import MessageType
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import isolated_registry, wait_for_turns

from .turns_support import IMMEDIATE, ApprovalAgent, ai_settings

#: Opened by a test to let a "hold" message of the TallyAgent finish.
HOLD = threading.Event()


class TallyAgent(ConversationAgent):
    """Counts its turns (``count``) and remembers the messages it answered (``seen``) in its
    Context; answers ``#<count> <message>``. ``hold`` waits for :data:`HOLD` (20 s at most) while
    streaming, so a stop reaches it at its next write; ``fail`` raises after counting."""

    class Context(BaseModel):
        count: int = 0
        seen: list[str] = []

    def get_response(self, message, request=None, **kwargs):
        self.context.count += 1
        self.context.seen = [*self.context.seen, message]
        if message == "fail":
            raise RuntimeError("asked to fail")
        if message.startswith("hold"):
            with ResponseStream() as stream:
                stream.write("holding")
                deadline = time.monotonic() + 20
                while not HOLD.is_set() and time.monotonic() < deadline:
                    time.sleep(0.05)
                    stream.write(".")
            return f"#{self.context.count} {message}"
        files = ",".join(f.filename for f in self.files)
        return f"#{self.context.count} {message}" + (f" [{files}]" if files else "")


class RejectingTallyAgent(TallyAgent):
    concurrency = "reject"


class InterruptingTallyAgent(TallyAgent):
    concurrency = "interrupt"


AGENTS = {
    "tally": TallyAgent,
    "tally-reject": RejectingTallyAgent,
    "tally-interrupt": InterruptingTallyAgent,
    "approval": ApprovalAgent,
}


@contextmanager
def background_turns():
    """Turns answered by the in-process runner's background threads, as in the demo."""
    HOLD.clear()
    with isolated_registry(AGENTS), override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=2):
        try:
            yield
        finally:
            HOLD.set()
            wait_for_turns(30)


def user_messages(session: ConversationSession, **filters: Any) -> list[ConversationMessage]:
    return list(
        ConversationMessage.objects.filter(session=session, message_type=MessageType.USER, **filters).order_by(
            "timestamp", "id"
        )
    )


def path_texts(session: ConversationSession) -> list[tuple[str, str]]:
    """``(message_type, content)`` of the active path's rows, in order."""
    return list(
        ConversationMessage.objects.filter(session=session, active=True)
        .order_by("timestamp", "id")
        .values_list("message_type", "content")
    )


def conversation(path: str, *texts: str) -> ConversationSession:
    """A conversation of the agent ``path`` whose messages ``texts`` were answered (inline)."""
    session = ConversationService.create_session(path)
    for text in texts:
        result = ConversationService.send_message(session.pk, text)
        assert result["status"] in {"success", "error"}, result
    return session
