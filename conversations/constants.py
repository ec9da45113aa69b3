"""Names that travel over the wire, defined once.

The TypeScript SDK mirrors these (``frontend_client/src/constants.ts``); a test keeps both equal.
"""

from enum import StrEnum

from django.db import models
from django.utils.translation import gettext_lazy as _


class SessionStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    COMPLETED = "completed", _("Completed")
    ARCHIVED = "archived", _("Archived")
    #: Deleted by its owner (soft): hidden from the owner everywhere, restorable in the admin until
    #: ``manage.py purge_conversations`` removes it for good (docs/conversations.md).
    DELETED = "deleted", _("Deleted")


class MessageType(models.TextChoices):
    USER = "user", _("User")
    AGENT = "agent", _("Agent")
    SYSTEM = "system", _("System")
    WIDGET = "widget", _("Widget")
    #: A tool call of the agent's reply (``component_data`` holds the step: docs/tools.md, "Tool steps").
    TOOL = "tool", _("Tool call")


class ProcessingStatus(models.TextChoices):
    """Life cycle of a message.

    User messages: pending -> processing -> completed | failed | cancelled, or -> awaiting_approval
    (the turn waits for the user to answer a tool's approval; no worker is held) -> pending again
    once answered.
    Agent messages: streaming -> completed | failed | cancelled (or completed at once when the
    agent answers without a stream); awaiting_approval while its turn waits.
    Tool steps (``message_type="tool"``): processing (running) -> completed | failed | cancelled;
    awaiting_approval -> pending (approved, runs when the turn resumes) or failed (rejected, expired).
    """

    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    STREAMING = "streaming", _("Streaming")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")
    AWAITING_APPROVAL = "awaiting_approval", _("Awaiting approval")


FINISHED_STATUSES = frozenset({ProcessingStatus.COMPLETED, ProcessingStatus.FAILED, ProcessingStatus.CANCELLED})


class MessageRevision(models.TextChoices):
    """How a user message came to be (docs/versions.md): sent, or a new version of an earlier one
    (``regenerate``: the same text answered again; ``edit``: new text). Versions of one message
    share its ``version_group``."""

    ORIGINAL = "original", _("Original")
    REGENERATE = "regenerate", _("Regenerated")
    EDIT = "edit", _("Edited")


class FeedbackRating(models.TextChoices):
    """An owner's rating of an agent reply (``POST models/message/<pk>/feedback/``)."""

    UP = "up", _("Thumbs up")
    DOWN = "down", _("Thumbs down")


class ExtractionStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class ApprovalStatus(StrEnum):
    """The ``approval["status"]`` of a tool step that needs the user's approval before it runs."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class ConcurrencyPolicy(StrEnum):
    """What happens to a user message that arrives while a turn of the same session runs."""

    ENQUEUE = "enqueue"
    REJECT = "reject"
    INTERRUPT = "interrupt"


class EventName(StrEnum):
    """Realtime event names (the ``event`` of a Pusher message, or of a Server-Sent Event)."""

    STREAM_START = "stream_start"
    TEXT_CHUNK = "text_chunk"
    STREAM_END = "stream_end"
    WIDGET = "widget"
    WIDGET_UPDATE = "widget_update"
    MESSAGE_STATUS = "message_status"
    MODEL_CHANGE = "model_change"
    TOOL_CALL_START = "tool_call_start"
    TOOL_CALL_ARGUMENTS = "tool_call_arguments"
    TOOL_CALL_RESULT = "tool_call_result"


class ModelOperation(StrEnum):
    """The ``operation`` of a ``model_change`` event."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class BridgeAction(StrEnum):
    """What a bridge request does to a model (permission classes and ``schema/`` use these)."""

    READ = "read"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


SESSION_CHANNEL_PREFIX = "private-conversation-session-"
OWNER_CHANNEL_PREFIX = "private-conversation-owner-"


class BuiltinModel(StrEnum):
    """The bridge names of the app's own models (``bridge/builtins.py``), as ``model_change`` carries them."""

    SESSION = "session"
    MESSAGE = "message"
    WIDGET = "widget"
    FILE = "file"


class ErrorCode(StrEnum):
    """Every ``code`` the app sends to a client.

    Where a code travels: the ``code`` of an error envelope entry
    (``{"errors": [{"code", "message", "field"?}]}``), ``metadata["code"]`` of the system message
    that tells why a turn failed, and ``metadata["extraction"]["error_code"]`` of a failed file.
    A new error code is added here (and to ``frontend_client/src/constants.ts``) before it is
    raised; ``tests/test_sdk_constants.py`` fails on a code the code base sends that is missing.

    The entries of a DRF validation error of a project model's field keep the code of the field or
    validator that refused the value (``max_length``, ``invalid_choice``...): the common ones are
    listed, a project's own validators may add others.
    """

    # Generic (ConversationError, InvalidInput, DRF ValidationError) and HTTP-level answers.
    INVALID = "invalid"
    REQUIRED = "required"
    BAD_REQUEST = "bad_request"
    PARSE_ERROR = "parse_error"
    REQUEST_TOO_LARGE = "request_too_large"
    TOO_MANY_FIELDS = "too_many_fields"
    TOO_MANY_FILES = "too_many_files"
    NOT_AUTHENTICATED = "not_authenticated"
    AUTHENTICATION_FAILED = "authentication_failed"
    PERMISSION_DENIED = "permission_denied"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    THROTTLED = "throttled"
    ERROR = "error"

    # DRF field validation (a write's field values).
    NULL = "null"
    BLANK = "blank"
    MAX_LENGTH = "max_length"
    MIN_LENGTH = "min_length"
    MAX_VALUE = "max_value"
    MIN_VALUE = "min_value"
    INVALID_CHOICE = "invalid_choice"
    DOES_NOT_EXIST = "does_not_exist"
    INCORRECT_TYPE = "incorrect_type"
    UNIQUE = "unique"

    # Conversations, messages, widgets, files (the seed API and the start view).
    AGENT_NOT_FOUND = "agent_not_found"
    SESSION_NOT_FOUND = "session_not_found"
    FILE_NOT_FOUND = "file_not_found"
    WIDGET_NOT_FOUND = "widget_not_found"
    INVALID_CONTEXT = "invalid_context"
    START_PARAM_NOT_ALLOWED = "start_param_not_allowed"
    INVALID_MESSAGE = "invalid_message"
    SESSION_NOT_ACTIVE = "session_not_active"
    TURN_IN_PROGRESS = "turn_in_progress"
    NO_ACTIVE_CONVERSATION = "no_active_conversation"

    # Why a turn failed (``metadata["code"]`` of its system message).
    AGENT_ERROR = "agent_error"
    TURN_TIMEOUT = "turn_timeout"
    TURN_INTERRUPTED = "turn_interrupted"

    # Tool steps (``component_data["error"]["code"]`` of a tool message; also told to the model).
    UNKNOWN_TOOL = "unknown_tool"
    INVALID_TOOL_CALL = "invalid_tool_call"
    INVALID_TOOL_ARGUMENTS = "invalid_tool_arguments"
    TOOL_ERROR = "tool_error"
    TOOL_TIMEOUT = "tool_timeout"
    TOOL_REJECTED = "tool_rejected"
    APPROVAL_EXPIRED = "approval_expired"
    TOOL_ROUNDS_EXCEEDED = "tool_rounds_exceeded"

    # Answering a tool's approval (``POST models/message/<pk>/approve/``).
    NOT_A_TOOL_STEP = "not_a_tool_step"
    APPROVAL_ALREADY_ANSWERED = "approval_already_answered"
    NOT_AWAITING_APPROVAL = "not_awaiting_approval"

    # Versions and feedback (regenerate, edit, activate, feedback row actions on a message).
    NOT_A_USER_MESSAGE = "not_a_user_message"
    NOT_AN_AGENT_REPLY = "not_an_agent_reply"

    # The bridge.
    INVALID_REQUEST = "invalid_request"
    UNKNOWN_MODEL = "unknown_model"
    INVALID_QUERY = "invalid_query"
    INVALID_BODY = "invalid_body"
    UNKNOWN_KEY = "unknown_key"
    UNKNOWN_FILTER = "unknown_filter"
    INVALID_LIMIT = "invalid_limit"
    INVALID_OFFSET = "invalid_offset"
    FIELD_NOT_ALLOWED = "field_not_allowed"
    TOO_MANY_VALUES = "too_many_values"
    EMPTY_UPDATE = "empty_update"
    INVALID_STATUS = "invalid_status"
    OPERATION_NOT_ALLOWED = "operation_not_allowed"
    INVALID_ANONYMOUS_ID = "invalid_anonymous_id"
    OPERATION_ID_REUSED = "operation_id_reused"

    # Uploads.
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_FILE_TYPE = "unsupported_file_type"
    INVALID_UPLOAD = "invalid_upload"
    NO_OWNER = "no_owner"

    # Text extraction (``metadata["extraction"]["error_code"]`` of a failed file).
    EXTRACTION_FAILED = "extraction_failed"
    EXTRACTOR_UNAVAILABLE = "extractor_unavailable"
    EXTRACTOR_BUSY = "extractor_busy"
    ENCRYPTED = "encrypted"
    CORRUPT = "corrupt"
    UNSUPPORTED = "unsupported"
    OCR_UNAVAILABLE = "ocr_unavailable"
    TIMEOUT = "timeout"
    TOO_COMPLEX = "too_complex"
    EMPTY_FILE = "empty_file"
    MISSING_FILE = "missing_file"

    # Realtime (channel authorization and the Server-Sent Events view).
    INVALID_CHANNEL = "invalid_channel"
    CHANNEL_FORBIDDEN = "channel_forbidden"
    INVALID_SOCKET_ID = "invalid_socket_id"
    TOO_MANY_CHANNELS = "too_many_channels"
    TOO_MANY_STREAMS = "too_many_streams"
    NOT_AVAILABLE = "not_available"
