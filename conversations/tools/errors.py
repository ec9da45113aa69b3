"""The errors of tools: a function that cannot be a tool, a tool call that cannot run.

Neither reaches a client: the first is raised while code declares its tools, the second is told
to the model (:meth:`ToolCallError.as_message`) so it can correct its call.
"""

from __future__ import annotations

import json
from typing import Any

from ..exceptions import ConversationError

__all__ = ["ToolCallError", "ToolDefinitionError"]


class ToolDefinitionError(ConversationError, TypeError):
    """A function cannot be offered as a tool (bad name, ``*args``, unresolvable annotation...)."""

    status_code = 500
    default_code = "invalid_tool_definition"
    default_detail = "This function cannot be used as a tool."


class ToolCallError(ConversationError, ValueError):
    """A tool call from the model cannot be run: the model's mistake, worth telling it.

    ``code`` is ``unknown_tool`` (no tool of that name), ``invalid_tool_arguments`` (not JSON, not
    an object, or not valid for the parameters; ``errors`` lists each problem) or
    ``invalid_tool_call`` (the call has no name). :meth:`as_message` turns it into the ``tool``
    message to send back so the model can correct itself.
    """

    default_code = "invalid_tool_call"
    default_detail = "The tool call is not valid."

    def __init__(
        self,
        message: str | None = None,
        *,
        tool_name: str | None = None,
        call_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ):
        self.tool_name = tool_name
        self.call_id = call_id
        self.errors = errors or []
        super().__init__(message, **kwargs)

    def as_message(self) -> dict[str, Any]:
        """The ``{"role": "tool", ...}`` message reporting this error to the model."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            error["errors"] = self.errors
        message: dict[str, Any] = {
            "role": "tool",
            "tool_call_id": self.call_id,
            "content": json.dumps({"error": error}),
        }
        if self.tool_name:
            message["name"] = self.tool_name
        return message
