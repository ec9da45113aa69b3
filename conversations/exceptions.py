"""The exception family of Django AI Conversations: every error that reaches a client.

Each error carries an HTTP ``status_code``, a stable ``default_code`` (an
:class:`~django_ai.conversations.constants.ErrorCode`) and a ``default_detail`` text, so the app's
exception handler turns any of them into the error envelope
``{"errors": [{"code": ..., "message": ..., "field": ...}]}``.

A new wire error is a subclass here with a new ``ErrorCode`` member (and its TS twin). Errors that
never reach a client stay beside the code that raises them: ``tools.ToolDefinitionError`` and
``tools.ToolCallError`` (told to the model), ``decorators.ContextInjectionError`` (a method declared
wrongly). The modules that raise these errors re-export them under their old names
(``bridge.errors``, ``uploads``, ``extraction``, ``realtime.auth``...).
"""

from __future__ import annotations

from typing import Any

from .constants import ErrorCode


class ConversationError(Exception):
    """Base class of every error raised by the app on purpose."""

    status_code = 400
    default_code: str = ErrorCode.INVALID
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
    """An agent class is declared wrongly; raised when it is registered (never sent to a client)."""

    default_code = "improperly_declared_agent"


class AgentNotFound(ConversationError, LookupError):
    status_code = 404
    default_code = ErrorCode.AGENT_NOT_FOUND
    default_detail = "No agent is registered under that path."


class SessionNotFound(ConversationError, LookupError):
    status_code = 404
    default_code = ErrorCode.SESSION_NOT_FOUND
    default_detail = "The conversation does not exist."


class FileNotFound(ConversationError, LookupError):
    status_code = 404
    default_code = ErrorCode.FILE_NOT_FOUND
    default_detail = "The file does not exist."


class MessageNotFound(ConversationError, LookupError):
    """No message with that id, or not one of the caller's conversations (the same answer, so an
    id of someone else's message reveals nothing)."""

    status_code = 404
    default_code = ErrorCode.NOT_FOUND
    default_detail = "The message does not exist."


class ConversationPermissionDenied(ConversationError, PermissionError):
    status_code = 403
    default_code = ErrorCode.PERMISSION_DENIED
    default_detail = "You do not have access to this conversation."


class ContextValidationError(ConversationError, ValueError):
    """The context for a session does not validate against the agent's ``Context`` model."""

    default_code = ErrorCode.INVALID_CONTEXT

    def __init__(self, message: str | None = None, *, errors: list[dict[str, Any]] | None = None, **kwargs: Any):
        self.errors = errors or []
        super().__init__(message, **kwargs)


class InvalidInput(ConversationError, ValueError):
    """An argument of a public function is not valid; ``field`` names it when one is at fault."""

    default_code = ErrorCode.INVALID


class InvalidMessage(InvalidInput):
    default_code = ErrorCode.INVALID_MESSAGE
    default_detail = "The message is not valid."


class WidgetNotFound(ConversationError, LookupError):
    status_code = 404
    default_code = ErrorCode.WIDGET_NOT_FOUND
    default_detail = "The widget does not exist in this conversation."


class SessionNotActive(ConversationError):
    status_code = 409
    default_code = ErrorCode.SESSION_NOT_ACTIVE
    default_detail = "The conversation is no longer active."


class TurnInProgress(ConversationError):
    """A turn runs in this conversation and the agent's policy is ``reject``."""

    status_code = 409
    default_code = ErrorCode.TURN_IN_PROGRESS
    default_detail = "The agent is still answering the previous message."


class TurnInterrupted(ConversationError):
    """A turn's worker died (no heartbeat for ``STALE_TURN_TIMEOUT``) and crash recovery failed it.

    Not raised: passed as ``exception`` to the ``turn_failed`` signal and named in the logs.
    """

    status_code = 500
    default_code = ErrorCode.TURN_INTERRUPTED
    default_detail = "The worker answering this message stopped before it finished."


class ApprovalError(ConversationError):
    """Base class of the refusals of an answer to a tool call's approval
    (:func:`~django_ai.conversations.turns.approval.answer_approval`)."""

    status_code = 409
    default_code = ErrorCode.APPROVAL_ALREADY_ANSWERED


class NotAToolStep(ApprovalError):
    """The message answered is not a tool step (``message_type`` ``tool``)."""

    status_code = 400
    default_code = ErrorCode.NOT_A_TOOL_STEP
    default_detail = "Only a tool step (a message of type tool) can be approved or rejected."


class ApprovalAlreadyAnswered(ApprovalError):
    """The tool step's approval was answered already, expired, or was cancelled with its turn."""

    status_code = 409
    default_code = ErrorCode.APPROVAL_ALREADY_ANSWERED
    default_detail = "This tool call's approval has already been answered."


class NotAwaitingApproval(ApprovalError):
    """The tool step never needed an approval (its tool does not require one)."""

    status_code = 409
    default_code = ErrorCode.NOT_AWAITING_APPROVAL
    default_detail = "This tool call does not wait for an approval."


class NoActiveConversation(ConversationError, RuntimeError):
    """A helper of ``django_ai.conversations.context`` was called outside an agent's turn."""

    status_code = 500
    default_code = ErrorCode.NO_ACTIVE_CONVERSATION


class BridgeError(ConversationError):
    """Base class of the errors the bridge raises on purpose."""

    default_code = ErrorCode.INVALID_REQUEST
    default_detail = "The request is not valid."


class UnknownModel(BridgeError, LookupError):
    status_code = 404
    default_code = ErrorCode.UNKNOWN_MODEL
    default_detail = "No model is exposed under that name."


class ObjectNotFound(BridgeError, LookupError):
    """The row does not exist, or the caller may not see it (the two are never told apart)."""

    status_code = 404
    default_code = ErrorCode.NOT_FOUND
    default_detail = "The object does not exist."


class InvalidQuery(BridgeError, ValueError):
    default_code = ErrorCode.INVALID_QUERY
    default_detail = "The query is not valid."


class FieldNotAllowed(BridgeError):
    default_code = ErrorCode.FIELD_NOT_ALLOWED
    default_detail = "This field may not be used here."


class OperationNotAllowed(BridgeError):
    status_code = 403
    default_code = ErrorCode.PERMISSION_DENIED
    default_detail = "You may not perform this operation."


class RequestTooLarge(BridgeError):
    status_code = 413
    default_code = ErrorCode.REQUEST_TOO_LARGE
    default_detail = "The request body is too large."


class InvalidAnonymousId(BridgeError):
    """The anonymous id header is not an id this app issued: refused rather than ignored, so a
    client that lost or mangled its id is told so instead of silently becoming a new visitor."""

    default_code = ErrorCode.INVALID_ANONYMOUS_ID
    default_detail = "The anonymous id header does not hold an id issued by this server."


class OperationIdReused(BridgeError):
    """An ``X-Operation-Id`` already used for a different write: a retry must repeat its request."""

    status_code = 409
    default_code = ErrorCode.OPERATION_ID_REUSED
    default_detail = "This X-Operation-Id was already used for another request."


class MultipleErrors(BridgeError):
    """Several errors at once (e.g. one per invalid field), all with the same status."""

    def __init__(self, errors: list[ConversationError], *, status_code: int = 400):
        self.errors = errors
        self.status_code = status_code
        first = errors[0] if errors else None
        super().__init__(first.message if first else None, code=first.code if first else None)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.errors]


class FileTooLarge(ConversationError):
    status_code = 413
    default_code = ErrorCode.FILE_TOO_LARGE
    default_detail = "The file is too large."


class UnsupportedFileType(ConversationError):
    status_code = 415
    default_code = ErrorCode.UNSUPPORTED_FILE_TYPE
    default_detail = "Files of this type are not accepted."


class InvalidUpload(ConversationError):
    default_code = ErrorCode.INVALID_UPLOAD
    default_detail = "The upload is not valid."


class ExtractionError(ConversationError):
    """Extraction of one file failed for a reason a person can act on.

    ``message`` is stored on the File (``extraction_error``) and shown to users, so it says what
    happened in plain words; technical details go to the log. ``code`` is one of ``encrypted``,
    ``corrupt``, ``unsupported``, ``empty_file``, ``missing_file``, ``timeout``, ``too_complex``,
    ``ocr_unavailable``, ``extractor_unavailable``, ``extractor_busy`` or ``extraction_failed``.
    """

    status_code = 422
    default_code = ErrorCode.EXTRACTION_FAILED
    default_detail = "The text of this file could not be read."


class InvalidChannel(ConversationPermissionDenied):
    default_code = ErrorCode.INVALID_CHANNEL
    default_detail = "This is not a conversation channel."


class ChannelForbidden(ConversationPermissionDenied):
    default_code = ErrorCode.CHANNEL_FORBIDDEN
    default_detail = "You may not subscribe to this channel."


class TooManyStreams(ConversationError):
    """A holder (visitor, client address) already has as many open streams as it may."""

    status_code = 429
    default_code = ErrorCode.TOO_MANY_STREAMS
    default_detail = "Too many event streams are open; close one before opening another."


class InvalidRealtimeRequest(ConversationError):
    default_code = ErrorCode.INVALID
    default_detail = "The request is not valid."


class RealtimeNotAvailable(ConversationError):
    status_code = 404
    default_code = ErrorCode.NOT_AVAILABLE
    default_detail = "Server-Sent Events are served by the Local realtime backend only."


class TurnCancelled(BaseException):
    """Raised inside agent code to stop a turn that was cancelled or timed out.

    A BaseException so that an agent's ``except Exception`` does not swallow it.
    """

    def __init__(self, reason: str = "cancelled"):
        self.reason = reason
        super().__init__(reason)
