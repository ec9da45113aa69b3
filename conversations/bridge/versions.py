"""The version row actions of ``message`` (``regenerate``, ``edit``, ``activate``): the HTTP side
of :mod:`..turns.versions` (docs/versions.md, docs/bridge.md#versions).

The bridge has chosen the row already (``run_row_action``: the action's permission, the body's
keys, the object permission through ``get_object``, so another owner's message is a 404); these
functions check the body's values and call the turn layer with the request's ``X-Operation-Id``,
which makes a retried regenerate or edit return the version the first request made. What the
versions change reaches clients as ``model_change`` from the turn layer (the new version is a
save; the rows whose ``active`` or ``version_count`` changed are named in one event each).

An edit's body is checked as a message create's: ``content`` with the create's rules (a string,
not blank, at most ``MAX_MESSAGE_LENGTH``, no NUL), ``files`` as the create's ``files`` (ids of
files the caller may read, at most as many): the create's own validation runs on them, so a
project that narrows what a create may set narrows edits too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..constants import BridgeAction, ErrorCode, MessageType
from ..exceptions import InvalidInput
from ..messages import clean_message_text
from ..turns import versions
from .changes import current_operation_id
from .serialization import validate_write_data

if TYPE_CHECKING:
    from rest_framework.request import Request

    from .exposed import ExposedModel

__all__ = ["activate_action", "edit_action", "regenerate_action"]


def _operation_id() -> str:
    return current_operation_id.get() or ""


def regenerate_action(exposed: ExposedModel, request: Request, instance: Any, data: dict[str, Any]) -> Any:
    """``POST models/message/<pk>/regenerate/`` (no body keys): a new version of the user
    message ``pk`` names (it, or the row replying to it), answered again; the new user message."""
    return versions.regenerate(instance.pk, operation_id=_operation_id())


def edit_action(exposed: ExposedModel, request: Request, instance: Any, data: dict[str, Any]) -> Any:
    """``POST models/message/<pk>/edit/`` ``{"content": str, "files"?: [file ids]}``: a new
    version of the user message ``pk`` with this text (and these files; without ``files`` it
    keeps the message's own), answered again; the new user message."""
    if instance.message_type != MessageType.USER:
        raise InvalidInput(
            "Only a message the user sent can be edited.", code=ErrorCode.NOT_A_USER_MESSAGE, field="message"
        )
    if "content" not in data:
        raise InvalidInput(
            "content is required: the new text of the message.", code=ErrorCode.REQUIRED, field="content"
        )
    body: dict[str, Any] = {"session": str(instance.session_id), "content": data["content"]}
    if "files" in data:
        body["files"] = data["files"]
    # The create's validation: the content a string, the files readable by the caller, their count.
    validated = validate_write_data(exposed, request, BridgeAction.CREATE, body, instance=None)
    content = clean_message_text(validated.get("content", data["content"]), field="content")
    files = list(validated["files"]) if "files" in data else None
    message = versions.edit(instance.pk, content=content, files=files, operation_id=_operation_id())
    for row in files or ():
        if row.session_id is None:
            # An upload not attached yet joins the conversation, as with a create (one save
            # each, so each sends its model_change after commit).
            row.session_id = message.session_id
            row.save(update_fields=["session", "updated_at"])
    return message


def activate_action(exposed: ExposedModel, request: Request, instance: Any, data: dict[str, Any]) -> Any:
    """``POST models/message/<pk>/activate/`` (no body keys): make the version ``pk`` names (a
    user message, or a row replying to one) the active one; the user message."""
    return versions.activate_version(instance.pk, operation_id=_operation_id())
