"""Run a turn, and a conversation's queue of waiting messages one turn at a time.

:func:`run_turn` answers one user message under the conversation's lease (``turns.lease``): it
marks it ``processing``, runs the agent (``turns.execution``) and records the outcome
(``turns.outcome``). :func:`process_pending` takes the lease and answers the waiting messages in
arrival order; it says whether messages still wait, and its caller (the turn task, or
``send_message``) schedules them: the runner knows nothing of tasks.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db.models import F
from django.utils import timezone

from .. import telemetry
from ..agent import ConversationAgent
from ..conf import ai_settings
from ..constants import ErrorCode, MessageType, ProcessingStatus, SessionStatus
from ..exceptions import AgentNotFound, TurnCancelled
from ..models import ConversationMessage, ConversationSession, File
from ..realtime import get_backend
from ..registry import registry
from ..signals import turn_started
from .execution import call_agent
from .lease import acquire_lease, claim_lease, move_lease, release_lease
from .notify import generic_error_text, logger, publish_status, send_turn_signal
from .outcome import USAGE_BEFORE_RESUME, NothingToWaitFor, TurnOutcome, conclude, finish, suspend
from .state import TurnState, TurnSuspended

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request


__all__ = ["Processed", "TurnOutcome", "next_pending", "process_pending", "run_turn"]


@dataclass
class Processed:
    """What :func:`process_pending` did: the turns it ran, and whether messages of the conversation
    still wait with nobody holding its lease (``until`` or ``max_turns`` stopped the loop): the
    caller then schedules the conversation again."""

    outcomes: list[TurnOutcome] = field(default_factory=list)
    still_waiting: bool = False


def _ms(start: float, end: float | None) -> int | None:
    return None if end is None else int((end - start) * 1000)


def run_turn(
    user_message: ConversationMessage,
    *,
    token: str,
    request: HttpRequest | Request | None = None,
    session: ConversationSession | None = None,
    files: list[File] | None = None,
    started: bool = False,
) -> TurnOutcome:
    """Answer ``user_message``; the caller holds the session's lease ``token``, and the turn
    releases it: in the transaction that records its end, or at once when the message does not
    start (unless the lease was lost: then it is crash recovery's).

    ``session``: the conversation's row, when the caller read it under the lease or knows it is
    unchanged since (``lease.claim_lease``); read here otherwise. ``files``: the message's
    attached files in their order, when the caller knows them (``[]``: none); read here otherwise.
    ``started``: the caller saved the message ``processing`` already (``started_at``, ``attempts``
    1, ``context_before``: ``inline.answer_new_message``), so no UPDATE starts it.

    Never raises for agent failures: the outcome says what happened and the rows record it. The
    turn is the span ``django_ai.turn`` (a child of the current trace context: the request's, or
    the one the turn's task carried), and every log line within it carries the conversation and
    message ids (docs/observability.md).
    """
    ids = {"conversation_id": str(user_message.session_id), "message_id": str(user_message.pk)}
    attributes = {"django_ai.conversation.id": ids["conversation_id"], "django_ai.message.id": ids["message_id"]}
    with telemetry.log_context(**ids), telemetry.span("django_ai.turn", attributes) as turn_span:
        outcome = _run_turn(
            user_message,
            token=token,
            request=request,
            turn_span=turn_span,
            session=session,
            files=files,
            already_started=started,
        )
        turn_span.set(
            **{"django_ai.turn.outcome": str(outcome.status), "django_ai.turn.lease_lost": outcome.lease_lost or None}
        )
        if outcome.status == ProcessingStatus.FAILED and outcome.exception is not None:
            turn_span.error(outcome.exception)
        return outcome


def _ended(turn_span: telemetry.SpanHandle, agent: str, outcome: TurnOutcome, metrics: dict[str, Any]) -> TurnOutcome:
    """Put the numbers of an ended turn on its span and on the turn metrics."""
    queue_wait_ms, total_ms, first_chunk_ms = (
        metrics.get("queue_wait_ms"),
        metrics.get("total_ms"),
        metrics.get("first_chunk_ms"),
    )
    turn_span.set(
        **{
            "django_ai.turn.total_ms": total_ms,
            "django_ai.turn.first_chunk_ms": first_chunk_ms,
            "django_ai.turn.chunks": metrics.get("chunks"),
            "django_ai.turn.file_wait_ms": metrics.get("file_wait_ms"),
        }
    )
    telemetry.record_turn(
        agent=agent,
        outcome=str(outcome.status),
        duration_s=None if total_ms is None else total_ms / 1000,
        queue_wait_s=None if queue_wait_ms is None else queue_wait_ms / 1000,
    )
    if first_chunk_ms is not None:
        telemetry.record_first_chunk(agent=agent, seconds=first_chunk_ms / 1000)
    return outcome


def _run_turn(
    user_message: ConversationMessage,
    *,
    token: str,
    request: HttpRequest | Request | None,
    turn_span: telemetry.SpanHandle,
    session: ConversationSession | None,
    files: list[File] | None,
    already_started: bool,
) -> TurnOutcome:
    if session is None:
        session = ConversationSession.objects.get(pk=user_message.session_id)
    turn_span.set(**{"django_ai.agent": session.agent_path, "django_ai.owner.kind": _owner_kind(session)})
    now = user_message.started_at if already_started and user_message.started_at else timezone.now()
    if session.status == SessionStatus.DELETED and not already_started:
        # Its owner deleted the conversation (a message sent at that moment can commit after the
        # delete's cancel): the agent is not run, the message ends cancelled.
        ConversationMessage.objects.filter(pk=user_message.pk, processing_status=ProcessingStatus.PENDING).update(
            processing_status=ProcessingStatus.CANCELLED, finished_at=now, updated_at=now
        )
        release_lease(session.pk, token)
        user_message.refresh_from_db()
        return TurnOutcome(ProcessingStatus(user_message.processing_status), "", user_message, None)
    # The Context the turn starts from: a version made by regenerate or edit (turns.versions)
    # starts from the one its original started from, filled in when it was made; any other turn
    # (a new message, a resume after approval, a rerun) from the conversation's. A turn's first
    # run records it, in the UPDATE that starts the turn (no query of its own).
    snapshot: dict[str, Any] = {}
    ran_before = bool(user_message.attempts) and not already_started
    if already_started or (user_message.context_before is not None and not user_message.attempts):
        start_context = user_message.context_before
    else:
        start_context = {} if session.context is None else session.context
        if user_message.context_before is None:
            snapshot["context_before"] = start_context
    if not already_started:
        # Only a message still waiting starts: a cancel may have reached it since it was picked.
        updated = ConversationMessage.objects.filter(
            pk=user_message.pk, processing_status=ProcessingStatus.PENDING
        ).update(
            processing_status=ProcessingStatus.PROCESSING,
            started_at=now,
            attempts=F("attempts") + 1,
            updated_at=now,
            **snapshot,
        )
        if not updated:
            release_lease(session.pk, token)
            user_message.refresh_from_db()
            return TurnOutcome(ProcessingStatus(user_message.processing_status), "", user_message, None)
        user_message.attempts = (user_message.attempts or 0) + 1
    # A message that ran before may be a reply suspended for tool approval: one query, only then.
    suspended = _suspended_reply(user_message) if ran_before else None
    # A resumed turn waited in the queue since its last answer (the save that made it pending).
    queued_since = user_message.updated_at if suspended is not None else user_message.timestamp
    queue_wait_ms = max(int((now - queued_since).total_seconds() * 1000), 0)
    user_message.processing_status = ProcessingStatus.PROCESSING
    user_message.started_at = now
    turn_span.set(
        **{
            "django_ai.turn.queue_wait_ms": queue_wait_ms,
            "django_ai.turn.attempt": user_message.attempts,
            "django_ai.turn.resumed": suspended is not None,
        }
    )
    publish_status(user_message)
    if suspended is not None:
        publish_status(suspended)

    if files is None:
        # In the order they were attached (the through table's pk), not File's default ordering.
        files = [
            link.file
            for link in ConversationMessage.files.through.objects.filter(conversationmessage_id=user_message.pk)
            .select_related("file")
            .order_by("pk")
        ]
    if snapshot:
        user_message.context_before = start_context
    state = TurnState(
        session=session, user_message=user_message, files={str(f.pk): f for f in files}, context_before=start_context
    )
    # The reply's text before this run (a resumed reply's, kept as ResponseStream appends to it).
    text_before = suspended.content if suspended is not None else ""
    if suspended is not None:
        _continue_reply(state, suspended)
    try:
        agent_cls = registry.get(session.agent_path)
    except AgentNotFound as exc:
        # E.g. the agent is registered in the web process but not in the worker's.
        error_id = telemetry.logs.new_error_id()  # on the log record and the notice (operations view)
        logger.error(
            "Cannot answer message %s: %s (error_id %s)", user_message.pk, exc, error_id, extra={"error_id": error_id}
        )
        # Paired with the turn_finished below, as for every turn (receivers count turns in flight).
        send_turn_signal(turn_started, ConversationAgent, session=session, user_message=user_message)
        failed_metrics = {"queue_wait_ms": queue_wait_ms, "attempt": user_message.attempts}
        failed = finish(
            state,
            token,
            ConversationAgent,
            status=ProcessingStatus.FAILED,
            text="",
            metrics=failed_metrics,
            error=exc,
            notice=(generic_error_text(exc), ErrorCode.AGENT_NOT_FOUND),
            error_id=error_id,
        )
        return _ended(turn_span, session.agent_path, failed, failed_metrics)
    timeout = agent_cls.turn_timeout if agent_cls.turn_timeout is not None else ai_settings.TURN_TIMEOUT
    if timeout:
        state.deadline = state.started + float(timeout)

    send_turn_signal(turn_started, agent_cls, session=session, user_message=user_message)
    response: str | None = None
    error: BaseException | None = None
    suspension: TurnSuspended | None = None
    reraise: BaseException | None = None
    try:
        # A JSON null written by hand stands for "no state yet", as an empty dict does.
        context = agent_cls.validate_context(start_context)
        agent = agent_cls(context=context, session=session, request=request, files=files, message=user_message)
        agent._cancel_check = state.check_cancelled
        state.agent = agent
        response = call_agent(agent, state, user_message.content, request, token)
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
        if state.resumed and not response.startswith(text_before):
            # A resumed reply: what get_response returns continues the text written before the
            # suspension (an agent may return the whole reply instead: then it starts with it).
            response = text_before + response
        # The context the agent leaves must still fit its Context (assignments are not validated)
        # and be JSON: otherwise this turn fails and the stored context stays as it was.
        agent.context = agent_cls.validate_context(agent.context)
        agent_cls.dump_context(agent.context)
        if state.is_cancelled():
            raise TurnCancelled(state.cancel_reason or "cancelled")
    except TurnCancelled as exc:
        error = exc
    except TurnSuspended as exc:
        if state.is_cancelled():
            error = TurnCancelled(state.cancel_reason or "cancelled")
        else:
            # The tools that ran before the suspension may have changed the Context: it is saved
            # with the suspension, so it must fit the agent's Context and be JSON.
            try:
                agent.context = agent_cls.validate_context(agent.context)
                agent_cls.dump_context(agent.context)
            except Exception as invalid:  # noqa: BLE001 - recorded as the turn's failure
                error = invalid
            else:
                suspension = exc
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
                    session.agent_path,
                    state.cancel_reason,
                    user_message.pk,
                    exc_info=(type(exc), exc, exc.__traceback__),
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
    if state.resumed:
        metrics["resumed"] = True
    if suspension is not None:
        try:
            return _ended(turn_span, session.agent_path, suspend(state, token, agent_cls, metrics=metrics), metrics)
        except NothingToWaitFor as exc:
            error = exc
    outcome = conclude(state, token, agent_cls, response=response, error=error, metrics=metrics, timeout=timeout)
    _ended(turn_span, session.agent_path, outcome, metrics)
    if reraise is not None:
        raise reraise  # recorded as failed; the process is stopping
    return outcome


def _owner_kind(session: ConversationSession) -> str:
    if session.user_id is not None:
        return "user"
    return "anonymous" if session.anonymous_id else "none"


def _suspended_reply(user_message: ConversationMessage) -> ConversationMessage | None:
    """The agent message of ``user_message`` suspended for tool approval, now streaming again."""
    reply = ConversationMessage.objects.filter(
        reply_to=user_message, message_type=MessageType.AGENT, processing_status=ProcessingStatus.AWAITING_APPROVAL
    ).first()
    if reply is not None:
        reply.processing_status = ProcessingStatus.STREAMING
        reply.save(update_fields=["processing_status", "updated_at"])
    return reply


def _continue_reply(state: TurnState, reply: ConversationMessage) -> None:
    """The turn continues the suspended ``reply``: ResponseStream appends to it, and the usage its
    earlier runs reported is added to."""
    state.agent_message = reply
    state.streamed = [reply.content] if reply.content else []
    state.sequence = state.persisted_sequence = reply.stream_sequence
    state.resumed = True
    metadata = dict(reply.metadata or {})
    usage = metadata.pop(USAGE_BEFORE_RESUME, None)
    if isinstance(usage, dict):
        state.usage.update({k: v for k, v in usage.items() if isinstance(v, (int, float))})
    reply.metadata = metadata


def next_pending(session_id: Any) -> ConversationMessage | None:
    """The oldest user message of the session still waiting for its turn; None also while an older
    one's turn is suspended for tool approval (newer messages wait until it ends). One query."""
    message = (
        ConversationMessage.objects.filter(
            session_id=session_id,
            message_type=MessageType.USER,
            processing_status__in=[ProcessingStatus.PENDING, ProcessingStatus.AWAITING_APPROVAL],
        )
        .order_by("timestamp", "id")
        .first()
    )
    if message is None or message.processing_status != ProcessingStatus.PENDING:
        return None
    return message


def process_pending(
    session_id: Any,
    *,
    request: HttpRequest | Request | None = None,
    request_for: Any = None,
    until: Any = None,
    token: str | None = None,
    max_turns: int | None = None,
) -> Processed:
    """Answer the session's pending user messages one at a time, in arrival order.

    Returns at once (with no outcomes) when another turn holds the lease: that turn's worker picks
    the new messages up when it finishes. ``until`` stops after that message and ``max_turns``
    after that many turns; messages still waiting then are the caller's to schedule
    (``Processed.still_waiting``). ``request`` is passed to the agent for the message
    ``request_for`` only. ``token`` is a lease the caller already holds.
    """
    done = Processed()
    outcomes = done.outcomes
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
            return done
        if token is None:
            # Next in line: the lease is taken for it without reading the queue again.
            token = claim_lease(message)
            if token is None:
                token = acquire_lease(session_id, message.pk)
                if token is None:
                    return done
                leased_for = message.pk
                continue  # re-read the queue under the lease
            leased_for = message.pk
        if message.pk != leased_for and not move_lease(session_id, token, message.pk):
            return done  # the lease was taken over: its new holder carries on
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
        # The turn released the lease (in the transaction that recorded it): a message committed
        # while it was held is found by the next look at the queue, which runs after that commit.
        token = None
        outcomes.append(outcome)
        if outcome.lease_lost:
            return done
        if (until is not None and message.pk == until) or (max_turns is not None and len(outcomes) >= max_turns):
            done.still_waiting = next_pending(session_id) is not None
            return done
