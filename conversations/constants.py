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


class MessageType(models.TextChoices):
    USER = "user", _("User")
    AGENT = "agent", _("Agent")
    SYSTEM = "system", _("System")
    WIDGET = "widget", _("Widget")


class ProcessingStatus(models.TextChoices):
    """Life cycle of a message.

    User messages: pending -> processing -> completed | failed | cancelled.
    Agent messages: streaming -> completed | failed | cancelled (or completed at once when the
    agent answers without a stream).
    """

    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    STREAMING = "streaming", _("Streaming")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


FINISHED_STATUSES = frozenset(
    {ProcessingStatus.COMPLETED, ProcessingStatus.FAILED, ProcessingStatus.CANCELLED}
)


class ExtractionStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


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
