"""How a turn ended, recorded: completed, failed (with a notice), cancelled or timed out.

Everything a turn's end writes (the agent message, the user message's status, the system notice
that tells the user why it failed, the new context) is saved in one transaction, and only while
the turn still holds its lease: a turn whose worker stalled past ``STALE_TURN_TIMEOUT`` finds the
lease taken over by crash recovery and drops its result. Then the status events and the turn
signals go out. A change to how a turn fails (its notice, its error code, its status) goes here.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Count, DecimalField, Exists, F, Q, Value
from django.db.models.functions import Least
from django.db.models.signals import post_save
from django.utils import timezone

from .. import telemetry
from ..constants import ApprovalStatus, ErrorCode, MessageType, ProcessingStatus
from ..exceptions import ContextValidationError, TurnCancelled
from ..models import ConversationMessage, ConversationSession
from ..signals import turn_failed, turn_finished
from ..telemetry.logs import new_error_id
from ..usage import ModelUsage, merge_models, models_metrics, parse_models, price_usage, total
from .lease import RELEASED, db_alias, renew_lease
from .notify import generic_error_text, logger, publish_status, send_path_change, send_turn_signal
from .state import TurnState
from .steps import end_open_steps

__all__ = ["NothingToWaitFor", "TurnOutcome", "conclude", "finish", "suspend"]

#: Where a suspended reply keeps the usage its first runs reported (``report_usage``), so that
#: the run that resumes it adds to it: ``metadata`` of the agent message, which clients do not read.
USAGE_BEFORE_RESUME = "usage_before_resume"


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


def conclude(
    state: TurnState,
    token: str,
    agent_cls: Any,
    *,
    response: str | None,
    error: BaseException | None,
    metrics: dict[str, Any],
    timeout: Any,
) -> TurnOutcome:
    """Record the end of a turn whose agent ran: ``error`` None means it answered ``response``."""
    session, user_message = state.session, state.user_message
    if error is None:
        return finish(
            state,
            token,
            agent_cls,
            status=ProcessingStatus.COMPLETED,
            text=response or "",
            metrics=metrics,
            save_context=True,
        )
    # A turn that did not complete keeps what the agent had streamed.
    stopped = partial(finish, state, token, agent_cls, text=state.stream_text, metrics=metrics, error=error)
    if isinstance(error, TurnCancelled):
        metrics["stopped"] = error.reason
        if error.reason == "timeout":
            # The failure's log line and its notice share an error_id (the admin's operations view).
            error_id = new_error_id()
            logger.warning(
                "Turn for message %s timed out after %s s (error_id %s)",
                user_message.pk,
                timeout,
                error_id,
                extra={"error_id": error_id},
            )
            return stopped(
                status=ProcessingStatus.FAILED,
                notice=("The agent took too long to answer and was stopped.", ErrorCode.TURN_TIMEOUT),
                error_id=error_id,
            )
        return stopped(status=ProcessingStatus.CANCELLED)
    error_id = new_error_id()
    logger.error(
        "Agent %s failed to answer message %s of session %s (error_id %s)",
        session.agent_path,
        user_message.pk,
        session.pk,
        error_id,
        exc_info=(type(error), error, error.__traceback__),
        extra={"error_id": error_id},
    )
    code = ErrorCode.INVALID_CONTEXT if isinstance(error, ContextValidationError) else ErrorCode.AGENT_ERROR
    return stopped(status=ProcessingStatus.FAILED, notice=(generic_error_text(error), code), error_id=error_id)


class _LeaseLost(Exception):
    pass


class NothingToWaitFor(RuntimeError):
    """The agent raised ``TurnSuspended`` while no tool step of its reply waits for an approval
    (nor was one answered during this run): the turn fails instead of waiting for nothing."""


def _steps_to_wait_for(user_message: ConversationMessage) -> bool:
    """Whether a tool step of the reply waits for an approval (True), or was answered while this
    run went on (False: resume at once); NothingToWaitFor when neither."""
    answered_now = Q(processing_status=ProcessingStatus.PENDING) | Q(
        component_data__approval__status__in=[ApprovalStatus.REJECTED, ApprovalStatus.EXPIRED],
        updated_at__gte=user_message.started_at,
    )
    counts = ConversationMessage.objects.filter(reply_to=user_message, message_type=MessageType.TOOL).aggregate(
        waiting=Count("pk", filter=Q(processing_status=ProcessingStatus.AWAITING_APPROVAL)),
        answered=Count("pk", filter=answered_now),
    )
    if counts["waiting"]:
        return True
    if counts["answered"]:
        return False
    raise NothingToWaitFor(
        "The agent raised TurnSuspended, but no tool step of its reply waits for an approval: raise it only "
        "after creating the steps (message_type 'tool', processing_status 'awaiting_approval')."
    )


def _record_user_message(state: TurnState, now: Any, **values: Any) -> bool:
    """Write the turn's end on its user message; whether the message is still on the active path.

    One UPDATE on the normal path, and the ``post_save`` a ``save()`` sends. A message that left
    the path while its turn ran (a version made meanwhile: ``turns.versions``) is updated all the
    same, by a second one; the caller then leaves the conversation's Context alone and takes the
    turn's rows off the path.
    """
    user_message = state.user_message
    rows = ConversationMessage.objects.filter(pk=user_message.pk)
    user_message.updated_at = now
    for name, value in values.items():
        setattr(user_message, name, value)
    on_path = bool(rows.filter(active=True).update(updated_at=now, **values))
    if not on_path:
        rows.update(updated_at=now, **values)
        user_message.active = False
    # What the save() this replaces sent: the bridge's model_change and any receiver of the project.
    post_save.send(
        sender=ConversationMessage,
        instance=user_message,
        created=False,
        update_fields=frozenset([*values, "updated_at"]),
        raw=False,
        using=db_alias(),
    )
    return on_path


def _leave_path(state: TurnState) -> None:
    """The rows of a turn whose user message left the active path while it ran (its reply, tool
    steps, widget messages, notice, created active) leave it too, and clients hear of it."""
    replies = ConversationMessage.objects.filter(reply_to=state.user_message, active=True)
    pks = list(replies.values_list("pk", flat=True))
    if not pks:
        return
    ConversationMessage.objects.filter(pk__in=pks).update(active=False, updated_at=timezone.now())
    if state.agent_message is not None:
        state.agent_message.active = False
    send_path_change(state.session.pk, pks)


def _run_usage(state: TurnState, metrics: dict[str, Any]) -> dict[str, ModelUsage]:
    """This run's usage by model, priced (``usage.price_usage``); ``metrics`` get the whole
    reply's (``models``, ``cost``): a resumed reply's earlier runs are in the ``models`` its
    suspension recorded on the agent message."""
    run = price_usage(state.model_usage)
    earlier: dict[str, ModelUsage] = {}
    if state.resumed and state.agent_message is not None:
        earlier = parse_models((state.agent_message.metrics or {}).get("models"))
    metrics.update(models_metrics(merge_models(earlier, run)))
    return run


#: The most a session's ``cost`` column holds (USD, whole: exact as SQLite's REAL too).
MAX_SESSION_COST = Decimal(99_999_999)
COST_FIELD = DecimalField(max_digits=16, decimal_places=8)


def _record_session(
    state: TurnState,
    now: Any,
    run: dict[str, ModelUsage],
    *,
    token: str | None,
    context: Any = None,
    on_path: bool = False,
) -> bool:
    """The turn's end on the session row, with the lease released, in one UPDATE: ``last_message_at``,
    ``updated_at``, the run's usage added to the sums (F() expressions: no read), the new Context
    when ``context`` is not None. ``token``: only while the lease is still this turn's (None: the
    caller holds it, checked in this transaction). ``on_path``: only while the user message is on
    the conversation's active path. Returns whether the row was written.

    Then ``post_save`` is sent as ``session.save(update_fields=...)`` would (the bridge's
    ``model_change``), and the instance holds the new values; the sums are left unloaded
    (deferred): reading one loads the stored value, a later ``save()`` cannot write an old one back.
    """
    session = state.session
    values: dict[str, Any] = {"last_message_at": now, "updated_at": now}
    if context is not None:
        values["context"] = context
    grown: dict[str, Any] = {}
    if run:
        sums = total(run)
        grown["prompt_tokens"] = F("prompt_tokens") + sums.prompt_tokens
        grown["completion_tokens"] = F("completion_tokens") + sums.completion_tokens
        if sums.cost is not None:
            # Saturates at the column's largest value (max_digits 16, 8 places): a sum it could not
            # hold would fail the UPDATE that records the turn, and every later turn of the session.
            grown["cost"] = Least(F("cost") + sums.cost, Value(MAX_SESSION_COST), output_field=COST_FIELD)
    rows = ConversationSession.objects.filter(pk=session.pk)
    if token is not None:
        rows = rows.filter(turn_token=token)
    if on_path:
        rows = rows.filter(Exists(ConversationMessage.objects.filter(pk=state.user_message.pk, active=True)))
    if not rows.update(**values, **grown, **RELEASED):
        return False
    for name, value in {**values, **RELEASED}.items():
        setattr(session, name, value)
    for name in grown:
        session.__dict__.pop(name, None)
    post_save.send(
        sender=ConversationSession,
        instance=session,
        created=False,
        update_fields=frozenset([*values, *grown]),
        raw=False,
        using=db_alias(),
    )
    return True


def _record_tokens(agent: str, run: dict[str, ModelUsage]) -> None:
    for model, usage in run.items():
        telemetry.record_tokens(
            agent=agent,
            model=model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=None if usage.cost is None else float(usage.cost),
        )


def suspend(state: TurnState, token: str, agent_cls: Any, *, metrics: dict[str, Any]) -> TurnOutcome:
    """Record a turn the agent suspended (``TurnSuspended``): some tool calls wait for approval.

    In one transaction, while the lease is this turn's: the agent message (created when the reply
    has no text yet) keeps its text so far with status ``awaiting_approval``; the user message
    becomes ``awaiting_approval`` (``finished_at`` stays empty); the session keeps the Context the
    tools that ran may have changed. The user message's row is locked first: an answer to the last
    waiting step (``turns.approval``) locks it too, so whichever commits second sees the other. If
    every step was answered before this commits, the user message goes back to ``pending``
    instead, and the runner's loop resumes it at once (the outcome's status is then ``pending``,
    else ``awaiting_approval``). No worker or thread waits: the lease is released in the same
    transaction (``next_pending`` starts nothing newer while a turn of the session awaits).
    """
    session, user_message = state.session, state.user_message
    now = timezone.now()
    agent_message = state.agent_message
    run_usage = _run_usage(state, metrics)
    try:
        with transaction.atomic(using=db_alias()):
            if not renew_lease(session.pk, token):
                raise _LeaseLost
            locked = ConversationMessage.objects.select_for_update().filter(pk=user_message.pk)
            list(locked.values_list("pk", flat=True))
            waiting = _steps_to_wait_for(user_message)
            if agent_message is None:
                agent_message = ConversationMessage(
                    session=session, message_type=MessageType.AGENT, reply_to=user_message
                )
            agent_message.content = state.stream_text
            agent_message.processing_status = ProcessingStatus.AWAITING_APPROVAL
            agent_message.stream_sequence = state.sequence
            agent_message.metrics = metrics
            agent_message.metadata = {**(agent_message.metadata or {}), USAGE_BEFORE_RESUME: dict(state.usage)}
            agent_message.save()
            user_message.processing_status = ProcessingStatus.AWAITING_APPROVAL if waiting else ProcessingStatus.PENDING
            context = state.agent.context.model_dump(mode="json") if state.agent is not None else None
            on_path = _record_user_message(
                state,
                now,
                processing_status=user_message.processing_status,
                context_after=state.context_before if context is None else context,
            )
            if not on_path:
                # The message left the active path while its turn ran (a version made meanwhile):
                # nothing will wait for its approvals; the turn ends as a superseded one.
                user_message.processing_status = ProcessingStatus.CANCELLED
                user_message.finished_at = now
                user_message.context_after = state.context_before  # a stopped turn keeps nothing
                ConversationMessage.objects.filter(pk=user_message.pk).update(
                    processing_status=ProcessingStatus.CANCELLED, finished_at=now, context_after=state.context_before
                )
                agent_message.processing_status = ProcessingStatus.CANCELLED
                metrics["stopped"] = "superseded"
                agent_message.metrics = metrics
                agent_message.save(update_fields=["processing_status", "metrics", "updated_at"])
                end_open_steps([user_message.pk], status=ProcessingStatus.CANCELLED)
                _leave_path(state)
            # The lease is released with it (checked by the renewal above, in this transaction).
            _record_session(state, now, run_usage, token=None, context=context if on_path else None)
    except _LeaseLost:
        logger.warning(
            "The turn of message %s lost its lease before it could record its suspension for approval; "
            "crash recovery owns the message now.",
            user_message.pk,
        )
        user_message.refresh_from_db()
        return TurnOutcome(ProcessingStatus(user_message.processing_status), "", user_message, None, lease_lost=True)

    _record_tokens(session.agent_path, run_usage)
    reason = {"reason": "superseded"} if user_message.processing_status == ProcessingStatus.CANCELLED else {}
    publish_status(user_message, **reason)
    publish_status(agent_message, **reason)
    if reason:
        status = ProcessingStatus.CANCELLED
    else:
        # Everything answered already: the message waits for the run that resumes it, not the user.
        status = ProcessingStatus.AWAITING_APPROVAL if waiting else ProcessingStatus.PENDING
    send_turn_signal(
        turn_finished,
        agent_cls,
        session=session,
        user_message=user_message,
        agent_message=agent_message,
        status=ProcessingStatus.AWAITING_APPROVAL if status == ProcessingStatus.PENDING else status,
        metrics=metrics,
    )
    return TurnOutcome(status, state.stream_text, user_message, agent_message)


class _PathMoved(Exception):
    """The user message left the active path between the session's UPDATE and its own."""


def _record_end(
    state: TurnState,
    token: str,
    now: Any,
    run_usage: dict[str, ModelUsage],
    status: ProcessingStatus,
    text: str,
    metrics: dict[str, Any],
    context: Any,
    notice: tuple[str, str] | None,
    error_id: str,
    *,
    careful: bool,
) -> tuple[ConversationMessage | None, ConversationMessage | None]:
    """The transaction of :func:`finish`: the agent message and the notice, the user message's end,
    the session (its Context, usage, the lease released). Returns (agent message, notice).

    The session's row is written first, so this transaction takes the locks in the order the
    concurrency policy and the version operations take them (session, then its messages) and
    cannot deadlock with them. Its UPDATE checks the lease (``turn_token``: crash recovery takes
    it over with a compare-and-set on the same row) and, when the Context is saved, that the user
    message is still on the active path. When that UPDATE matches nothing, the lease is checked on
    its own (lost: nothing is written) and the message's place on the path is read under the
    session's row lock before the session is written (``careful``, also the retry when a version
    operation committed while this UPDATE waited for the row: PostgreSQL's subquery then read the
    path from before it, which the user message's own UPDATE tells).
    """
    session, user_message = state.session, state.user_message
    with transaction.atomic(using=db_alias()):
        session_done = False
        if context is None:
            if not _record_session(state, now, run_usage, token=token):
                raise _LeaseLost
            session_done = True
        elif not careful:
            session_done = _record_session(state, now, run_usage, token=token, context=context, on_path=True)
        if not session_done and not renew_lease(session.pk, token):
            raise _LeaseLost
        agent_message = state.agent_message
        if agent_message is None and status == ProcessingStatus.COMPLETED:
            agent_message = ConversationMessage(session=session, message_type=MessageType.AGENT, reply_to=user_message)
        if agent_message is not None:
            agent_message.content = text
            agent_message.processing_status = status
            agent_message.stream_sequence = state.sequence
            agent_message.metrics = metrics
            agent_message.save()
        user_message.processing_status = status
        user_message.finished_at = now
        on_path = _record_user_message(
            state,
            now,
            processing_status=status,
            finished_at=now,
            context_after=state.context_before if context is None else context,
        )
        if context is not None and session_done and not on_path:
            raise _PathMoved  # rolled back; recorded again, carefully
        if status != ProcessingStatus.COMPLETED:
            # Tool calls of the reply still running or waiting for an approval end with it.
            end_open_steps([user_message.pk], status=ProcessingStatus.CANCELLED)
        error_message: ConversationMessage | None = None
        if notice is not None:
            error_message = ConversationMessage.objects.create(
                session=session,
                message_type=MessageType.SYSTEM,
                content=notice[0],
                reply_to=user_message,
                metadata={"code": str(notice[1]), **({"error_id": error_id} if error_id else {})},
                metrics={} if agent_message is not None else metrics,
            )
        if not on_path:
            _leave_path(state)
        if not session_done:
            _record_session(state, now, run_usage, token=None, context=context if on_path else None)
    return agent_message, error_message


def finish(
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
    error_id: str = "",
) -> TurnOutcome:
    """Record the turn's end in one transaction, if the lease is still this turn's.

    ``notice`` is the ``(text, code)`` of the system message that tells the user why it failed;
    ``error_id`` (of the failure's log line) goes into its ``metadata``, which clients do not read.
    """
    session, user_message = state.session, state.user_message
    now = timezone.now()
    run_usage = _run_usage(state, metrics)
    context = state.agent.context.model_dump(mode="json") if save_context and state.agent is not None else None
    context_before = session.context
    try:
        try:
            agent_message, error_message = _record_end(
                state, token, now, run_usage, status, text, metrics, context, notice, error_id, careful=False
            )
        except _PathMoved:
            session.context = context_before  # the rolled-back UPDATE's, on the instance
            agent_message, error_message = _record_end(
                state, token, now, run_usage, status, text, metrics, context, notice, error_id, careful=True
            )
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

    _record_tokens(session.agent_path, run_usage)
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
