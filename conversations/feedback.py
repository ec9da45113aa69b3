"""The owner's rating of an agent reply: thumbs up or down, an optional comment (docs/conversations.md,
"Feedback").

:func:`rate_reply` is the one place that checks and stores a rating; the bridge's row action
``feedback`` (``bridge/feedback.py``) and ``ConversationService.give_feedback`` call it once they
know the caller owns the message. The ``message_feedback`` signal is sent once the rating commits.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from .agent import ConversationAgent
from .constants import ErrorCode, FeedbackRating, MessageType
from .exceptions import AgentNotFound, InvalidInput
from .models import ConversationMessage
from .registry import registry
from .signals import message_feedback

__all__ = ["MAX_COMMENT_LENGTH", "clean_feedback", "rate_reply"]

logger = logging.getLogger(__name__)

#: Longest comment kept with a rating.
MAX_COMMENT_LENGTH = 2000


def clean_feedback(rating: Any, comment: Any) -> tuple[str | None, str]:
    """``(rating, comment)`` checked: a rating ``"up"``, ``"down"`` or None (withdrawn), a comment
    of at most :data:`MAX_COMMENT_LENGTH` characters without NUL. A withdrawn rating has no
    comment. Raises :class:`InvalidInput` (400) naming the field."""
    if rating is not None and (not isinstance(rating, str) or rating not in FeedbackRating.values):
        raise InvalidInput('rating must be "up", "down" or null (to withdraw it).', field="rating")
    if comment is None:
        comment = ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_LENGTH or "\x00" in comment:
        raise InvalidInput(
            f"comment must be a string of at most {MAX_COMMENT_LENGTH} characters, without NUL.", field="comment"
        )
    return rating, comment.strip() if rating is not None else ""


def _sender(agent_path: str) -> Any:
    try:
        return registry.get(agent_path)
    except AgentNotFound:
        return ConversationAgent


def _send_signal(sender: Any, **kwargs: Any) -> None:
    # A receiver that fails is logged; the rating is stored already, and the others still hear it.
    for receiver, result in message_feedback.send_robust(sender=sender, **kwargs):
        if isinstance(result, BaseException):
            logger.error(
                "A receiver of message_feedback failed: %r",
                receiver,
                exc_info=(type(result), result, result.__traceback__),
            )


def rate_reply(
    message: ConversationMessage, rating: Any, comment: Any = "", *, user: Any = None
) -> ConversationMessage:
    """Store the rating of the agent reply ``message`` (the caller checked who may rate it) and
    send ``message_feedback`` once it commits; returns the message.

    ``rating`` None withdraws it (the comment goes too). Only an agent message can be rated:
    anything else is :class:`InvalidInput` with code ``not_an_agent_reply`` (400). ``user`` is who
    rated (None: an anonymous visitor), passed on to the signal.
    """
    rating, comment = clean_feedback(rating, comment)
    if message.message_type != MessageType.AGENT:
        raise InvalidInput(
            "Only an agent's reply can be rated; this message is not one.",
            code=ErrorCode.NOT_AN_AGENT_REPLY,
        )
    message.feedback = rating or ""
    message.feedback_comment = comment
    message.feedback_at = timezone.now() if rating is not None else None
    with transaction.atomic():
        # Only these fields: a turn may be writing the reply's text at the same moment.
        message.save(update_fields=["feedback", "feedback_comment", "feedback_at", "updated_at"])
        session = message.session
        transaction.on_commit(
            lambda: _send_signal(
                _sender(session.agent_path), session=session, message=message, rating=rating, comment=comment, user=user
            )
        )
    return message
