"""Agents and helpers shared by the tests of turns (tests/test_turn_*.py).

The agents live in an importable module so that a real task worker process can load them too
(``DJANGO_AI['AGENTS']`` in the worker's settings).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent, conf
from django_ai.conversations.constants import ApprovalStatus, MessageType, ProcessingStatus
from django_ai.conversations.context import ResponseStream, report_usage
from django_ai.conversations.decorators import with_context
from django_ai.conversations.llm import LLMAgent
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.signals import turn_failed, turn_finished, turn_started
from django_ai.conversations.testing import FakeModel, FakeReply, FakeRequest, FakeToolCall, isolated_registry
from django_ai.conversations.tools import requires_approval
from django_ai.conversations.turns.approval import answer_approval
from django_ai.conversations.turns.hooks import answered_by_caller
from django_ai.conversations.turns.state import TurnSuspended, current_turn

TASKS_PKG = "django.tasks" if importlib.util.find_spec("django.tasks") else "django_tasks"
#: Django's ImmediateBackend: turn tasks run in this process (its background threads).
IMMEDIATE = {"default": {"BACKEND": f"{TASKS_PKG}.backends.immediate.ImmediateBackend"}}
#: Plus a DummyBackend, "recorder", that keeps what is enqueued instead of running it.
DUMMY = {
    "default": {"BACKEND": f"{TASKS_PKG}.backends.immediate.ImmediateBackend"},
    "recorder": {"BACKEND": f"{TASKS_PKG}.backends.dummy.DummyBackend", "QUEUES": ["default", "turns"]},
}

#: Opened by tests to let the CounterAgent's "hold" message finish.
GATE = threading.Event()
#: Set by tests (teardown) to let abandoned hanging agents end.
RELEASE = threading.Event()
#: Threads that ran agents' get_response, by message content.
SEEN_THREADS: dict[str, str] = {}


class EchoAgent(ConversationAgent):
    """Answers at once."""

    async def get_response(self, message, request=None, **kwargs):
        return f"echo: {message}"


class CounterAgent(ConversationAgent):
    """Counts its turns in the Context; the message "hold" waits for GATE before answering."""

    class Context(BaseModel):
        count: int = 0
        seen: list[str] = []

    def get_response(self, message, request=None, **kwargs):
        if message == "hold":
            if not GATE.wait(20):
                raise RuntimeError("GATE was never opened")
            return "held"
        count = self.context.count
        time.sleep(0.005)  # widen the window a lost update would need
        self.context.count = count + 1
        self.context.seen = [*self.context.seen, message]
        return f"#{self.context.count}"


class SlowStreamAgent(ConversationAgent):
    """Streams a dot every 50 ms for the number of seconds in the message ("slow 3"); on a retry
    (attempt > 1) it answers at once."""

    def get_response(self, message, request=None, **kwargs):
        SEEN_THREADS[message] = threading.current_thread().name
        if self.message.attempts > 1:
            return f"answered on attempt {self.message.attempts}"
        seconds = float(message.split()[-1])
        with ResponseStream() as stream:
            stream.write("working")
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(0.05)
                stream.write(".")
        return stream.content


class AsyncSlowStreamAgent(ConversationAgent):
    """SlowStreamAgent's async twin."""

    async def get_response(self, message, request=None, **kwargs):
        seconds = float(message.split()[-1])
        with ResponseStream() as stream:
            stream.write("working")
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await asyncio.sleep(0.05)
                stream.write(".")
        return stream.content


class SilentSyncAgent(ConversationAgent):
    """Sleeps the seconds in the message without writing anything, then answers."""

    def get_response(self, message, request=None, **kwargs):
        SEEN_THREADS[message] = threading.current_thread().name
        time.sleep(float(message.split()[-1]))
        return "slept"


class HangingSyncAgent(ConversationAgent):
    """Blocks (no writes, never checks self.cancelled) until RELEASE, then tries to write."""

    turn_timeout = 0.4

    def get_response(self, message, request=None, **kwargs):
        if message == "quick":
            return "quick answer"
        SEEN_THREADS[message] = threading.current_thread().name
        RELEASE.wait(30)
        with ResponseStream() as stream:  # too late: the turn has ended
            stream.write("late text")
        return "late answer"


class HangingAsyncAgent(ConversationAgent):
    turn_timeout = 0.4

    async def get_response(self, message, request=None, **kwargs):
        await asyncio.sleep(60)
        return "never"


class PoliteSyncAgent(ConversationAgent):
    """Works until told to stop (self.cancelled), keeping what it wrote."""

    def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            stream.write("partial")
            while not self.cancelled:
                time.sleep(0.01)
        return stream.content


class UsageAgent(ConversationAgent):
    """Streams three chunks and reports token usage."""

    async def get_response(self, message, request=None, **kwargs):
        report_usage(prompt_tokens=12, completion_tokens=3)
        with ResponseStream() as stream:
            for word in ("one ", "two ", "three"):
                stream.write(word)
        report_usage(completion_tokens=2)
        return stream.content


class FailingAgent(ConversationAgent):
    def get_response(self, message, request=None, **kwargs):
        with ResponseStream() as stream:
            stream.write("half an answer")
            raise ValueError("the model is down")


def make_step(
    user_message: ConversationMessage,
    *,
    name: str = "refund",
    arguments: dict[str, Any] | None = None,
    index: int = 0,
    needs_approval: bool = True,
    text_offset: int = 0,
) -> ConversationMessage:
    """A tool step of ``user_message``'s reply as the declared loop (conversations/llm) makes it:
    waiting for its approval (``needs_approval``), or a call that needed none and ran."""
    now = timezone.now()
    timeout = float(conf.ai_settings.APPROVAL_TIMEOUT)
    approval = (
        {
            "status": ApprovalStatus.PENDING.value,
            "reason": "",
            "answered_by": None,
            "answered_at": None,
            "expires_at": (now + timedelta(seconds=timeout)).isoformat(),
        }
        if needs_approval
        else None
    )
    return ConversationMessage.objects.create(
        session_id=user_message.session_id,
        message_type=MessageType.TOOL,
        reply_to=user_message,
        component_type=name,
        processing_status=ProcessingStatus.AWAITING_APPROVAL if needs_approval else ProcessingStatus.COMPLETED,
        content="" if needs_approval else '"done"',
        started_at=now,
        finished_at=None if needs_approval else now,
        component_data={
            "call_id": f"call_{uuid.uuid4().hex[:12]}",
            "name": name,
            "arguments": arguments or {},
            "round": 0,
            "index": index,
            "text_offset": text_offset,
            "result": None if needs_approval else "done",
            "error": None,
            "duration_ms": None if needs_approval else 1,
            "approval": approval,
        },
    )


class ApprovalAgent(ConversationAgent):
    """Stands in for the declared loop of conversations/llm (it is what that loop does, by hand):
    streams "Checking. ", makes a ``refund`` step waiting for approval and suspends the turn.
    Resumed, it reads its steps: an approved one runs (a refund of the step's amount, capped by
    the CURRENT Context's ``limit``, counted in ``refunded``), a refused or expired one is
    reported with the refusal the model would read (the step's ``content``).

    Messages: ``refund <amount>`` (one step), ``refund <a> and <b>`` (two), ``answer first``
    (the agent approves its own step before suspending: an answer that comes before the
    suspension is recorded), ``suspend for nothing`` (suspends without a step: a bug).
    """

    class Context(BaseModel):
        limit: int = 100
        refunded: int = 0

    def get_response(self, message, request=None, **kwargs):
        state = current_turn.get()
        assert state is not None
        user_message = self.message
        with ResponseStream() as stream:
            if not state.resumed:
                stream.write("Checking. ")
                if message == "suspend for nothing":
                    raise TurnSuspended()
                amounts = [int(word) for word in message.split() if word.isdigit()] or [1]
                offset = len(state.stream_text)
                steps = state.call_db(
                    lambda: [
                        make_step(user_message, arguments={"amount": a}, index=i, text_offset=offset)
                        for i, a in enumerate(amounts)
                    ]
                )
                if message == "answer first":
                    state.call_db(lambda: answer_approval(steps[0].pk, approved=True))
                raise TurnSuspended(step_ids=[step.pk for step in steps])
            steps = state.call_db(
                lambda: list(
                    ConversationMessage.objects.filter(reply_to=user_message, message_type=MessageType.TOOL).order_by(
                        "component_data__index"
                    )
                )
            )
            for step in steps:
                if step.processing_status == ProcessingStatus.PENDING:
                    amount = min(step.component_data["arguments"]["amount"], self.context.limit)
                    self.context.refunded += amount
                    state.call_db(lambda step=step, amount=amount: _complete(step, amount))
                    stream.write(f"Refunded {amount}. ")
                else:
                    stream.write(f"Not run: {step.content} ")
        return stream.content


#: Requests the refund brain answered in this process (for assertions on what the model was sent).
LLM_REQUESTS: list[FakeRequest] = []


def refund_brain(request: FakeRequest) -> Any:
    """A scripted model's answer decided by the messages alone (so a worker process, with a
    FakeModel of its own, answers a resumed turn the same way): a user message ``refund <amounts>``
    is answered with a call of ``refund`` per amount; tool results with the text of each."""
    LLM_REQUESTS.append(request)
    results = []
    for message in reversed(request.messages):
        if message.get("role") != "tool":
            break
        results.insert(0, message["content"])
    if results:
        return "The refund tool answered: " + " | ".join(results)
    text = request.last_user_message or ""
    amounts = [int(word) for word in text.split() if word.isdigit()] or [1]
    calls = [FakeToolCall("refund", {"amount": a}, id=f"call_{i}") for i, a in enumerate(amounts)]
    return FakeReply(text="Let me see. ", tool_calls=calls)


class LLMRefundAgent(LLMAgent):
    """The declared loop with a tool that needs approval; the model is ``refund_brain``."""

    system_prompt = "You refund customers."
    tools = ["refund"]

    class Context(BaseModel):
        limit: int = 100
        refunded: int = 0

    def get_model(self):
        return FakeModel(replies=[refund_brain] * 8)

    @requires_approval
    @with_context()
    def refund(self, amount: int, limit: int) -> str:
        """Refund an amount to the customer (at most the Context's limit)."""
        granted = min(amount, limit)
        self.context.refunded += granted
        return f"Refunded {granted}."


class RejectingLLMRefundAgent(LLMRefundAgent):
    concurrency = "reject"


class InterruptingLLMRefundAgent(LLMRefundAgent):
    concurrency = "interrupt"


def _complete(step: ConversationMessage, amount: int) -> None:
    step.processing_status = ProcessingStatus.COMPLETED
    step.content = str(amount)
    step.component_data = {**step.component_data, "result": amount, "duration_ms": 1}
    step.finished_at = timezone.now()
    step.save()


AGENTS = {
    "quick-echo": EchoAgent,
    "counter": CounterAgent,
    "slow": SlowStreamAgent,
    "async-slow": AsyncSlowStreamAgent,
    "silent": SilentSyncAgent,
    "hang-sync": HangingSyncAgent,
    "hang-async": HangingAsyncAgent,
    "polite": PoliteSyncAgent,
    "usage": UsageAgent,
    "failing": FailingAgent,
    "approval": ApprovalAgent,
    "llm-refund": LLMRefundAgent,
    "llm-refund-reject": RejectingLLMRefundAgent,
    "llm-refund-interrupt": InterruptingLLMRefundAgent,
}
AGENT_PATHS = {path: f"{__name__}.{cls.__name__}" for path, cls in AGENTS.items()}


@contextmanager
def ai_settings(**values: Any):
    """Override DJANGO_AI keys, keeping the others (e.g. the memory realtime backend of conftest)."""
    current = dict(getattr(settings, "DJANGO_AI", {}) or {})
    with override_settings(DJANGO_AI={**current, **values}):
        yield


class Background(threading.Thread):
    """Runs ``func`` in a thread with its own database connection (closed at the end); ``result``
    holds what it returned and ``error`` what it raised."""

    def __init__(self, func, name: str = "test-background"):
        super().__init__(name=name, daemon=True)
        self.func = func
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connections

        try:
            self.result = self.func()
        except BaseException as exc:  # noqa: BLE001 - checked by the test
            self.error = exc
        finally:
            connections.close_all()

    def outcome(self, timeout: float = 20.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not finish within {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def post(session: ConversationSession, text: str, **fields: Any) -> ConversationMessage:
    """A user message saved through the ORM, as the bridge or the admin saves it."""
    return ConversationMessage.objects.create(
        session=session,
        message_type=MessageType.USER,
        content=text,
        processing_status=ProcessingStatus.PENDING,
        **fields,
    )


def reply_to(message: ConversationMessage, message_type: str = MessageType.AGENT) -> ConversationMessage | None:
    return ConversationMessage.objects.filter(reply_to=message, message_type=message_type).order_by("timestamp").last()


def status_of(message: ConversationMessage) -> str:
    return ConversationMessage.objects.values_list("processing_status", flat=True).get(pk=message.pk)


def waiting_message(session: ConversationSession, text: str, **fields: Any) -> ConversationMessage:
    """A user message saved as ``fields`` say (``pending`` by default) that no task picks up: the
    test runs (or recovers) its turn itself."""
    fields.setdefault("processing_status", ProcessingStatus.PENDING)
    message = ConversationMessage(session=session, message_type=MessageType.USER, content=text, **fields)
    with answered_by_caller():
        message.save()
    return message


def session_for(agent_cls: type[ConversationAgent], context: Any = None) -> ConversationSession:
    """A session of ``agent_cls``, registered as "under-test" (in the test's isolated registry)."""
    register_agent("under-test", agent_cls)
    return ConversationService.create_session("under-test", context=context)


def message_rows(session: ConversationSession) -> list[tuple[str, str, str]]:
    """``(message_type, processing_status, content)`` of the session's messages, oldest first."""
    return list(
        session.messages.order_by("timestamp", "id").values_list("message_type", "processing_status", "content")
    )


class TurnSignals:
    """Records the three turn signals while the block runs."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def _started(self, sender: Any, session: Any, user_message: Any, **kwargs: Any) -> None:
        self.calls.append(("started", sender.__name__, str(user_message.pk)))

    def _failed(self, sender: Any, session: Any, user_message: Any, exception: Any, **kwargs: Any) -> None:
        self.calls.append(("failed", sender.__name__, type(exception).__name__))

    def _finished(
        self, sender: Any, session: Any, user_message: Any, agent_message: Any, status: Any, metrics: Any, **kwargs: Any
    ) -> None:
        self.calls.append(("finished", sender.__name__, str(status)))

    def __enter__(self) -> TurnSignals:
        turn_started.connect(self._started)
        turn_failed.connect(self._failed)
        turn_finished.connect(self._finished)
        return self

    def __exit__(self, *exc: Any) -> None:
        turn_started.disconnect(self._started)
        turn_failed.disconnect(self._failed)
        turn_finished.disconnect(self._finished)


@pytest.fixture
def turn_agents():
    """The agents of this module registered for the test; abandoned hanging agents are let go at
    the end."""
    RELEASE.clear()
    with isolated_registry(AGENTS):
        yield
    RELEASE.set()
