"""State of the turn being answered, shared by the runner and the helpers of ``context``.

The turn's thread owns the database connection. An ``async def get_response`` runs on an event loop
in a helper thread; helpers called from there (``ResponseStream.write``, ``display_widget``...)
hand their database work to the turn's thread through :meth:`TurnState.call_db` and wait for it,
so async agents can call them without ``await`` and without touching the ORM from the event loop.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..agent import ConversationAgent
    from ..models import ConversationMessage, ConversationSession, File

T = TypeVar("T")

current_turn: contextvars.ContextVar[TurnState | None] = contextvars.ContextVar(
    "django_ai_current_turn", default=None
)


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
    last_persist: float = 0.0
    started: float = field(default_factory=time.monotonic)
    first_chunk: float | None = None
    deadline: float | None = None
    cancel_reason: str | None = None
    widgets: list[Any] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    owner_thread: threading.Thread = field(default_factory=threading.current_thread)
    _calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = field(
        default_factory=queue.SimpleQueue
    )
    #: Called by helpers on every write; returns a reason when the turn must stop.
    poll: Callable[[], str | None] | None = None

    @property
    def stream_text(self) -> str:
        return "".join(self.streamed)

    def cancel(self, reason: str = "cancelled") -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason

    def is_cancelled(self) -> bool:
        if self.cancel_reason is None and self.deadline is not None and time.monotonic() > self.deadline:
            self.cancel_reason = "timeout"
        return self.cancel_reason is not None

    def call_db(self, func: Callable[[], T]) -> T:
        """Run ``func`` on the turn's thread (directly when already there) and return its result."""
        if threading.current_thread() is self.owner_thread:
            return func()
        future: Future[T] = Future()
        self._calls.put((func, future))
        return future.result()

    def serve_db_calls(self, until: Callable[[], bool], tick: Callable[[], None] | None = None, interval: float = 0.2) -> None:
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
        self._calls.put(None)  # type: ignore[arg-type]
