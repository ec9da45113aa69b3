"""The exception family of Django AI Conversations.

Each error carries an HTTP ``status_code``, a stable ``default_code`` and a ``default_detail`` text
so the bridge can turn any of them into the error envelope
``{"errors": [{"code": ..., "message": ..., "field": ...}]}``.
"""

from __future__ import annotations

from typing import Any


class ConversationError(Exception):
    """Base class of every error raised by the app on purpose."""

    status_code = 400
    default_code = "invalid"
    default_detail = "The request could not be processed."

    def __init__(self, message: str | None = None, *, code: str | None = None, field: str | None = None):
        self.message = message or self.default_detail
        self.code = code or self.default_code
        self.field = field
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            error["field"] = self.field
        return error


class ImproperlyDeclaredAgent(ConversationError, TypeError):
    """An agent class is declared wrongly; raised when it is registered."""

    default_code = "improperly_declared_agent"


class AgentNotFound(ConversationError, LookupError):
    status_code = 404
    default_code = "agent_not_found"
    default_detail = "No agent is registered under that path."


class SessionNotFound(ConversationError, LookupError):
    status_code = 404
    default_code = "session_not_found"
    default_detail = "The conversation does not exist."


class FileNotFound(ConversationError, LookupError):
    status_code = 404
    default_code = "file_not_found"
    default_detail = "The file does not exist."


class ConversationPermissionDenied(ConversationError, PermissionError):
    status_code = 403
    default_code = "permission_denied"
    default_detail = "You do not have access to this conversation."


class ContextValidationError(ConversationError, ValueError):
    """The context for a session does not validate against the agent's ``Context`` model."""

    default_code = "invalid_context"

    def __init__(self, message: str | None = None, *, errors: list[dict[str, Any]] | None = None, **kwargs: Any):
        self.errors = errors or []
        super().__init__(message, **kwargs)


class InvalidInput(ConversationError, ValueError):
    """An argument of a public function is not valid; ``field`` names it when one is at fault."""

    default_code = "invalid"


class InvalidMessage(InvalidInput):
    default_code = "invalid_message"
    default_detail = "The message is not valid."


class WidgetNotFound(ConversationError, LookupError):
    status_code = 404
    default_code = "widget_not_found"
    default_detail = "The widget does not exist in this conversation."


class SessionNotActive(ConversationError):
    status_code = 409
    default_code = "session_not_active"
    default_detail = "The conversation is no longer active."


class TurnInProgress(ConversationError):
    """A turn runs in this conversation and the agent's policy is ``reject``."""

    status_code = 409
    default_code = "turn_in_progress"
    default_detail = "The agent is still answering the previous message."


class TurnInterrupted(ConversationError):
    """A turn's worker died (no heartbeat for ``STALE_TURN_TIMEOUT``) and crash recovery failed it.

    Not raised: passed as ``exception`` to the ``turn_failed`` signal and named in the logs.
    """

    status_code = 500
    default_code = "turn_interrupted"
    default_detail = "The worker answering this message stopped before it finished."


class NoActiveConversation(ConversationError, RuntimeError):
    """A helper of ``django_ai.conversations.context`` was called outside an agent's turn."""

    status_code = 500
    default_code = "no_active_conversation"


class TurnCancelled(BaseException):
    """Raised inside agent code to stop a turn that was cancelled or timed out.

    A BaseException so that an agent's ``except Exception`` does not swallow it.
    """

    def __init__(self, reason: str = "cancelled"):
        self.reason = reason
        super().__init__(reason)
