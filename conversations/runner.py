"""The turn: answer one user message with the session's agent.

A turn holds the session's *lease* (``ConversationSession.turn_token``) instead of a database lock,
so no transaction stays open while the agent thinks. The lease is taken with one conditional UPDATE
(compare-and-set), renewed by heartbeats, and released at the end; a lease whose heartbeat is older
than ``STALE_TURN_TIMEOUT`` may be taken over (crash recovery, see ``tasks.recovery``).

Threads. The thread that runs the turn (a task worker, or the caller of ``send_message``) owns the
turn's database connection. The agent's ``get_response`` runs in a helper thread, sync or async
(an event loop there), while the turn's thread serves the database work of the helpers
(``ResponseStream``, ``display_widget``...), renews the lease every ``TURN_HEARTBEAT_INTERVAL``
even when the agent is silent, notices cancel requests, and enforces the turn timeout: an async
agent is cancelled; a sync agent is told (``self.cancelled``, next ``stream.write()``) and, if it
does not stop within ``TURN_CANCEL_GRACE``, the turn ends without it (a thread cannot be killed;
it finishes in the background and can no longer reach the conversation).

One exception: a *sync* agent whose turn runs inside a transaction that is already open (a test
wrapped in a transaction, ``send_message`` called inside ``atomic()``) runs in the turn's own
thread, because a helper thread has its own connection and could not see that transaction's rows.
There the timeout and cancel requests are noticed when the agent writes or checks
``self.cancelled``, and the lease is renewed then.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Now
from django.dispatch import Signal
from django.utils import timezone

from .agent import ConversationAgent
from .conf import ai_settings
from .constants import EventName, MessageType, ProcessingStatus
from .exceptions import AgentNotFound, ContextValidationError, TurnCancelled
from .internal.turn import TurnExecutor, TurnState, current_turn
from .models import ConversationMessage, ConversationSession
from .realtime import publish
from .registry import registry
from .signals import turn_failed, turn_finished, turn_started

logger = logging.getLogger("django_ai.conversations.turns")

__all__ = [
    "TurnOutcome",
    "acquire_lease",
    "renew_lease",
    "release_lease",
    "run_turn",
    "next_pending",
    "process_pending",
]

#: How often (seconds) the turn's thread looks for a cancel request while the agent runs.
CANCEL_POLL_INTERVAL = 0.5


@dataclass
class TurnOutcome:
    """What a turn did. ``lease_lost`` is True when the turn found its lease taken over (its worker
    stalled past ``STALE_TURN_TIMEOUT``) and therefore wrote nothing."""

    status: ProcessingStatus
    response: str
    user_message: ConversationMessage
    agent_message: ConversationMessage | None
    error_message: ConversationMessage | None = None
    exception: BaseException | None = None
    lease_lost: bool = False


def stale_before(seconds: float) -> ExpressionWrapper:
    """The database's clock minus ``seconds``.

    Heartbeats are written and compared with the database's time (``Now()``), not the workers':
    workers on several machines need not agree on the time for one to tell another's lease stale.
    """
    return ExpressionWrapper(
        Now() - Value(timedelta(seconds=float(seconds)), output_field=DurationField()),
        output_field=DateTimeField(),
    )


def acquire_lease(session_id: Any, message_id: Any) -> str | None:
    """Take the session's turn lease for ``message_id``; the token, or None when a live turn holds it."""
    token = uuid.uuid4().hex
    taken = (
        ConversationSession.objects.filter(pk=session_id)
        .filter(
            Q(turn_token="")
            | Q(turn_heartbeat_at__lt=stale_before(ai_settings.STALE_TURN_TIMEOUT))
            | Q(turn_heartbeat_at__isnull=True)
        )
        .update(turn_token=token, active_turn=message_id, turn_heartbeat_at=Now())
    )
    return token if taken else None


def renew_lease(session_id: Any, token: str) -> bool:
    """Heartbeat: False when the lease is no longer ``token``'s."""
    return bool(ConversationSession.objects.filter(pk=session_id, turn_token=token).update(turn_heartbeat_at=Now()))


def release_lease(session_id: Any, token: str) -> None:
    ConversationSession.objects.filter(pk=session_id, turn_token=token).update(
        turn_token="", active_turn=None, turn_heartbeat_at=None
    )


def publish_status(message: ConversationMessage, **extra: Any) -> None:
    """Send ``message_status`` for ``message`` (its current ``processing_status``)."""
    publish(
        EventName.MESSAGE_STATUS,
        session_id=message.session_id,
        message_id=message.pk,
        message_type=message.message_type,
        status=message.processing_status,
        **extra,
    )


def send_turn_signal(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send a turn signal; a failing receiver is logged and never breaks the turn."""
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, BaseException):
            logger.error(
                "A receiver of a turn signal failed: %r", receiver, exc_info=(type(result), result, result.__traceback__)
            )


def generic_error_text(exc: BaseException | None = None) -> str:
    from django.conf import settings

    expose = ai_settings.EXPOSE_ERROR_DETAILS
    if expose is None:
        expose = settings.DEBUG
    text = ai_settings.GENERIC_ERROR_MESSAGE
    if expose and exc is not None:
        text = f"{text}\n\n{type(exc).__name__}: {exc}"
    return text


def _ms(start: float, end: float | None) -> int | None:
    return None if end is None else int((end - start) * 1000)


def _db_alias() -> str:
    return router.db_for_write(ConversationSession)


def run_turn(user_message: ConversationMessage, *, token: str, request: Any = None) -> TurnOutcome:
    """Answer ``user_message``; the caller holds the session's lease ``token``.

    Never raises for agent failures: the outcome says what happened and the rows record it.
    """
    session = ConversationSession.objects.get(pk=user_message.session_id)
    now = timezone.now()
    # Only a message still waiting starts: a cancel may have reached it since it was picked.
    started = ConversationMessage.objects.filter(
        pk=user_message.pk, processing_status=ProcessingStatus.PENDING
    ).update(
        processing_status=ProcessingStatus.PROCESSING,
        started_at=now,
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    if not started:
        user_message.refresh_from_db()
        return TurnOutcome(ProcessingStatus(user_message.processing_status), "", user_message, None)
    queue_wait_ms = max(int((now - user_message.timestamp).total_seconds() * 1000), 0)
    user_message.processing_status = ProcessingStatus.PROCESSING
    user_message.started_at = now
    user_message.attempts = (user_message.attempts or 0) + 1
    publish_status(user_message)

    # In the order they were attached (the through table's pk), not File's default ordering.
    files = [
        link.file
        for link in ConversationMessage.files.through.objects.filter(conversationmessage_id=user_message.pk)
        .select_related("file")
        .order_by("pk")
    ]
    state = TurnState(session=session, user_message=user_message, files={str(f.pk): f for f in files})
    try:
        agent_cls = registry.get(session.agent_path)
    except AgentNotFound as exc:
        # E.g. the agent is registered in the web process but not in the worker's.
        logger.error("Cannot answer message %s: %s", user_message.pk, exc)
        # Paired with the turn_finished below, as for every turn (receivers count turns in flight).
        send_turn_signal(turn_started, ConversationAgent, session=session, user_message=user_message)
        metrics = {"queue_wait_ms": queue_wait_ms, "attempt": user_message.attempts}
        return _finish(
            state, token, ConversationAgent, status=ProcessingStatus.FAILED, text="", metrics=metrics,
            error=exc, notice=(generic_error_text(exc), "agent_not_found"),
        )
    timeout = agent_cls.turn_timeout if agent_cls.turn_timeout is not None else ai_settings.TURN_TIMEOUT
    if timeout:
        state.deadline = state.started + float(timeout)

    send_turn_signal(turn_started, agent_cls, session=session, user_message=user_message)
    response: str | None = None
    error: BaseException | None = None
    reraise: BaseException | None = None
    try:
        # A JSON null written by hand stands for "no state yet", as an empty dict does.
        context = agent_cls.validate_context({} if session.context is None else session.context)
        agent = agent_cls(context=context, session=session, request=request, files=files, message=user_message)
        agent._cancel_check = state.check_cancelled
        state.agent = agent
        response = _call_agent(agent, state, user_message.content, request, token)
        if response is None:
            response = state.stream_text
        if inspect.isawaitable(response):
            if inspect.iscoroutine(response):
                response.close()  # no "coroutine was never awaited" warning on top of this error
            raise TypeError(
                f"{agent_cls.__name__}.get_response returned an awaitable ({type(response).__name__}) instead of "
                "the reply: 'await' it (e.g. 'return await self.helper(...)')."
            )
        if not isinstance(response, str):
            raise TypeError(
                f"{agent_cls.__name__}.get_response returned {type(response).__name__}; return the reply as a str."
            )
        # PostgreSQL cannot store NUL in text.
        response = response.replace("\x00", "\ufffd")
        # The context the agent leaves must still fit its Context (assignments are not validated)
        # and be JSON: otherwise this turn fails and the stored context stays as it was.
        agent.context = agent_cls.validate_context(agent.context)
        agent_cls.dump_context(agent.context)
        if state.is_cancelled():
            raise TurnCancelled(state.cancel_reason or "cancelled")
    except TurnCancelled as exc:
        error = exc
    except BaseException as exc:  # noqa: BLE001 - any agent failure ends the turn as failed
        # Not only Exception: a BaseException of the agent's (pytest.fail(), a library's timeout,
        # KeyboardInterrupt) must not leave the message "processing" and the lease held; the
        # ones that stop the process are raised again once the turn is recorded.
        if state.cancel_reason is not None:
            # The agent was being stopped: whatever it raised on the way out (CancelledError, an
            # error in its cleanup) is the stop, and the turn ends as cancelled (or timed out).
            if not isinstance(exc, asyncio.CancelledError):
                logger.warning(
                    "Agent %s raised while being stopped (%s) in the turn of message %s",
                    session.agent_path, state.cancel_reason, user_message.pk, exc_info=(type(exc), exc, exc.__traceback__),
                )
            error = TurnCancelled(state.cancel_reason)
            error.__cause__ = exc
        else:
            error = exc
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            reraise = exc
    finally:
        # Before the flush: total_ms is the agent's time, not the delivery of its last events.
        ended = time.monotonic()
        state.close()
        from .realtime import get_backend

        try:
            get_backend().flush(timeout=1.0)
        except Exception:  # noqa: BLE001 - delivery problems must not change the turn's outcome
            logger.exception("Flushing realtime events failed")

    metrics: dict[str, Any] = {
        "queue_wait_ms": queue_wait_ms,
        "first_chunk_ms": _ms(state.started, state.first_chunk),
        "total_ms": _ms(state.started, ended),
        "chunks": state.sequence,
        "attempt": user_message.attempts,
        **({"file_wait_ms": state.file_wait_ms} if state.file_wait_ms is not None else {}),
        **state.usage,
    }
    outcome = _conclude(state, token, agent_cls, response=response, error=error, metrics=metrics, timeout=timeout)
    if reraise is not None:
        raise reraise  # recorded as failed; the process is stopping
    return outcome


def _conclude(
    state: TurnState,
    token: str,
    agent_cls: Any,
    *,
    response: str | None,
    error: BaseException | None,
    metrics: dict[str, Any],
    timeout: Any,
) -> TurnOutcome:
    session, user_message = state.session, state.user_message
    if error is None:
        return _finish(
            state, token, agent_cls, status=ProcessingStatus.COMPLETED, text=response or "", metrics=metrics,
            save_context=True,
        )
    if isinstance(error, TurnCancelled):
        metrics["stopped"] = error.reason
        if error.reason == "timeout":
            logger.warning("Turn for message %s timed out after %s s", user_message.pk, timeout)
            return _finish(
                state, token, agent_cls, status=ProcessingStatus.FAILED, text=state.stream_text, metrics=metrics,
                error=error, notice=("The agent took too long to answer and was stopped.", "turn_timeout"),
            )
        return _finish(
            state, token, agent_cls, status=ProcessingStatus.CANCELLED, text=state.stream_text, metrics=metrics,
            error=error,
        )
    logger.error(
        "Agent %s failed to answer message %s of session %s",
        session.agent_path, user_message.pk, session.pk, exc_info=(type(error), error, error.__traceback__),
    )
    code = "invalid_context" if isinstance(error, ContextValidationError) else "agent_error"
    return _finish(
        state, token, agent_cls, status=ProcessingStatus.FAILED, text=state.stream_text, metrics=metrics,
        error=error, notice=(generic_error_text(error), code),
    )


def _call_agent(agent: Any, state: TurnState, message: str, request: Any, token: str) -> Any:
    if not type(agent).is_async and transaction.get_connection(_db_alias()).in_atomic_block:
        state.poll = _make_poller(state, token)
        reset = current_turn.set(state)
        try:
            _wait_for_files(agent, state)
            return agent.get_response(message, request=request)
        finally:
            current_turn.reset(reset)
    return _run_in_helper_thread(agent, state, message, request, token)


def _wait_for_files(agent: Any, state: TurnState) -> None:
    # On the agent's thread, so the turn's thread keeps renewing the lease and watching for
    # cancel requests and the timeout while extraction finishes.
    from .context import _wait_for_attached_files

    timeout = type(agent).file_wait_timeout
    timeout = float(ai_settings.FILE_WAIT_TIMEOUT if timeout is None else timeout)
    waited = _wait_for_attached_files(state, agent.files, timeout)
    if waited:
        state.file_wait_ms = int(waited * 1000)


def _make_poller(state: TurnState, token: str) -> Any:
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
        return "cancelled" if _cancel_requested(state.user_message.pk) else None

    return poll


def _cancel_requested(message_id: Any) -> bool:
    return ConversationMessage.objects.filter(pk=message_id, cancel_requested_at__isnull=False).exists()


def _run_in_helper_thread(agent: Any, state: TurnState, message: str, request: Any, token: str) -> Any:
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
        from asgiref.sync import AsyncToSync

        AsyncToSync.loop_thread_executors[loop] = TurnExecutor(state)
        try:
            if state.is_cancelled():
                raise TurnCancelled(state.cancel_reason or "cancelled")
            return await agent.get_response(message, request=request)
        finally:
            AsyncToSync.loop_thread_executors.pop(loop, None)

    def target() -> None:
        current_turn.set(state)
        try:
            _wait_for_files(agent, state)
            if is_async:
                result["value"] = asyncio.run(run_async())
            else:
                result["value"] = agent.get_response(message, request=request)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the turn's thread
            result["error"] = exc
        finally:
            # A sync agent's own ORM calls opened this thread's connections.
            connections.close_all()
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
    watcher = _Watcher(state, token, thread, control)
    thread.start()
    state.serve_db_calls(until=watcher.done, tick=watcher.tick)
    if watcher.abandoned:
        logger.warning(
            "Agent %s did not stop within %s s of being %s; the turn of message %s ends without it "
            "(its thread finishes in the background and can no longer reach the conversation).",
            type(agent).__name__, ai_settings.TURN_CANCEL_GRACE,
            "timed out" if state.cancel_reason == "timeout" else "cancelled", state.user_message.pk,
        )
        raise TurnCancelled(state.cancel_reason or "cancelled")
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


class _Watcher:
    """Runs on the turn's thread between database calls: heartbeats, cancel requests, timeout."""

    def __init__(self, state: TurnState, token: str, thread: threading.Thread, control: dict[str, Any]):
        self.state = state
        self.token = token
        self.thread = thread
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
            if _cancel_requested(state.user_message.pk):
                state.cancel("cancelled")
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
        return self.abandoned or not self.thread.is_alive()


class _LeaseLost(Exception):
    pass


def _finish(
    state: TurnState,
    token: str,
    agent_cls: Any,
    *,
    status: ProcessingStatus,
    text: str,
    metrics: dict[str, Any],
    error: BaseException | None = None,
    notice: tuple[str, str] | None = None,
    save_context: bool = False,
) -> TurnOutcome:
    """Record the turn's end in one transaction, if the lease is still this turn's."""
    session, user_message = state.session, state.user_message
    now = timezone.now()
    agent_message = state.agent_message
    error_message: ConversationMessage | None = None
    try:
        with transaction.atomic(using=_db_alias()):
            # Taking the row (UPDATE) also serializes this with a takeover by crash recovery.
            if not renew_lease(session.pk, token):
                raise _LeaseLost
            if agent_message is None and status == ProcessingStatus.COMPLETED:
                agent_message = ConversationMessage(
                    session=session, message_type=MessageType.AGENT, reply_to=user_message
                )
            if agent_message is not None:
                agent_message.content = text
                agent_message.processing_status = status
                agent_message.stream_sequence = state.sequence
                agent_message.metrics = metrics
                agent_message.save()
            user_message.processing_status = status
            user_message.finished_at = now
            user_message.save(update_fields=["processing_status", "finished_at", "updated_at"])
            if notice is not None:
                error_message = ConversationMessage.objects.create(
                    session=session,
                    message_type=MessageType.SYSTEM,
                    content=notice[0],
                    reply_to=user_message,
                    metadata={"code": notice[1]},
                    metrics={} if agent_message is not None else metrics,
                )
            fields = ["last_message_at", "updated_at"]
            if save_context and state.agent is not None:
                session.context = state.agent.context.model_dump(mode="json")
                fields.append("context")
            session.last_message_at = now
            session.save(update_fields=fields)
    except _LeaseLost:
        logger.warning(
            "The turn of message %s lost its lease (its worker stalled longer than STALE_TURN_TIMEOUT); "
            "crash recovery owns the message now, this turn's result is dropped.",
            user_message.pk,
        )
        user_message.refresh_from_db()
        return TurnOutcome(
            ProcessingStatus(user_message.processing_status), "", user_message, None, None, error, lease_lost=True
        )

    reason = {"reason": error.reason} if isinstance(error, TurnCancelled) else {}
    publish_status(user_message, **reason)
    if agent_message is not None:
        publish_status(agent_message, **reason)
    if status == ProcessingStatus.FAILED:
        send_turn_signal(turn_failed, agent_cls, session=session, user_message=user_message, exception=error)
    send_turn_signal(
        turn_finished,
        agent_cls,
        session=session,
        user_message=user_message,
        agent_message=agent_message,
        status=status,
        metrics=metrics,
    )
    response = text if status == ProcessingStatus.COMPLETED else state.stream_text
    return TurnOutcome(status, response, user_message, agent_message, error_message, error)


def next_pending(session_id: Any) -> ConversationMessage | None:
    """The oldest user message of the session still waiting for its turn."""
    return (
        ConversationMessage.objects.filter(
            session_id=session_id,
            message_type=MessageType.USER,
            processing_status=ProcessingStatus.PENDING,
        )
        .order_by("timestamp", "id")
        .first()
    )


def process_pending(
    session_id: Any,
    *,
    request: Any = None,
    request_for: Any = None,
    until: Any = None,
    token: str | None = None,
    max_turns: int | None = None,
) -> list[TurnOutcome]:
    """Answer the session's pending user messages one at a time, in arrival order.

    Returns at once (with no outcomes) when another turn holds the lease: that turn's worker picks
    the new messages up when it finishes. ``until`` stops after that message and ``max_turns``
    after that many turns; messages still waiting then are scheduled again
    (:func:`~django_ai.conversations.dispatch.schedule_session`). ``request`` is passed to the
    agent for the message ``request_for`` only. ``token`` is a lease the caller already holds.
    """
    outcomes: list[TurnOutcome] = []
    leased_for: Any = None  # the message the lease already names as active_turn
    while True:
        message = next_pending(session_id)
        if message is None:
            if token is not None:
                release_lease(session_id, token)
                token = None
                # A message committed while we held the lease saw it held and left the work to
                # us: look again now that the lease is free.
                if next_pending(session_id) is not None:
                    continue
            return outcomes
        if token is None:
            token = acquire_lease(session_id, message.pk)
            if token is None:
                return outcomes
            leased_for = message.pk
            continue  # re-read the queue under the lease
        if message.pk != leased_for:
            moved = ConversationSession.objects.filter(pk=session_id, turn_token=token).update(
                active_turn=message.pk, turn_heartbeat_at=Now()
            )
            if not moved:
                return outcomes  # the lease was taken over: its new holder carries on
        leased_for = None
        try:
            outcome = run_turn(message, token=token, request=request if message.pk == request_for else None)
        except BaseException:
            # The turn is recorded (a KeyboardInterrupt raised again) or the database failed:
            # either way, do not leave the conversation leased until STALE_TURN_TIMEOUT.
            try:
                release_lease(session_id, token)
            except Exception:  # noqa: BLE001 - the original error matters more; recovery cleans up
                logger.exception("Could not release the lease of conversation %s", session_id)
            raise
        outcomes.append(outcome)
        if outcome.lease_lost:
            return outcomes
        if (until is not None and message.pk == until) or (max_turns is not None and len(outcomes) >= max_turns):
            release_lease(session_id, token)
            if next_pending(session_id) is not None:
                from .dispatch import schedule_session

                schedule_session(session_id)
            return outcomes
