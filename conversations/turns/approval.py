"""Answering a tool call that waits for the user's approval: :func:`answer_approval`.

The agent's loop makes a tool step that needs an approval ``awaiting_approval`` and suspends the
turn (``TurnSuspended``; ``turns.outcome.suspend``). The answer: approved, the step becomes
``pending`` (it runs, with the Context as it is then, when the turn resumes); rejected, it becomes
``failed`` with the refusal the model reads in its ``content``. When no step of the reply waits
any more, the user message goes back to ``pending`` and its conversation is scheduled: a new task
resumes the turn. Unanswered steps expire (:func:`expire_approvals`, from :mod:`.steps`, run by
the stale-turn sweep). The HTTP endpoint is the bridge's ``POST models/message/<pk>/approve/``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from ..conf import ai_settings
from ..constants import ApprovalStatus, ErrorCode, MessageType, ProcessingStatus, SessionStatus
from ..exceptions import (
    ApprovalAlreadyAnswered,
    NotAToolStep,
    NotAwaitingApproval,
    ObjectNotFound,
    SessionNotActive,
)
from ..models import ConversationMessage
from ..owners import Owner, owns
from .scheduling import schedule_session
from .steps import end_step, expire_approvals, lock_rows, resume_if_answered

__all__ = ["MAX_REASON_LENGTH", "answer_approval", "expire_approvals"]

#: Longest ``reason`` an answer may give (characters).
MAX_REASON_LENGTH = 2000


def answer_approval(
    step_id: Any,
    *,
    approved: bool,
    reason: str = "",
    owner: Owner | None = None,
    answered_by: Any = None,
) -> ConversationMessage:
    """Approve or reject the tool call of the step ``step_id``; returns the step as saved.

    ``owner``: when given, only a step of a conversation ``owner`` owns is found (else
    :class:`ObjectNotFound`, as for a step that does not exist). ``answered_by``: the pk of the
    user who answered (recorded in ``approval.answered_by``; None for an anonymous visitor).
    ``reason`` is cut at ``MAX_REASON_LENGTH`` characters, a NUL in it replaced by U+FFFD.

    Raises :class:`NotAToolStep` (400) for a message that is not a tool step,
    :class:`SessionNotActive` (409) when the conversation is no longer active (archived, completed),
    :class:`NotAwaitingApproval` (409) for a step whose tool needs no approval and
    :class:`ApprovalAlreadyAnswered` (409) for one answered already (or expired, or cancelled; also
    one waiting longer than ``APPROVAL_TIMEOUT`` that the sweep has not expired yet): of two answers
    at the same moment exactly one is recorded.
    """
    if not isinstance(approved, bool):
        raise TypeError(f"approved must be True or False, not {approved!r}.")
    # PostgreSQL cannot store NUL in text (the endpoint refuses it; this API replaces it).
    reason = str(reason or "")[:MAX_REASON_LENGTH].replace("\x00", "\ufffd")
    try:
        found = ConversationMessage.objects.filter(pk=step_id).values_list("reply_to_id", flat=True).first()
    except (DjangoValidationError, ValueError, TypeError) as exc:
        raise ObjectNotFound(f"No message with id {step_id!s:.64} exists.") from exc
    with transaction.atomic():
        if found is not None:
            lock_rows(ConversationMessage.objects.filter(pk=found))
        step = ConversationMessage.objects.select_related("session").filter(pk=step_id).first()
        if step is None or (owner is not None and not owns(owner, step.session)):
            raise ObjectNotFound(f"No message with id {step_id!s:.64} exists.")
        if step.message_type != MessageType.TOOL:
            raise NotAToolStep()
        if step.session.status != SessionStatus.ACTIVE:
            # As for a new message: an archived or completed conversation gets no more turns.
            raise SessionNotActive(
                f"This conversation is {step.session.status}; its tool calls can no longer be answered."
            )
        approval = (step.component_data or {}).get("approval")
        if not isinstance(approval, dict):
            raise NotAwaitingApproval()
        if (
            approval.get("status") != ApprovalStatus.PENDING
            or step.processing_status != ProcessingStatus.AWAITING_APPROVAL
        ):
            raise ApprovalAlreadyAnswered(
                f"This tool call's approval is {approval.get('status')!s:.32} already; it cannot be answered again."
            )
        if step.started_at is not None and step.started_at < timezone.now() - timedelta(
            seconds=float(ai_settings.APPROVAL_TIMEOUT)
        ):
            # Past APPROVAL_TIMEOUT: expired, though the sweep (run when turns run) has not recorded
            # it yet. Nothing is written here; the sweep expires it and resumes the turn.
            raise ApprovalAlreadyAnswered(
                "This tool call's approval expired (nobody answered it within APPROVAL_TIMEOUT); it was not run."
            )
        if approved:
            end_step(
                step,
                status=ProcessingStatus.PENDING,
                approval_status=ApprovalStatus.APPROVED,
                error=None,
                reason=reason,
                answered_by=answered_by,
            )
        else:
            text = f"The user refused this call: {reason}" if reason else "The user refused this call."
            end_step(
                step,
                status=ProcessingStatus.FAILED,
                approval_status=ApprovalStatus.REJECTED,
                error=(ErrorCode.TOOL_REJECTED, text),
                reason=reason,
                answered_by=answered_by,
            )
        if step.reply_to_id is not None:
            user_message = ConversationMessage.objects.filter(pk=step.reply_to_id).first()
            if user_message is not None:
                resume_if_answered(user_message, schedule_session)
    return step
