"""The turn: answer one user message with the session's agent.

A turn holds the session's *lease* (``ConversationSession.turn_token``) instead of a database lock,
so no transaction stays open while the agent thinks. The lease is taken with one conditional UPDATE
(compare-and-set), renewed by heartbeats, and released at the end; a lease whose heartbeat is older
than ``STALE_TURN_TIMEOUT`` may be taken over (crash recovery).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .conf import ai_settings
from .constants import EventName, MessageType, ProcessingStatus
from .exceptions import ContextValidationError, TurnCancelled
from .internal.turn import TurnState, current_turn
from .models import ConversationMessage, ConversationSession
from .realtime import publish
from .registry import registry
from .signals import turn_failed, turn_finished, turn_started

logger = logging.getLogger("django_ai.conversations.turns")

__all__ = ["TurnOutcome", "acquire_lease", "release_lease", "run_turn"]


@dataclass
class TurnOutcome:
    status: ProcessingStatus
    response: str
    user_message: ConversationMessage
    agent_message: ConversationMessage | None
    error_message: ConversationMessage | None = None
    exception: BaseException | None = None


def acquire_lease(session_id: Any, message_id: Any) -> str | None:
    """Take the session's turn lease for ``message_id``; the token, or None when a live turn holds it."""
    token = uuid.uuid4().hex
    now = timezone.now()
    stale = now - timedelta(seconds=ai_settings.STALE_TURN_TIMEOUT)
    taken = (
        ConversationSession.objects.filter(pk=session_id)
        .filter(Q(turn_token="") | Q(turn_heartbeat_at__lt=stale) | Q(turn_heartbeat_at__isnull=True))
        .update(turn_token=token, active_turn=message_id, turn_heartbeat_at=now)
    )
    return token if taken else None


def renew_lease(session_id: Any, token: str) -> bool:
    return bool(
        ConversationSession.objects.filter(pk=session_id, turn_token=token).update(
            turn_heartbeat_at=timezone.now()
        )
    )


def release_lease(session_id: Any, token: str) -> None:
    ConversationSession.objects.filter(pk=session_id, turn_token=token).update(
        turn_token="", active_turn=None, turn_heartbeat_at=None
    )


def _publish_status(message: ConversationMessage, **extra: Any) -> None:
    publish(
        EventName.MESSAGE_STATUS,
        session_id=message.session_id,
        message_id=message.pk,
        message_type=message.message_type,
        status=message.processing_status,
        **extra,
    )


def _generic_error_text(exc: BaseException) -> str:
    from django.conf import settings

    expose = ai_settings.EXPOSE_ERROR_DETAILS
    if expose is None:
        expose = settings.DEBUG
    text = ai_settings.GENERIC_ERROR_MESSAGE
    if expose:
        text = f"{text}\n\n{type(exc).__name__}: {exc}"
    return text


def _ms(start: float, end: float | None) -> int | None:
    return None if end is None else int((end - start) * 1000)


def run_turn(user_message: ConversationMessage, *, token: str, request: Any = None) -> TurnOutcome:
    """Answer ``user_message``; the caller holds the session's lease ``token``.

    Never raises for agent failures: the outcome says what happened and the rows record it.
    """
    session = ConversationSession.objects.get(pk=user_message.session_id)
    agent_cls = registry.get(session.agent_path)
    now = timezone.now()
    queue_wait_ms = int((now - user_message.timestamp).total_seconds() * 1000)
    ConversationMessage.objects.filter(pk=user_message.pk).update(
        processing_status=ProcessingStatus.PROCESSING,
        started_at=now,
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    user_message.processing_status = ProcessingStatus.PROCESSING
    user_message.started_at = now
    _publish_status(user_message)

    # In the order they were attached (the through table's pk), not File's default ordering.
    files = [
        link.file
        for link in ConversationMessage.files.through.objects.filter(conversationmessage_id=user_message.pk)
        .select_related("file")
        .order_by("pk")
    ]
    state = TurnState(session=session, user_message=user_message, files={str(f.pk): f for f in files})
    timeout = agent_cls.turn_timeout if agent_cls.turn_timeout is not None else ai_settings.TURN_TIMEOUT
    if timeout:
        state.deadline = state.started + float(timeout)
    state.poll = _make_poller(state, token)

    turn_started.send(sender=agent_cls, session=session, user_message=user_message)
    response: str | None = None
    error: BaseException | None = None
    try:
        context = agent_cls.validate_context(session.context)
        agent = agent_cls(context=context, session=session, request=request, files=files, message=user_message)
        agent._cancel_check = state.is_cancelled
        state.agent = agent
        response = _call_agent(agent, state, user_message.content, request)
        if response is None:
            response = state.stream_text
        if not isinstance(response, str):
            raise TypeError(
                f"{agent_cls.__name__}.get_response returned {type(response).__name__}; return the reply as a str."
            )
        # PostgreSQL cannot store NUL in text.
        response = response.replace("\x00", "\ufffd")
        # The context the agent leaves must still fit its Context (assignments are not validated)
        # and be JSON: otherwise this turn fails and the stored context stays as it was.
        agent.context = agent_cls.validate_context(agent.context)
        agent.context.model_dump(mode="json")
        if state.is_cancelled():
            raise TurnCancelled(state.cancel_reason or "cancelled")
    except TurnCancelled as exc:
        error = exc
    except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - any agent failure ends the turn as failed
        if state.cancel_reason is not None and isinstance(exc, asyncio.CancelledError):
            error = TurnCancelled(state.cancel_reason)
        else:
            error = exc
    finally:
        from .realtime import get_backend

        try:
            get_backend().flush(timeout=1.0)
        except Exception:  # noqa: BLE001
            logger.exception("Flushing realtime events failed")

    ended = time.monotonic()
    metrics = {
        "queue_wait_ms": max(queue_wait_ms, 0),
        "first_chunk_ms": _ms(state.started, state.first_chunk),
        "total_ms": _ms(state.started, ended),
        "chunks": state.sequence,
        **state.usage,
    }
    if error is None:
        return _finish_success(state, response or "", metrics, agent_cls)
    if isinstance(error, TurnCancelled):
        return _finish_cancelled(state, error, metrics, agent_cls)
    return _finish_failed(state, error, metrics, agent_cls, context_error=isinstance(error, ContextValidationError))


def _make_poller(state: TurnState, token: str) -> Any:
    """Checked on every write: renews the lease and notices a cancel request, at most every 0.5 s."""
    last = [0.0]
    interval = min(0.5, float(ai_settings.TURN_HEARTBEAT_INTERVAL))

    def poll() -> str | None:
        now = time.monotonic()
        if now - last[0] < interval:
            return None
        last[0] = now

        def check() -> str | None:
            renew_lease(state.session.pk, token)
            row = (
                ConversationMessage.objects.filter(pk=state.user_message.pk)
                .values_list("cancel_requested_at", flat=True)
                .first()
            )
            return "cancelled" if row is not None else None

        return state.call_db(check)

    return poll


def _call_agent(agent: Any, state: TurnState, message: str, request: Any) -> Any:
    token = current_turn.set(state)
    try:
        if not type(agent).is_async:
            return agent.get_response(message, request=request)
        return _run_async(agent, state, message, request)
    finally:
        current_turn.reset(token)


def _run_async(agent: Any, state: TurnState, message: str, request: Any) -> Any:
    """Run the coroutine on a loop in a helper thread while this thread serves database calls."""
    import contextvars

    result: dict[str, Any] = {}
    loop_ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> Any:
        holder["task"] = asyncio.current_task()
        holder["loop"] = asyncio.get_running_loop()
        loop_ready.set()
        return await agent.get_response(message, request=request)

    def target() -> None:
        try:
            result["value"] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - re-raised on the turn's thread
            result["error"] = exc
        finally:
            loop_ready.set()
            state.wake()

    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(target,), name="django-ai-agent", daemon=True)
    thread.start()

    def tick() -> None:
        if state.cancel_reason is None:
            if state.is_cancelled() or (state.poll and state.poll()):
                state.cancel(state.cancel_reason or "cancelled")
        if state.cancel_reason is not None and "task" in holder and not holder.get("cancel_sent"):
            holder["cancel_sent"] = True
            holder["loop"].call_soon_threadsafe(holder["task"].cancel)

    state.serve_db_calls(until=lambda: not thread.is_alive(), tick=tick)
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _finish_success(state: TurnState, response: str, metrics: dict[str, Any], agent_cls: Any) -> TurnOutcome:
    session, user_message = state.session, state.user_message
    now = timezone.now()
    with transaction.atomic():
        agent_message = state.agent_message
        if agent_message is None:
            agent_message = ConversationMessage(
                session=session, message_type=MessageType.AGENT, reply_to=user_message
            )
        agent_message.content = response
        agent_message.processing_status = ProcessingStatus.COMPLETED
        agent_message.stream_sequence = state.sequence
        agent_message.metrics = metrics
        agent_message.save()
        user_message.processing_status = ProcessingStatus.COMPLETED
        user_message.finished_at = now
        user_message.save(update_fields=["processing_status", "finished_at", "updated_at"])
        session.context = state.agent.context.model_dump(mode="json")
        session.last_message_at = now
        session.save(update_fields=["context", "last_message_at", "updated_at"])
    _publish_status(user_message)
    _publish_status(agent_message)
    turn_finished.send(
        sender=agent_cls,
        session=session,
        user_message=user_message,
        agent_message=agent_message,
        status=ProcessingStatus.COMPLETED,
        metrics=metrics,
    )
    return TurnOutcome(ProcessingStatus.COMPLETED, response, user_message, agent_message)


def _finish_cancelled(state: TurnState, error: TurnCancelled, metrics: dict[str, Any], agent_cls: Any) -> TurnOutcome:
    session, user_message = state.session, state.user_message
    now = timezone.now()
    timed_out = error.reason == "timeout"
    status = ProcessingStatus.FAILED if timed_out else ProcessingStatus.CANCELLED
    metrics = {**metrics, "stopped": error.reason}
    error_message = None
    with transaction.atomic():
        agent_message = state.agent_message
        if agent_message is not None:
            agent_message.content = state.stream_text
            agent_message.stream_sequence = state.sequence
            agent_message.processing_status = status
            agent_message.metrics = metrics
            agent_message.save()
        user_message.processing_status = status
        user_message.finished_at = now
        user_message.save(update_fields=["processing_status", "finished_at", "updated_at"])
        if timed_out:
            error_message = ConversationMessage.objects.create(
                session=session,
                message_type=MessageType.SYSTEM,
                content="The agent took too long to answer and was stopped.",
                reply_to=user_message,
                metadata={"code": "turn_timeout"},
            )
        session.last_message_at = now
        session.save(update_fields=["last_message_at", "updated_at"])
    _publish_status(user_message, reason=error.reason)
    if agent_message is not None:
        _publish_status(agent_message, reason=error.reason)
    if timed_out:
        logger.warning("Turn for message %s timed out", user_message.pk)
        turn_failed.send(sender=agent_cls, session=session, user_message=user_message, exception=error)
    turn_finished.send(
        sender=agent_cls, session=session, user_message=user_message, agent_message=agent_message,
        status=status, metrics=metrics,
    )
    return TurnOutcome(status, state.stream_text, user_message, agent_message, error_message, error)


def _finish_failed(state: TurnState, error: BaseException, metrics: dict[str, Any], agent_cls: Any, *, context_error: bool = False) -> TurnOutcome:
    session, user_message = state.session, state.user_message
    logger.error(
        "Agent %s failed to answer message %s of session %s",
        session.agent_path, user_message.pk, session.pk, exc_info=(type(error), error, error.__traceback__),
    )
    now = timezone.now()
    with transaction.atomic():
        agent_message = state.agent_message
        if agent_message is not None:
            agent_message.content = state.stream_text
            agent_message.stream_sequence = state.sequence
            agent_message.processing_status = ProcessingStatus.FAILED
            agent_message.metrics = metrics
            agent_message.save()
        user_message.processing_status = ProcessingStatus.FAILED
        user_message.finished_at = now
        user_message.save(update_fields=["processing_status", "finished_at", "updated_at"])
        error_message = ConversationMessage.objects.create(
            session=session,
            message_type=MessageType.SYSTEM,
            content=_generic_error_text(error),
            reply_to=user_message,
            metadata={"code": "invalid_context" if context_error else "agent_error"},
        )
        session.last_message_at = now
        session.save(update_fields=["last_message_at", "updated_at"])
    _publish_status(user_message)
    if agent_message is not None:
        _publish_status(agent_message)
    turn_failed.send(sender=agent_cls, session=session, user_message=user_message, exception=error)
    turn_finished.send(
        sender=agent_cls, session=session, user_message=user_message, agent_message=agent_message,
        status=ProcessingStatus.FAILED, metrics=metrics,
    )
    return TurnOutcome(ProcessingStatus.FAILED, "", user_message, agent_message, error_message, error)


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


def process_pending(session_id: Any, *, request: Any = None, request_for: Any = None, until: Any = None, token: str | None = None) -> list[TurnOutcome]:
    """Answer the session's pending user messages one at a time, in arrival order.

    Returns at once (with no outcomes) when another turn holds the lease: that turn's worker picks
    the new messages up when it finishes. ``until`` stops after that message; ``request`` is passed
    to the agent for the message ``request_for`` only. ``token`` is a lease the caller already holds.
    """
    outcomes: list[TurnOutcome] = []
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
            continue  # re-read the queue under the lease
        ConversationSession.objects.filter(pk=session_id, turn_token=token).update(
            active_turn=message.pk, turn_heartbeat_at=timezone.now()
        )
        outcome = run_turn(message, token=token, request=request if message.pk == request_for else None)
        outcomes.append(outcome)
        if until is not None and message.pk == until:
            release_lease(session_id, token)
            token = None
            if next_pending(session_id) is not None:
                from .dispatch import schedule_session

                schedule_session(session_id)
            return outcomes
