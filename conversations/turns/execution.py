"""Running the agent's ``get_response`` for a turn: threads, heartbeats, cancel and timeout.

The thread that runs the turn (a task worker, or the caller of ``send_message``) owns the turn's
database connection. The agent's ``get_response`` runs in a helper thread, sync or async (an event
loop there), while the turn's thread serves the database work of the helpers (``ResponseStream``,
``display_widget``...), renews the lease every ``TURN_HEARTBEAT_INTERVAL`` even when the agent is
silent, notices cancel requests, and enforces the turn timeout: an async agent is cancelled; a sync
agent is told (``self.cancelled``, next ``stream.write()``) and, if it does not stop within
``TURN_CANCEL_GRACE``, the turn ends without it (a thread cannot be killed; it finishes in the
background and can no longer reach the conversation).

One exception: a *sync* agent whose turn runs inside a transaction that is already open (a test
wrapped in a transaction, ``send_message`` called inside ``atomic()``) runs in the turn's own
thread, because a helper thread has its own connection and could not see that transaction's rows.
There the timeout and cancel requests are noticed when the agent writes or checks
``self.cancelled``, and the lease is renewed then.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import AsyncToSync
from django.db import connections, transaction

from .. import telemetry
from ..conf import ai_settings
from ..constants import ExtractionStatus
from ..exceptions import TurnCancelled
from ..models import ConversationMessage, File
from .lease import db_alias, renew_lease
from .notify import logger
from .state import CANCEL_REASON, TurnExecutor, TurnState, TurnSuspended, current_turn

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request


__all__ = ["CANCEL_POLL_INTERVAL", "call_agent", "wait_for_attached_files"]

#: How often (seconds) the turn's thread looks for a cancel request while the agent runs.
CANCEL_POLL_INTERVAL = 0.5

#: The fields of a File that extraction fills in, refreshed on the agent's File objects.
_EXTRACTION_FIELDS = (
    "extraction_status",
    "extraction_error",
    "extracted_text",
    "extracted_text_truncated",
    "extractor",
    "extractor_version",
    "extraction_duration_ms",
    "extracted_at",
    "metadata",
)
_EXTRACTING = (ExtractionStatus.PENDING, ExtractionStatus.PROCESSING)


def call_agent(agent: Any, state: TurnState, message: str, request: HttpRequest | Request | None, token: str) -> Any:
    """``agent.get_response(message)``, in a helper thread or (see the module docstring) right here."""
    if not type(agent).is_async and transaction.get_connection(db_alias()).in_atomic_block:
        state.poll = _make_poller(state, token)
        reset = current_turn.set(state)
        try:
            _wait_for_files(agent, state)
            return _in_agent_span(agent, state, lambda: agent.get_response(message, request=request))
        finally:
            current_turn.reset(reset)
    return _run_in_helper_thread(agent, state, message, request, token)


def _in_agent_span(agent: Any, state: TurnState, run: Callable[[], Any]) -> Any:
    """``run()`` (the agent's get_response) as the span ``django_ai.agent``. A suspension for tool
    approval or a cancel is no failure of the agent: the span says so without an error status."""
    attributes = {"django_ai.agent": state.session.agent_path, "django_ai.agent.class": type(agent).__qualname__}
    with telemetry.span("django_ai.agent", attributes) as span:
        try:
            return run()
        except (TurnSuspended, TurnCancelled) as exc:
            span.set(**{"django_ai.agent.stopped": "suspended" if isinstance(exc, TurnSuspended) else "cancelled"})
            stopped = exc
        except BaseException as exc:
            span.error(exc)
            raise
    raise stopped


def _wait_for_files(agent: Any, state: TurnState) -> None:
    # On the agent's thread, so the turn's thread keeps renewing the lease and watching for
    # cancel requests and the timeout while extraction finishes.
    timeout = type(agent).file_wait_timeout
    timeout = float(ai_settings.FILE_WAIT_TIMEOUT if timeout is None else timeout)
    if timeout <= 0 or not any(f.extraction_status in _EXTRACTING for f in agent.files):
        return
    with telemetry.span("django_ai.file_wait", {"django_ai.files.count": len(agent.files)}) as span:
        waited = wait_for_attached_files(state, agent.files, timeout)
        still = sum(1 for f in agent.files if f.extraction_status in _EXTRACTING)
        span.set(**{"django_ai.file_wait.ms": int(waited * 1000), "django_ai.files.still_extracting": still})
    if waited:
        state.file_wait_ms = int(waited * 1000)


def wait_for_attached_files(state: TurnState, files: list[Any], timeout: float) -> float:
    """Before the agent runs: wait up to ``timeout`` seconds until no attached file is still being
    extracted, then bring the agent's File objects up to date. Returns the seconds waited."""
    waiting = {str(f.pk): f for f in files if f.extraction_status in _EXTRACTING}
    if not waiting or timeout <= 0:
        return 0.0
    started = time.monotonic()
    deadline = started + timeout
    pause = 0.05
    while True:
        rows = state.call_db(lambda: list(File.objects.filter(pk__in=list(waiting)).values("pk", *_EXTRACTION_FIELDS)))
        for gone in set(waiting) - {str(row["pk"]) for row in rows}:  # deleted meanwhile
            waiting.pop(gone)
        for row in rows:
            file = waiting[str(row["pk"])]
            for name in _EXTRACTION_FIELDS:
                setattr(file, name, row[name])
            if row["extraction_status"] not in _EXTRACTING:
                waiting.pop(str(row["pk"]))
        if not waiting or time.monotonic() >= deadline:
            if waiting:
                logger.info(
                    "Turn for message %s starts with %d file(s) still being extracted after %.0f s",
                    state.user_message.pk,
                    len(waiting),
                    timeout,
                )
            return time.monotonic() - started
        state.raise_if_cancelled()
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.5)


def _make_poller(state: TurnState, token: str) -> Callable[[], str | None]:
    """For agents in the turn's thread: renews the lease and notices a cancel request when the
    agent writes or checks ``self.cancelled``, at most every 0.5 s."""
    last = [0.0]
    interval = min(CANCEL_POLL_INTERVAL, float(ai_settings.TURN_HEARTBEAT_INTERVAL))

    def poll() -> str | None:
        now = time.monotonic()
        if now - last[0] < interval:
            return None
        last[0] = now
        if not renew_lease(state.session.pk, token):
            return "lease_lost"
        return _cancel_requested(state.user_message.pk)

    return poll


def _cancel_requested(message_id: Any) -> str | None:
    """Why the turn of ``message_id`` was asked to stop (``"cancelled"``, ``"superseded"``), or None
    when nobody asked. One query, as the ``exists()`` it replaces."""
    rows = ConversationMessage.objects.filter(pk=message_id, cancel_requested_at__isnull=False)
    found = rows.values_list(f"metadata__{CANCEL_REASON}", flat=True)[:1]
    for reason in found:
        return reason if isinstance(reason, str) and reason else "cancelled"
    return None


def _run_in_helper_thread(
    agent: Any, state: TurnState, message: str, request: HttpRequest | Request | None, token: str
) -> Any:
    """Run ``get_response`` in a helper thread while this thread serves database calls and watches
    the turn (heartbeats, cancel requests, the timeout)."""
    is_async = type(agent).is_async
    result: dict[str, Any] = {}
    control: dict[str, Any] = {}

    async def run_async() -> Any:
        loop = asyncio.get_running_loop()
        control["loop"] = loop
        control["task"] = asyncio.current_task()
        # asgiref's sync_to_async (and the async ORM) in the agent run on the turn's thread.
        # asgiref types the map as its CurrentThreadExecutor; it only calls submit(), which ours has.
        AsyncToSync.loop_thread_executors[loop] = TurnExecutor(state)  # type: ignore[assignment]
        try:
            if state.is_cancelled():
                raise TurnCancelled(state.cancel_reason or "cancelled")
            return await agent.get_response(message, request=request)
        finally:
            AsyncToSync.loop_thread_executors.pop(loop, None)

    def run_agent() -> Any:
        if is_async:
            return asyncio.run(run_async())
        return agent.get_response(message, request=request)

    # The helper thread starts from a fresh context (below): the trace (as a W3C carrier) and the
    # ids of the log lines are carried to it explicitly, nothing else of the caller's.
    carrier = telemetry.trace_carrier()
    log_ids = {"conversation_id": str(state.session.pk), "message_id": str(state.user_message.pk)}

    finished = threading.Event()

    def target() -> None:
        current_turn.set(state)
        try:
            with telemetry.continued_from(carrier), telemetry.log_context(**log_ids):
                _wait_for_files(agent, state)
                result["value"] = _in_agent_span(agent, state, run_agent)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the turn's thread
            result["error"] = exc
        finally:
            # A sync agent's own ORM calls opened this thread's connections.
            connections.close_all()
            # Said before the wake: the turn's thread may see the wake while this thread is still
            # alive (ending), and must not wait out another poll interval for it.
            finished.set()
            state.wake()

    # A fresh context: nothing of the caller's asgiref state (executors of an outer async_to_sync,
    # a request's ThreadSensitiveContext) leaks into the agent, which could route calls to a
    # thread that is busy running this turn.
    thread = threading.Thread(
        target=contextvars.Context().run,
        args=(target,),
        name=f"django-ai-agent-{str(state.user_message.pk)[:8]}",
        daemon=True,
    )
    watcher = _Watcher(state, token, thread, control, finished)
    thread.start()
    state.serve_db_calls(until=watcher.done, tick=watcher.tick)
    if watcher.abandoned:
        logger.warning(
            "Agent %s did not stop within %s s of being %s; the turn of message %s ends without it "
            "(its thread finishes in the background and can no longer reach the conversation).",
            type(agent).__name__,
            ai_settings.TURN_CANCEL_GRACE,
            "timed out" if state.cancel_reason == "timeout" else "cancelled",
            state.user_message.pk,
        )
        raise TurnCancelled(state.cancel_reason or "cancelled")
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


class _Watcher:
    """Runs on the turn's thread between database calls: heartbeats, cancel requests, timeout."""

    def __init__(
        self,
        state: TurnState,
        token: str,
        thread: threading.Thread,
        control: dict[str, Any],
        finished: threading.Event,
    ):
        self.state = state
        self.token = token
        self.thread = thread
        self.finished = finished
        self.control = control
        self.heartbeat_interval = float(ai_settings.TURN_HEARTBEAT_INTERVAL)
        now = time.monotonic()
        self.next_heartbeat = now + self.heartbeat_interval
        self.next_poll = now + CANCEL_POLL_INTERVAL
        self.grace_until: float | None = None
        self.task_cancelled = False
        self.abandoned = False

    def tick(self) -> None:
        state = self.state
        now = time.monotonic()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + self.heartbeat_interval
            if not renew_lease(state.session.pk, self.token):
                state.cancel("lease_lost")
        if state.cancel_reason is None and now >= self.next_poll:
            self.next_poll = now + CANCEL_POLL_INTERVAL
            reason = _cancel_requested(state.user_message.pk)
            if reason:
                state.cancel(reason)
        if not state.is_cancelled():
            return
        if self.grace_until is None:
            self.grace_until = now + float(ai_settings.TURN_CANCEL_GRACE)
        if not self.task_cancelled and "task" in self.control:
            self.task_cancelled = True
            try:
                self.control["loop"].call_soon_threadsafe(self.control["task"].cancel)
            except RuntimeError:  # the loop has just closed: the agent is finishing anyway
                pass
        if now >= self.grace_until and self.thread.is_alive():
            self.abandoned = True

    def done(self) -> bool:
        return self.abandoned or self.finished.is_set() or not self.thread.is_alive()
