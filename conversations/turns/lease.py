"""The conversation's turn lease: the SQL that lets one turn at a time answer a conversation.

A turn holds the session's *lease* (``ConversationSession.turn_token``) instead of a database lock,
so no transaction stays open while the agent thinks. The lease is taken with one conditional UPDATE
(compare-and-set), renewed by heartbeats, and released at the end; a lease whose heartbeat is older
than ``STALE_TURN_TIMEOUT`` may be taken over (crash recovery, see ``turns.recovery``).

Heartbeats are written and compared with the database's time (``Now()``), not the workers': workers
on several machines need not agree on the time for one to tell another's lease stale.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db import router
from django.db.models import DateTimeField, DurationField, Exists, ExpressionWrapper, OuterRef, Q, Value
from django.db.models.functions import Now

from ..conf import ai_settings
from ..constants import MessageType, ProcessingStatus
from ..models import ConversationMessage, ConversationSession

__all__ = [
    "acquire_lease",
    "claim_lease",
    "db_alias",
    "move_lease",
    "release_lease",
    "renew_lease",
    "stale_before",
    "stale_leases",
    "take_over_lease",
]


def db_alias() -> str:
    """The database the lease (and the turn) is written to."""
    return router.db_for_write(ConversationSession)


def stale_before(seconds: float) -> ExpressionWrapper:
    """The database's clock minus ``seconds``."""
    return ExpressionWrapper(
        Now() - Value(timedelta(seconds=float(seconds)), output_field=DurationField()),
        output_field=DateTimeField(),
    )


def _stale(seconds: float) -> Q:
    return Q(turn_heartbeat_at__lt=stale_before(seconds)) | Q(turn_heartbeat_at__isnull=True)


def acquire_lease(session_id: Any, message_id: Any) -> str | None:
    """Take the session's turn lease for ``message_id``; the token, or None when a live turn holds it."""
    token = uuid.uuid4().hex
    taken = (
        ConversationSession.objects.filter(pk=session_id)
        .filter(Q(turn_token="") | _stale(ai_settings.STALE_TURN_TIMEOUT))
        .update(turn_token=token, active_turn=message_id, turn_heartbeat_at=Now())
    )
    return token if taken else None


def claim_lease(message: ConversationMessage, *, session_updated_at: Any = None) -> str | None:
    """Take the lease for ``message`` when it is next in line: the lease is free (or stale) and
    no user message of the conversation before it (``timestamp``, then ``id``, the order of
    ``runner.next_pending``) waits for its turn or for a tool call's approval. With
    ``session_updated_at``, also only while the session row is unchanged since the caller read it
    (``updated_at``: every save of a turn's end, of a version's Context, of a delete writes it).

    One UPDATE, as :func:`acquire_lease`; the caller then needs no re-read of the queue (nor of
    the session). None when any condition fails: a busy lease, an older message first, a changed
    session; the caller falls back to :func:`acquire_lease` and reads what it needs under it.
    """
    token = uuid.uuid4().hex
    before = Q(timestamp__lt=message.timestamp) | Q(timestamp=message.timestamp, pk__lt=message.pk)
    waiting_before = ConversationMessage.objects.filter(
        before,
        session_id=OuterRef("pk"),
        message_type=MessageType.USER,
        processing_status__in=[ProcessingStatus.PENDING, ProcessingStatus.AWAITING_APPROVAL],
    )
    rows = (
        ConversationSession.objects.filter(pk=message.session_id)
        .filter(Q(turn_token="") | _stale(ai_settings.STALE_TURN_TIMEOUT))
        .filter(~Exists(waiting_before))
    )
    if session_updated_at is not None:
        rows = rows.filter(updated_at=session_updated_at)
    taken = rows.update(turn_token=token, active_turn=message.pk, turn_heartbeat_at=Now())
    return token if taken else None


def renew_lease(session_id: Any, token: str) -> bool:
    """Heartbeat: False when the lease is no longer ``token``'s."""
    return bool(ConversationSession.objects.filter(pk=session_id, turn_token=token).update(turn_heartbeat_at=Now()))


def move_lease(session_id: Any, token: str, message_id: Any) -> bool:
    """Name ``message_id`` as the lease's active turn (with a heartbeat); False when it was taken over."""
    return bool(
        ConversationSession.objects.filter(pk=session_id, turn_token=token).update(
            active_turn=message_id, turn_heartbeat_at=Now()
        )
    )


#: The lease's columns as a released lease has them (``release_lease``; a turn's end writes them
#: in the UPDATE of the session that records it, ``turns.outcome``).
RELEASED: dict[str, Any] = {"turn_token": "", "active_turn": None, "turn_heartbeat_at": None}


def release_lease(session_id: Any, token: str) -> None:
    ConversationSession.objects.filter(pk=session_id, turn_token=token).update(
        turn_token="", active_turn=None, turn_heartbeat_at=None
    )


def stale_leases(stale_after: float, limit: int) -> list[tuple[Any, str, Any]]:
    """``(session_id, token, active_turn)`` of leases without a heartbeat for ``stale_after`` seconds."""
    return list(
        ConversationSession.objects.exclude(turn_token="")
        .filter(_stale(stale_after))
        .values_list("pk", "turn_token", "active_turn")[:limit]
    )


def take_over_lease(session_id: Any, old_token: str) -> str | None:
    """Replace the lease ``old_token`` by a new one (crash recovery); None when it changed meanwhile."""
    token = uuid.uuid4().hex
    taken = ConversationSession.objects.filter(pk=session_id, turn_token=old_token).update(
        turn_token=token, turn_heartbeat_at=Now()
    )
    return token if taken else None
