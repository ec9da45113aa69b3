"""What a message sent while a turn runs does (the agent's ``concurrency``), and cancel.

``ConversationService.apply_concurrency_policy`` and ``ConversationService.cancel_turn`` (the
public names, see docs/turns.md) call these.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import router, transaction
from django.db.models import F
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from ..conf import ai_settings
from ..constants import ConcurrencyPolicy, MessageType, ProcessingStatus
from ..exceptions import TurnInProgress
from ..models import ConversationMessage, ConversationSession
from .notify import publish_status
from .state import CANCEL_REASON
from .steps import end_open_steps

__all__ = ["apply_concurrency_policy", "policy_locks", "request_cancel", "supersede"]


#: Statuses of a user message whose turn has not ended: waiting for its turn, being answered, or
#: suspended until the user answers a tool call's approval.
_UNFINISHED = [ProcessingStatus.PENDING, ProcessingStatus.PROCESSING, ProcessingStatus.AWAITING_APPROVAL]


def _busy(session: ConversationSession) -> Any:
    """The session's user messages waiting, being answered, or awaiting a tool call's approval."""
    return ConversationMessage.objects.filter(
        session=session,
        message_type=MessageType.USER,
        processing_status__in=_UNFINISHED,
    )


def _locked(rows: Any) -> Any:
    """``rows.select_for_update()``, as ``FOR NO KEY UPDATE`` where the database has it
    (PostgreSQL): it serialises with other lockers and with UPDATEs as ``FOR UPDATE`` does, but
    not with the key-share locks of foreign-key checks. An INSERT of a reply row (the stream's
    start) checks its ``reply_to`` (the user message) before its ``session``: with ``FOR UPDATE``
    here, an interrupt (session, then its messages) and that INSERT (message, then session) could
    deadlock."""
    connection = transaction.get_connection(rows.db)
    return rows.select_for_update(no_key=connection.features.has_select_for_no_key_update)


def request_cancel(session: ConversationSession) -> list[Any]:
    """Ask the session's running turn to stop and cancel its waiting messages; their ids.

    A turn suspended for a tool call's approval runs nowhere: it ends here, its user message, its
    agent message and its steps still waiting (or approved but not run) ``cancelled``.
    """
    with transaction.atomic():
        pks = list(_locked(_busy(session)).values_list("pk", flat=True))
        return _stop(pks, reason="cancelled")


def supersede(pks: list[Any]) -> list[Any]:
    """End the unfinished turns of the user messages ``pks`` that left the conversation's active
    path (``turns.versions``), as :func:`request_cancel` does for a whole session, with the reason
    ``"superseded"``: waiting and suspended ones are cancelled at once, a running one is asked to
    stop (it ends ``cancelled``, ``metrics.stopped`` ``"superseded"``). Returns the ids stopped."""
    if not pks:
        return []
    with transaction.atomic():
        busy = ConversationMessage.objects.filter(
            pk__in=pks, message_type=MessageType.USER, processing_status__in=_UNFINISHED
        )
        return _stop(list(_locked(busy).values_list("pk", flat=True)), reason="superseded")


def _stop(pks: list[Any], *, reason: str) -> list[Any]:
    """Inside a transaction, the rows of ``pks`` locked: stop their turns (see request_cancel)."""
    if not pks:
        return []
    now = timezone.now()
    requested = ConversationMessage.objects.filter(pk__in=pks, cancel_requested_at__isnull=True)
    if reason == "cancelled":
        requested.update(cancel_requested_at=now)
    else:
        # The running turn's poll reads the reason from here (``execution._cancel_requested``).
        for message in requested.filter(processing_status=ProcessingStatus.PROCESSING):
            message.metadata = {**(message.metadata or {}), CANCEL_REASON: reason}
            message.cancel_requested_at = now
            message.save(update_fields=["metadata", "cancel_requested_at", "updated_at"])
        requested.update(cancel_requested_at=now)
    # Waiting messages never start; the running one notices the request within half a
    # second (its turn's thread polls) and stops at the agent's next write.
    ended = list(
        ConversationMessage.objects.filter(
            pk__in=pks, processing_status__in=[ProcessingStatus.PENDING, ProcessingStatus.AWAITING_APPROVAL]
        )
    )
    # The replies of suspended turns (also of those answered but not resumed yet: pending).
    replies = list(
        ConversationMessage.objects.filter(
            reply_to__in=ended,
            message_type=MessageType.AGENT,
            processing_status=ProcessingStatus.AWAITING_APPROVAL,
        )
    )
    for message in [*ended, *replies]:
        message.processing_status = ProcessingStatus.CANCELLED
        if message.message_type == MessageType.USER:
            message.finished_at = now
            message.save(update_fields=["processing_status", "finished_at", "updated_at"])
        else:
            message.save(update_fields=["processing_status", "updated_at"])
        transaction.on_commit(partial(publish_status, message, reason=reason))
    end_open_steps([m.pk for m in ended], status=ProcessingStatus.CANCELLED)
    return pks


def policy_locks(agent_cls: Any) -> bool:
    """Whether :func:`apply_concurrency_policy` does anything for ``agent_cls``: ``reject`` and
    ``interrupt`` lock the session's row; ``enqueue`` (the default) neither locks nor reads."""
    policy = ConcurrencyPolicy(agent_cls.concurrency or ai_settings.DEFAULT_CONCURRENCY_POLICY)
    return policy != ConcurrencyPolicy.ENQUEUE


def apply_concurrency_policy(session: ConversationSession, agent_cls: Any) -> None:
    """Apply the agent's policy for a message that arrives while a turn runs.

    Call it inside the transaction that saves the message, just before the save (as the bridge
    and ``send_message`` do). For ``reject`` and ``interrupt`` it locks the session's row until
    that transaction ends, so messages posted at the same moment are checked one after the
    other: a ``reject`` agent accepts exactly one of them and refuses the others with
    ``TurnInProgress``. Outside a transaction it raises ``TransactionManagementError``.
    """
    policy = ConcurrencyPolicy(agent_cls.concurrency or ai_settings.DEFAULT_CONCURRENCY_POLICY)
    if policy == ConcurrencyPolicy.ENQUEUE:
        return
    _lock_session(session)
    if policy == ConcurrencyPolicy.REJECT:
        if _busy(session).exists():
            raise TurnInProgress()
        return
    request_cancel(session)


def _lock_session(session: ConversationSession) -> None:
    using = router.db_for_write(ConversationSession, instance=session)
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        raise TransactionManagementError(
            "apply_concurrency_policy() must run inside the transaction that saves the message: "
            "call it and save the message within one transaction.atomic() block."
        )
    rows = ConversationSession.objects.using(using).filter(pk=session.pk)
    if connection.features.has_select_for_update:
        # A short lock: turns hold the session through its lease (turn_token), not a lock.
        list(_locked(rows).values_list("pk", flat=True))
    else:
        # SQLite has no row locks; a write takes the database's write lock until the commit
        # (with transaction_mode "IMMEDIATE" BEGIN has taken it already). The other posters
        # wait for this commit (busy timeout), then see its message.
        rows.update(turn_token=F("turn_token"))
