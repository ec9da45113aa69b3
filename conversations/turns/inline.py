"""Answering a message in the caller's thread: ``ConversationService.send_message`` (the seed API)
returns the reply, so it runs the turn itself instead of leaving it to a task."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from django.utils import timezone

from ..conf import ai_settings
from ..constants import MessageType, ProcessingStatus
from ..models import ConversationMessage, ConversationSession, File
from ..registry import registry
from .hooks import answered_by_caller
from .lease import acquire_lease, claim_lease, release_lease
from .notify import logger
from .outcome import TurnOutcome
from .runner import next_pending, process_pending, run_turn
from .scheduling import schedule_session

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request


__all__ = ["answer_inline", "answer_new_message"]


def answer_new_message(
    session: ConversationSession, text: str, request: HttpRequest | Request | None
) -> tuple[ConversationMessage, TurnOutcome | None]:
    """Save ``text`` as the user's message and answer it here; (the message, its outcome as
    :func:`answer_inline` returns it). For a message without files whose agent's concurrency
    policy locks nothing (``enqueue``): ``send_message`` checked the rest.

    When the conversation is idle (no turn holds the lease, no message waits) and its row is
    unchanged since the caller read it (``session``), the lease is claimed for the message before
    it exists, and the message is saved already ``processing`` (its ``started_at``, ``attempts``,
    ``context_before``): one INSERT instead of an INSERT and the UPDATE that starts the turn.
    Clients see it ``processing`` from its first ``model_change`` (and the turn's
    ``message_status``). A crash between the two leaves a lease naming no message: crash
    recovery takes it over when it is stale, as any other. Otherwise the message is saved
    ``pending`` and answered as any other (:func:`answer_inline`).
    """
    user_message = ConversationMessage(
        session=session, message_type=MessageType.USER, content=text, processing_status=ProcessingStatus.PENDING
    )
    token = claim_lease(user_message, session_updated_at=session.updated_at)
    if token is None:
        with answered_by_caller():  # answered below, inline: no turn task for it
            user_message.save()
        return user_message, answer_inline(session, user_message, request, files=[], claim=False)
    try:
        user_message.processing_status = ProcessingStatus.PROCESSING
        user_message.started_at = timezone.now()
        user_message.attempts = 1
        user_message.context_before = {} if session.context is None else session.context
        with answered_by_caller():
            user_message.save(force_insert=True)
        outcome = run_turn(user_message, token=token, request=request, session=session, files=[], started=True)
    except BaseException:
        _release_after_error(session, token)
        raise
    if not outcome.lease_lost and next_pending(session.pk) is not None:
        schedule_session(session.pk)
    return user_message, outcome


def _release_after_error(session: ConversationSession, token: str) -> None:
    # As process_pending: never leave the conversation leased until STALE_TURN_TIMEOUT.
    try:
        release_lease(session.pk, token)
    except Exception:  # noqa: BLE001 - the original error matters more; recovery cleans up
        logger.exception("Could not release the lease of conversation %s", session.pk)


def answer_inline(
    session: ConversationSession,
    user_message: ConversationMessage,
    request: HttpRequest | Request | None,
    *,
    files: list[File] | None = None,
    claim: bool = True,
) -> TurnOutcome | None:
    """Answer ``user_message`` here, after the messages waiting before it; its outcome, or None
    when it was still not answered after the turn timeout plus ``STALE_TURN_TIMEOUT``.

    While another turn of the conversation runs (a worker's), this waits for the lease; a message
    answered elsewhere meanwhile (or cancelled by a newer one) is read back from the rows. A
    message queued behind a turn suspended for tool approval is not waited for: its outcome is
    ``pending`` (a task answers it once that turn ends), as a suspended turn's own outcome is
    ``awaiting_approval``.

    ``session`` is the row as the caller read it (before saving the message) and ``files`` the
    message's attached files when the caller knows them (``[]``: none): when the message is next in
    line and the session unchanged since (``lease.claim_lease``), the turn starts with neither
    read again. ``claim=False``: the caller tried that already.
    """
    token = claim_lease(user_message, session_updated_at=session.updated_at) if claim else None
    if token is not None:
        try:
            outcome = run_turn(user_message, token=token, request=request, session=session, files=files)
        except BaseException:
            _release_after_error(session, token)
            raise
        # The turn released the lease when it recorded its end; messages that arrived meanwhile
        # were left to it: they go to a task.
        if not outcome.lease_lost and next_pending(session.pk) is not None:
            schedule_session(session.pk)
        return outcome
    agent_cls = registry.get(session.agent_path)
    timeout = agent_cls.turn_timeout if agent_cls.turn_timeout is not None else ai_settings.TURN_TIMEOUT
    deadline = time.monotonic() + float(timeout or 300) + float(ai_settings.STALE_TURN_TIMEOUT)
    delay = 0.01
    while True:
        token = acquire_lease(session.pk, user_message.pk)
        if token is not None:
            processed = process_pending(
                session.pk, request=request, request_for=user_message.pk, until=user_message.pk, token=token
            )
            if processed.still_waiting:
                schedule_session(session.pk)
            for outcome in processed.outcomes:
                if outcome.user_message.pk == user_message.pk:
                    return outcome
        user_message.refresh_from_db()
        if user_message.processing_status not in (ProcessingStatus.PENDING, ProcessingStatus.PROCESSING):
            return _outcome_from_rows(user_message)
        if user_message.processing_status == ProcessingStatus.PENDING and _behind_a_suspended_turn(user_message):
            # Queued behind a turn that waits for a tool call's approval, maybe for hours: the
            # message is answered after it, by a task; the caller gets it back still pending.
            return _outcome_from_rows(user_message)
        if time.monotonic() > deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _behind_a_suspended_turn(user_message: ConversationMessage) -> bool:
    return ConversationMessage.objects.filter(
        session_id=user_message.session_id,
        message_type=MessageType.USER,
        processing_status=ProcessingStatus.AWAITING_APPROVAL,
        timestamp__lte=user_message.timestamp,
    ).exists()


def _outcome_from_rows(user_message: ConversationMessage) -> TurnOutcome:
    replies = {m.message_type: m for m in user_message.replies.all()}
    agent_message = replies.get(MessageType.AGENT)
    return TurnOutcome(
        ProcessingStatus(user_message.processing_status),
        agent_message.content if agent_message else "",
        user_message,
        agent_message,
        replies.get(MessageType.SYSTEM),
    )
