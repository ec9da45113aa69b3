"""The ``feedback`` row action of ``message``: the owner's rating of an agent reply
(docs/conversations.md, "Feedback"). The rules are :func:`~django_ai.conversations.feedback.rate_reply`'s."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..constants import ErrorCode
from ..exceptions import InvalidInput
from ..feedback import rate_reply
from ..owners import get_owner

if TYPE_CHECKING:
    from rest_framework.request import Request

    from .exposed import ExposedModel

__all__ = ["feedback_action"]


def feedback_action(exposed: ExposedModel, request: Request, instance: Any, data: dict[str, Any]) -> Any:
    """``{"rating": "up" | "down" | null, "comment"?: str}`` on the row ``instance`` (the permission
    classes chose it: the caller's, in a conversation not deleted); answers the reply.

    ``rating`` is required (null withdraws the rating and its comment): a body without it is a
    400 ``required``, so a client that forgot it never erases a rating by accident."""
    if "rating" not in data:
        raise InvalidInput('rating is required: "up", "down" or null.', code=ErrorCode.REQUIRED, field="rating")
    return rate_reply(instance, data["rating"], data.get("comment", ""), user=get_owner(request).user)
