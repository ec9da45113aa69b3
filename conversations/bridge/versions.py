"""The version row actions of ``message`` (``regenerate``, ``edit``, ``activate``): the HTTP side
of ``turns.versions`` (docs/versions.md). STUB: issue 14 groundwork."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import InvalidInput

if TYPE_CHECKING:
    from rest_framework.request import Request

    from .exposed import ExposedModel

__all__ = ["activate_action", "edit_action", "regenerate_action"]


def regenerate_action(exposed: ExposedModel, request: Request, instance: Any, data: dict[str, Any]) -> Any:
    raise InvalidInput("Not implemented yet.")


def edit_action(exposed: ExposedModel, request: Request, instance: Any, data: dict[str, Any]) -> Any:
    raise InvalidInput("Not implemented yet.")


def activate_action(exposed: ExposedModel, request: Request, instance: Any, data: dict[str, Any]) -> Any:
    raise InvalidInput("Not implemented yet.")
