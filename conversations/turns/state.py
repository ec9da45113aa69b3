"""State of the turn being answered, shared by the runner and the agent helpers of ``context``.

The turn's thread owns the turn's database connection. The agent's ``get_response`` runs in a
helper thread (an ``async def`` one on an event loop there); helpers called from it
(``ResponseStream.write``, ``display_widget``...) hand their database work to the turn's thread
through :meth:`TurnState.call_db` and wait for it, so agents call them without ``await`` and
without touching the ORM from an event loop. :class:`TurnExecutor` lets asgiref's
``sync_to_async`` (and Django's async ORM, ``aget()``...) run on the turn's thread too.

When the turn ends, :meth:`TurnState.close` refuses any later call: an agent that outlived its
turn (it ignored a cancel or a timeout) gets :class:`TurnCancelled` instead of reaching the rows.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..conf import ai_settings
from ..constants import MessageType, ProcessingStatus
from ..exceptions import TurnCancelled

if TYPE_CHECKING:
    from ..agent import ConversationAgent
    from ..models import ConversationMessage, ConversationSession, File

T = TypeVar("T")

#: The key of a user message's ``metadata`` that says why its running turn was asked to stop, when
#: not by a plain cancel: ``"superseded"`` (the message left the conversation's active path,
#: ``turns.versions``). Written by ``policy.supersede``, read by the turn's poll (``execution``).
CANCEL_REASON = "cancel_reason"


class TurnSuspended(Exception):
    """Raised by an agent (the declared loop's ``run_tool_calls``) to suspend its turn.

    Some tool calls of the reply wait for the user's approval: their rows already exist with status
    ``awaiting_approval``. The runner catches this exception and records the suspension (the reply
    so far, the user and agent messages ``awaiting_approval``, the session Context) in one
    transaction, then releases the turn: no worker or thread waits. Answering the last waiting step
    (:func:`~django_ai.conversations.turns.approval.answer_approval`) schedules the turn again, and
    ``get_response`` is called again on the same agent message with ``TurnState.resumed`` true.

    ``step_ids``: the primary keys of the tool rows that wait (informative; the runner reads the
    rows' statuses, not this list).
    """

    def __init__(self, message: str = "awaiting approval", *, step_ids: list[Any] | None = None) -> None:
        super().__init__(message)
        self.step_ids: list[Any] = list(step_ids or [])


current_turn: contextvars.ContextVar[TurnState | None] = contextvars.ContextVar("django_ai_current_turn", default=None)


@dataclass
class TurnState:
    session: ConversationSession
    user_message: ConversationMessage
    agent: ConversationAgent | None = None
    files: dict[str, File] = field(default_factory=dict)
    agent_message: ConversationMessage | None = None
    streamed: list[str] = field(default_factory=list)
    sequence: int = 0
    persisted_sequence: int = 0
    #: When the reply's row last got the streamed text (the caller's ``time.monotonic()``); None
    #: until the first write, whose time stands for the row's creation (see ``stream_written``).
    last_persist: float | None = None
    started: float = field(default_factory=time.monotonic)
    first_chunk: float | None = None
    deadline: float | None = None
    cancel_reason: str | None = None
    widgets: list[Any] = field(default_factory=list)
    usage: dict[str, int | float] = field(default_factory=dict)
    #: This run's usage by model (``report_usage(model=...)``): ``{model: {"prompt_tokens": ...,
    #: "completion_tokens": ..., "cost": ...}}``, ``cost`` only when the agent reported one. Unlike
    #: ``usage`` (the reply's totals, earlier runs of a resumed reply included), only this run's:
    #: ``turns.outcome`` adds it to the session's sums, and to the reply's earlier runs' by model.
    model_usage: dict[str, dict[str, int | float]] = field(default_factory=dict)
    #: True when this run continues a reply that was suspended for tool approval (:class:`TurnSuspended`):
    #: ``agent_message`` is then that reply's row and ``streamed`` its text so far.
    resumed: bool = False
    #: The Context (stored JSON) the turn started from: written to the user message's
    #: ``context_after`` when the turn ends without a new Context (failed, cancelled).
    context_before: Any = None
    #: Milliseconds the turn waited for attached files' extraction before the agent ran.
    file_wait_ms: int | None = None
    owner_thread: threading.Thread = field(default_factory=threading.current_thread)
    closed: bool = False
    _calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = field(default_factory=queue.SimpleQueue)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Called by helpers on every write; returns a reason when the turn must stop. Set when the
    #: agent runs in the turn's own thread (nobody else watches the turn then); None when the
    #: turn's thread watches the turn itself while the agent runs in a helper thread.
    poll: Callable[[], str | None] | None = None

    @property
    def stream_text(self) -> str:
        return "".join(self.streamed)

    def ensure_agent_message(self) -> ConversationMessage:
        """The reply's row, created (status ``streaming``) the first time a helper needs it."""
        if self.agent_message is None:
            from ..models import ConversationMessage  # not at import: agent modules load this early

            def create() -> ConversationMessage:
                return ConversationMessage.objects.create(
                    session=self.session,
                    message_type=MessageType.AGENT,
                    processing_status=ProcessingStatus.STREAMING,
                    reply_to=self.user_message,
                )

            self.agent_message = self.call_db(create)
        return self.agent_message

    def persist_stream(self, now: float) -> None:
        """Save the streamed text so far on the reply's row (nothing when it is already saved);
        ``now`` (the caller's ``time.monotonic()``) becomes ``last_persist``."""
        if self.agent_message is None or self.persisted_sequence == self.sequence:
            return
        from ..models import ConversationMessage  # not at import: agent modules load this early

        pk, text, seq = self.agent_message.pk, self.stream_text, self.sequence
        self.call_db(lambda: ConversationMessage.objects.filter(pk=pk).update(content=text, stream_sequence=seq))
        self.agent_message.content = text
        self.agent_message.stream_sequence = seq
        self.persisted_sequence = seq
        self.last_persist = now

    def stream_written(self, now: float) -> None:
        """A ``ResponseStream.write()`` added text: save it when ``STREAM_SAVE_INTERVAL`` has passed
        since the last save (``now``: the caller's ``time.monotonic()``).

        The first write of the turn saves nothing: the row holds everything written before it
        (created empty at the stream's start, or a resumed reply's text), so the row is at most
        one interval behind from there, as after any save. (Until issue 16 the first write was
        saved at once: one UPDATE per streamed turn that bought a late joiner only the first
        chunk, which the saved row may lack for up to an interval like any other.)"""
        if self.last_persist is None:
            self.last_persist = now
        if now - self.last_persist >= ai_settings.STREAM_SAVE_INTERVAL:  # 0: every write
            self.persist_stream(now)

    def stream_ended(self, now: float) -> None:
        """A ``ResponseStream`` ended: its text so far is saved."""
        self.persist_stream(now)

    def cancel(self, reason: str = "cancelled") -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason

    def is_cancelled(self) -> bool:
        if self.cancel_reason is None and self.deadline is not None and time.monotonic() > self.deadline:
            self.cancel_reason = "timeout"
        return self.cancel_reason is not None

    def check_cancelled(self) -> bool:
        """``is_cancelled()``, after asking ``poll`` (when set) whether someone asked to stop."""
        if self.cancel_reason is None and self.poll is not None:
            reason = self.poll()
            if reason:
                self.cancel(reason)
        return self.is_cancelled()

    def raise_if_cancelled(self) -> None:
        """For the agent helpers: raise :class:`TurnCancelled` when the turn must stop."""
        if self.check_cancelled():
            raise TurnCancelled(self.cancel_reason or "cancelled")

    def call_db(self, func: Callable[[], T]) -> T:
        """Run ``func`` on the turn's thread (directly when already there) and return its result."""
        if threading.current_thread() is self.owner_thread:
            return func()
        future: Future[T] = Future()
        self._submit(func, future)
        return future.result()

    def _submit(self, func: Callable[[], Any], future: Future[Any]) -> None:
        with self._lock:
            if not self.closed:
                self._calls.put((func, future))
                return
        future.set_exception(TurnCancelled(self.cancel_reason or "closed"))

    def serve_db_calls(
        self, until: Callable[[], bool], tick: Callable[[], None] | None = None, interval: float = 0.1
    ) -> None:
        """On the turn's thread: run queued database calls until ``until()`` is true."""
        while True:
            try:
                item = self._calls.get(timeout=interval)
            except queue.Empty:
                item = None
            if item is not None:
                func, future = item
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(func())
                    except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                        future.set_exception(exc)
            if tick is not None:
                tick()
            if until() and self._calls.empty():
                return

    def wake(self) -> None:
        self._calls.put(None)

    def close(self) -> None:
        """End the turn for other threads: queued and later ``call_db`` calls raise TurnCancelled."""
        with self._lock:
            self.closed = True
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                return
            if item is not None and item[1].set_running_or_notify_cancel():
                item[1].set_exception(TurnCancelled(self.cancel_reason or "closed"))


class TurnExecutor(Executor):
    """Runs submitted functions on the turn's thread (see :meth:`TurnState.serve_db_calls`).

    The runner installs it as the executor of the agent's event loop for asgiref, so that
    ``await sync_to_async(f)()`` and the async ORM (``await Model.objects.aget(...)``) inside an
    ``async def get_response`` use the turn's database connection: the same transaction as the
    caller (tests), and no extra connection per turn.
    """

    def __init__(self, state: TurnState):
        self.state = state

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self.state._submit(lambda: fn(*args, **kwargs), future)
        return future
