"""Tool steps of a turn, as the turn machinery changes them: ending them (answered, expired,
cancelled), sending their ``tool_call_result``, and resuming a suspended turn once nothing waits.

A tool step is a ``ConversationMessage`` of type ``tool`` whose ``reply_to`` is the user message
being answered (docs/tools.md). One that needs an approval is made ``awaiting_approval`` by the
agent's loop, which then suspends the turn (``TurnSuspended``; ``turns.outcome.suspend``).
:mod:`.approval` answers it; :func:`expire_approvals` (run by the stale-turn sweep,
``turns.recovery``) answers as expired the steps nobody answered within ``APPROVAL_TIMEOUT``;
:func:`end_open_steps` ends the open steps of a turn that is cancelled or fails.

Like ``turns.recovery``, this module is handed the ``schedule`` callable that enqueues a
conversation's turn, so it does not depend on the task that runs turns.

Locks: every writer here locks the user message's row first, then the step's (cancel and the
suspension of a turn take the user message's too), so an answer, a cancel and the suspension
see each other's commits whatever their order. SQLite has no row locks: a write at the start of
the transaction takes the database's write lock instead (the app's SQLite transactions begin
IMMEDIATE anyway).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial
from typing import Any

from django.db import router, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from ..conf import ai_settings
from ..constants import ApprovalStatus, ErrorCode, EventName, MessageType, ProcessingStatus
from ..models import ConversationMessage
from ..realtime import publish
from .notify import logger, publish_status

__all__ = [
    "OPEN_STEP_STATUSES",
    "end_open_steps",
    "end_step",
    "expire_approvals",
    "lock_rows",
    "publish_step_result",
    "refusal",
    "resume_if_answered",
]

#: Statuses of a step that has not ended: running, waiting for its approval, or approved and
#: waiting for its turn to resume.
OPEN_STEP_STATUSES = (ProcessingStatus.PROCESSING, ProcessingStatus.AWAITING_APPROVAL, ProcessingStatus.PENDING)


def refusal(code: str, message: str) -> str:
    """The ``content`` of a step that did not run: the JSON the model is given as its result."""
    return json.dumps({"error": {"code": str(code), "message": message}}, ensure_ascii=False)


def lock_rows(queryset: QuerySet) -> None:
    """Lock the rows of ``queryset`` until the transaction ends."""
    connection = transaction.get_connection(router.db_for_write(queryset.model))
    if connection.features.has_select_for_update:
        list(queryset.select_for_update().values_list("pk", flat=True))
    else:
        # SQLite: a write takes the database's write lock until the commit; later writers wait
        # for it (busy timeout) and then read what this transaction committed.
        queryset.update(updated_at=F("updated_at"))


def publish_step_result(step: ConversationMessage) -> None:
    """Send ``tool_call_result`` for a step that ended (ran, failed, was refused or cancelled)."""
    data = step.component_data or {}
    optional = {key: data[key] for key in ("result", "error", "duration_ms", "approval") if data.get(key) is not None}
    publish(
        EventName.TOOL_CALL_RESULT,
        session_id=step.session_id,
        message_id=step.pk,
        reply_to=step.reply_to_id,
        call_id=data.get("call_id", ""),
        name=data.get("name") or step.component_type,
        status=step.processing_status,
        **optional,
    )


def end_step(
    step: ConversationMessage,
    *,
    status: ProcessingStatus,
    approval_status: ApprovalStatus | None,
    error: tuple[str, str] | None,
    reason: str = "",
    answered_by: Any = None,
) -> None:
    """Change ``step`` (saved with ``save()``, so ``model_change`` goes out) and send its
    ``tool_call_result`` once the transaction commits (nothing for an approved step: it has not run)."""
    now = timezone.now()
    data = dict(step.component_data or {})
    approval = data.get("approval")
    if approval_status is not None and isinstance(approval, dict):
        data["approval"] = {
            **approval,
            "status": str(approval_status),
            "reason": reason,
            "answered_by": answered_by,
            "answered_at": now.isoformat(),
        }
    if error is not None:
        data["error"] = {"code": str(error[0]), "message": error[1]}
        step.content = refusal(*error)
    step.component_data = data
    step.processing_status = status
    if status != ProcessingStatus.PENDING:
        step.finished_at = now
    step.save()
    if status != ProcessingStatus.PENDING:
        transaction.on_commit(partial(publish_step_result, step))


def resume_if_answered(user_message: ConversationMessage, schedule: Callable[[Any], Any]) -> bool:
    """When no step of the reply waits any more and its turn is suspended: the user message goes
    back to ``pending`` and the conversation is scheduled (after the commit). Inside the
    transaction that holds the user message's lock."""
    if user_message.processing_status != ProcessingStatus.AWAITING_APPROVAL:
        # Still running (its suspension is not recorded yet: it will see the answer), or ended.
        return False
    waiting = ConversationMessage.objects.filter(
        reply_to=user_message, message_type=MessageType.TOOL, processing_status=ProcessingStatus.AWAITING_APPROVAL
    ).exists()
    if waiting:
        return False
    user_message.processing_status = ProcessingStatus.PENDING
    user_message.save(update_fields=["processing_status", "updated_at"])
    transaction.on_commit(partial(publish_status, user_message, reason="approval_answered"))
    session_id = user_message.session_id

    def enqueue() -> None:
        try:
            schedule(session_id)
        except Exception:  # noqa: BLE001 - crash recovery enqueues waiting messages again
            logger.exception(
                "Could not enqueue the resumed turn of conversation %s; crash recovery enqueues it again "
                "after STALE_TURN_TIMEOUT (or run 'manage.py recover_turns').",
                session_id,
            )

    transaction.on_commit(enqueue)
    return True


def expire_approvals(
    *, schedule: Callable[[Any], Any], timeout: float | None = None, limit: int = 500
) -> list[ConversationMessage]:
    """Answer as expired the steps that have waited for an approval longer than ``timeout``
    seconds (``APPROVAL_TIMEOUT``): each becomes ``failed`` with ``approval_expired``, and a turn
    left with nothing to wait for is resumed (its conversation goes to ``schedule``). Returns
    the expired steps."""
    timeout = float(ai_settings.APPROVAL_TIMEOUT if timeout is None else timeout)
    cutoff = timezone.now() - timedelta(seconds=timeout)
    # The partial index convmsg_unfinished serves the status filter: few rows wait at any time.
    candidates = list(
        ConversationMessage.objects.filter(
            processing_status=ProcessingStatus.AWAITING_APPROVAL,
            message_type=MessageType.TOOL,
            started_at__lt=cutoff,
        ).values_list("pk", "reply_to_id")[:limit]
    )
    by_turn: dict[Any, list[Any]] = {}
    for pk, reply_to_id in candidates:
        by_turn.setdefault(reply_to_id, []).append(pk)
    expired: list[ConversationMessage] = []
    for reply_to_id, pks in by_turn.items():
        try:
            expired += _expire_turn_steps(reply_to_id, pks, cutoff, schedule, timeout)
        except Exception:  # noqa: BLE001 - the next sweep tries again; the other turns go on
            logger.exception("Could not expire the approvals of the turn of message %s", reply_to_id)
    return expired


def _expire_turn_steps(
    reply_to_id: Any, pks: Iterable[Any], cutoff: Any, schedule: Callable[[Any], Any], timeout: float
) -> list[ConversationMessage]:
    text = f"Nobody answered the approval request of this call within {timeout:g} seconds; it was not run."
    expired: list[ConversationMessage] = []
    with transaction.atomic():
        if reply_to_id is not None:
            lock_rows(ConversationMessage.objects.filter(pk=reply_to_id))
        steps = ConversationMessage.objects.filter(
            pk__in=list(pks), processing_status=ProcessingStatus.AWAITING_APPROVAL, started_at__lt=cutoff
        )
        for step in steps:  # re-read under the lock: an answer may have come first
            end_step(
                step,
                status=ProcessingStatus.FAILED,
                approval_status=ApprovalStatus.EXPIRED,
                error=(ErrorCode.APPROVAL_EXPIRED, text),
            )
            expired.append(step)
        user_message = ConversationMessage.objects.filter(pk=reply_to_id).first() if reply_to_id else None
        if expired and user_message is not None:
            resume_if_answered(user_message, schedule)
    return expired


def end_open_steps(user_message_ids: Iterable[Any], *, status: ProcessingStatus) -> list[ConversationMessage]:
    """Inside the transaction that ends the turns of ``user_message_ids`` (cancelled, failed):
    their tool steps still running, waiting for an approval or approved but not run end with
    ``status``; an approval still pending becomes ``cancelled``. Returns the steps changed."""
    ids = list(user_message_ids)
    if not ids:
        return []
    steps = list(
        ConversationMessage.objects.filter(
            reply_to_id__in=ids, message_type=MessageType.TOOL, processing_status__in=OPEN_STEP_STATUSES
        )
    )
    for step in steps:
        approval = (step.component_data or {}).get("approval")
        pending = isinstance(approval, dict) and approval.get("status") == ApprovalStatus.PENDING
        end_step(step, status=status, approval_status=ApprovalStatus.CANCELLED if pending else None, error=None)
    return steps
