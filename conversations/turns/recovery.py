"""Crash recovery: turns whose worker died, and waiting messages whose task got lost.

A running turn renews its conversation's lease every ``TURN_HEARTBEAT_INTERVAL`` seconds. A lease
not renewed for ``STALE_TURN_TIMEOUT`` seconds belongs to a worker that died (killed, out of
memory, machine gone): :func:`recover_stale_turns` takes the lease over and, per
``STALE_TURN_ACTION``, answers the message again (``"retry"``, at most ``MAX_TURN_ATTEMPTS``
starts in all) or marks it ``failed`` with a notice (``"fail"``). It also enqueues again the
``pending`` messages of idle conversations whose task never ran (e.g. the process died between
the commit and the enqueue). And it answers as expired the tool calls nobody approved or rejected
within ``APPROVAL_TIMEOUT`` (``turns.approval.expire_approvals``), resuming their turns.

The sweep hands the conversations to answer to the ``schedule`` callable it is given (the turn
task passes its own enqueue, the others ``turns.scheduling.schedule_session``), so this module
does not depend on the task that runs it. When it runs is ``turns.sweeps``' business (and
:func:`maybe_recover`, from the turn task). Running it in several processes at once is safe:
every step is a compare-and-set on the lease or on the message's status.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from ..agent import ConversationAgent
from ..conf import ai_settings
from ..constants import MessageType, ProcessingStatus
from ..exceptions import AgentNotFound, TurnInterrupted
from ..models import ConversationMessage
from ..registry import registry
from ..signals import turn_failed, turn_finished
from ..telemetry.logs import new_error_id
from .lease import release_lease, stale_leases, take_over_lease
from .notify import generic_error_text, logger, publish_status, send_turn_signal
from .steps import end_open_steps, expire_approvals

__all__ = ["RecoveredTurn", "Schedule", "maybe_recover", "recover_stale_turns"]

#: Enqueues the turn of a conversation (its id); see the module docstring.
Schedule = Callable[[Any], Any]

RETRIED, FAILED, CANCELLED, RESCHEDULED, EXPIRED = "retried", "failed", "cancelled", "rescheduled", "expired"


@dataclass(frozen=True)
class RecoveredTurn:
    """One thing recovery did: ``action`` is ``retried``, ``failed``, ``cancelled`` (the user had
    asked to stop it), ``rescheduled`` (a waiting message whose task was lost) or ``expired`` (a
    tool call nobody approved within ``APPROVAL_TIMEOUT``: ``message_id`` is the tool step's)."""

    session_id: Any
    message_id: Any
    action: str


def recover_stale_turns(
    *, schedule: Schedule, stale_after: float | None = None, action: str | None = None, limit: int = 500
) -> list[RecoveredTurn]:
    """Recover the turns of dead workers and the waiting messages whose task was lost; the
    conversations that have messages to answer again go to ``schedule``."""
    stale_after = float(ai_settings.STALE_TURN_TIMEOUT if stale_after is None else stale_after)
    action = action or ai_settings.STALE_TURN_ACTION
    if action not in ("fail", "retry"):
        raise ValueError(f"action must be 'fail' or 'retry', not {action!r}.")
    now = timezone.now()
    cutoff = now - timedelta(seconds=stale_after)
    done: list[RecoveredTurn] = []
    reschedule: set[Any] = set()

    for session_id, old_token, message_id in stale_leases(stale_after, limit):
        token = take_over_lease(session_id, old_token)
        if token is None:
            continue  # the turn finished, or another process recovered it
        try:
            if message_id is not None:
                result = _recover_message(message_id, action)
                if result is not None:
                    done.append(result)
        finally:
            release_lease(session_id, token)
        reschedule.add(session_id)

    # A message left `processing` with no lease pointing at it (not the active turn of anyone).
    orphans = (
        ConversationMessage.objects.filter(
            message_type=MessageType.USER,
            processing_status=ProcessingStatus.PROCESSING,
            started_at__lt=cutoff,
        )
        .exclude(session__active_turn=F("pk"))
        .values_list("pk", "session_id")[:limit]
    )
    for message_id, session_id in orphans:
        result = _recover_message(message_id, action)
        if result is not None:
            done.append(result)
            reschedule.add(session_id)

    # Waiting messages of idle conversations whose task never ran. Touching updated_at keeps the
    # next sweeps from enqueueing them again while a backlogged queue works its way to them.
    # Messages queued behind a turn suspended for approval are not lost: they wait for it.
    suspended = ConversationMessage.objects.filter(
        session_id=OuterRef("session_id"),
        message_type=MessageType.USER,
        processing_status=ProcessingStatus.AWAITING_APPROVAL,
    )
    lost = list(
        ConversationMessage.objects.filter(
            message_type=MessageType.USER,
            processing_status=ProcessingStatus.PENDING,
            timestamp__lt=cutoff,
            updated_at__lt=cutoff,
            session__turn_token="",
        )
        .filter(~Exists(suspended))
        .values_list("pk", "session_id")[:limit]
    )
    if lost:
        ConversationMessage.objects.filter(pk__in=[pk for pk, _ in lost]).update(updated_at=timezone.now())
        for message_id, session_id in lost:
            if session_id not in reschedule:
                done.append(RecoveredTurn(session_id, message_id, RESCHEDULED))
            reschedule.add(session_id)

    # Tool calls nobody approved or rejected within APPROVAL_TIMEOUT: answered as expired, and the
    # turns left with nothing to wait for are resumed.
    for step in expire_approvals(schedule=schedule, limit=limit):
        done.append(RecoveredTurn(step.session_id, step.pk, EXPIRED))

    for session_id in reschedule:
        try:
            schedule(session_id)
        except Exception:  # noqa: BLE001 - the next sweep tries again
            logger.exception("Recovery could not enqueue the turn of conversation %s", session_id)
    for item in done:
        # The ids as fields too (the sweep runs outside any turn's log_context); an expired
        # approval's message_id is its tool step's, not a user message's.
        ids = {"conversation_id": str(item.session_id)}
        if item.action != EXPIRED:
            ids["message_id"] = str(item.message_id)
        logger.warning(
            "Recovered the turn of message %s (conversation %s): %s",
            item.message_id,
            item.session_id,
            item.action,
            extra=ids,
        )
    return done


def _recover_message(message_id: Any, action: str) -> RecoveredTurn | None:
    now = timezone.now()
    with transaction.atomic():
        message = (
            ConversationMessage.objects.select_for_update()
            .filter(pk=message_id, message_type=MessageType.USER, processing_status=ProcessingStatus.PROCESSING)
            .select_related("session")
            .first()
        )
        if message is None:
            return None  # it finished after all, or never started (then it is still pending)
        partial = list(
            ConversationMessage.objects.select_for_update().filter(
                reply_to=message, message_type=MessageType.AGENT, processing_status=ProcessingStatus.STREAMING
            )
        )
        for agent_message in partial:
            agent_message.processing_status = ProcessingStatus.FAILED
            agent_message.metadata = {**(agent_message.metadata or {}), "interrupted": True}
            agent_message.save(update_fields=["processing_status", "metadata", "updated_at"])
        # Tool calls the dead worker left running or waiting for an approval end with its turn.
        end_open_steps([message.pk], status=ProcessingStatus.CANCELLED)
        notice = None
        error_id = ""
        if message.cancel_requested_at is not None:
            outcome, message.processing_status = CANCELLED, ProcessingStatus.CANCELLED
        elif action == "retry" and message.attempts < int(ai_settings.MAX_TURN_ATTEMPTS):
            outcome, message.processing_status = RETRIED, ProcessingStatus.PENDING
        else:
            outcome, message.processing_status = FAILED, ProcessingStatus.FAILED
            error_id = new_error_id()
            notice = ConversationMessage.objects.create(
                session=message.session,
                message_type=MessageType.SYSTEM,
                content=generic_error_text(),
                reply_to=message,
                metadata={
                    "code": str(TurnInterrupted.default_code),
                    "attempts": message.attempts,
                    "error_id": error_id,
                },
            )
        message.finished_at = None if outcome == RETRIED else now
        message.save(update_fields=["processing_status", "finished_at", "updated_at"])
    if notice is not None:
        # The failure's own log line, with the error_id its notice keeps (the admin's operations view).
        logger.error(
            "The worker answering message %s of conversation %s stopped sending heartbeats (after %s "
            "attempt(s)); the turn is failed (error_id %s)",
            message.pk,
            message.session_id,
            message.attempts,
            error_id,
            extra={"error_id": error_id, "conversation_id": str(message.session_id), "message_id": str(message.pk)},
        )
    publish_status(message, reason="interrupted")
    for agent_message in partial:
        publish_status(agent_message, reason="interrupted")
    if outcome != RETRIED:
        sender = _agent_class(message.session.agent_path)
        status = ProcessingStatus(message.processing_status)
        if notice is not None:
            send_turn_signal(
                turn_failed,
                sender,
                session=message.session,
                user_message=message,
                exception=TurnInterrupted(f"No heartbeat from the worker answering message {message.pk}."),
            )
        send_turn_signal(
            turn_finished,
            sender,
            session=message.session,
            user_message=message,
            agent_message=partial[-1] if partial else None,
            status=status,
            metrics={"stopped": "interrupted"},
        )
    return RecoveredTurn(message.session_id, message.pk, outcome)


def _agent_class(path: str) -> Any:
    try:
        return registry.get(path)
    except AgentNotFound:
        return ConversationAgent


_last_sweep = 0.0
_sweep_lock = threading.Lock()


def maybe_recover(*, schedule: Schedule) -> None:
    """Sweep for stale turns if this process has not done so for ``TURN_RECOVERY_INTERVAL`` s."""
    global _last_sweep
    interval = float(ai_settings.TURN_RECOVERY_INTERVAL)
    if interval <= 0:
        return
    now = time.monotonic()
    with _sweep_lock:
        if _last_sweep and now - _last_sweep < interval:
            return
        _last_sweep = now
    try:
        recover_stale_turns(schedule=schedule)
    except Exception:  # noqa: BLE001 - recovery must never stop the turn that triggered it
        logger.exception("Looking for stale turns failed")
