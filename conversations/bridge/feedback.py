"""The ``feedback`` row action of ``message``: the owner's rating of an agent reply
(docs/conversations.md). STUB: issue 14 groundwork."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import InvalidInput

if TYPE_CHECKING:
    from rest_framework.request import Request

    from .exposed import ExposedModel

__all__ = ["feedback_action"]


def feedback_action(exposed: ExposedModel, request: Request, instance: Any, data: dict[str, Any]) -> Any:
    raise InvalidInput("Not implemented yet.")
