"""The synced database state: sessions, messages, widgets and files.

Every model uses a random UUID primary key, so ids can be shared with frontends without being
guessable or revealing volumes.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .conf import ai_settings
from .constants import ExtractionStatus, FeedbackRating, MessageRevision, MessageType, ProcessingStatus, SessionStatus
from .realtime.channels import session_channel

__all__ = ["ConversationMessage", "ConversationSession", "ConversationWidget", "File"]


def _upload_to(instance: File, filename: str) -> str:
    folder = timezone.now().strftime(ai_settings.UPLOAD_TO)
    # The stored name is random: the original name is kept in File.filename only.
    suffix = ""
    if "." in filename:
        suffix = "." + filename.rsplit(".", 1)[1][:16].lower()
    return f"{folder.rstrip('/')}/{uuid.uuid4().hex}{suffix}"


class ConversationSession(models.Model):
    """One conversation between an owner (a user or an anonymous visitor) and an agent."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent_path = models.CharField(_("agent path"), max_length=200)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="conversation_sessions",
    )
    anonymous_id = models.CharField(
        _("anonymous id"),
        max_length=128,
        blank=True,
        default="",
        help_text=_("Identifies an anonymous visitor; empty when the session belongs to a user."),
    )
    title = models.CharField(_("title"), max_length=200, blank=True, default="")
    context = models.JSONField(_("context"), default=dict, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=SessionStatus.choices, default=SessionStatus.ACTIVE)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    last_message_at = models.DateTimeField(_("last message at"), null=True, blank=True)
    #: When the owner deleted it (``status`` ``deleted``); None otherwise. docs/conversations.md.
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    # What the conversation's turns cost so far (docs/observability.md): sums of what agents
    # reported (``report_usage``), added in each turn's own transaction.
    prompt_tokens = models.PositiveBigIntegerField(_("prompt tokens"), default=0, editable=False)
    completion_tokens = models.PositiveBigIntegerField(_("completion tokens"), default=0, editable=False)
    cost = models.DecimalField(_("cost (USD)"), max_digits=16, decimal_places=8, default=0, editable=False)
    # The turn lease: the user message whose turn runs now, and when its worker last reported.
    # A turn holds the lease instead of a database lock, so no transaction stays open while the
    # agent thinks; a lease whose heartbeat is older than STALE_TURN_TIMEOUT is recovered.
    active_turn = models.UUIDField(null=True, blank=True, editable=False)
    turn_token = models.CharField(max_length=64, blank=True, default="", editable=False)
    turn_heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("conversation session")
        verbose_name_plural = _("conversation sessions")
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["user", "-updated_at"], name="convsess_user_recent"),
            models.Index(fields=["anonymous_id", "-updated_at"], name="convsess_anon_recent"),
            models.Index(fields=["agent_path", "status"], name="convsess_agent_status"),
        ]

    def __str__(self) -> str:
        return self.title or f"{self.agent_path} conversation {str(self.id)[:8]}"

    @property
    def channel_name(self) -> str:
        return session_channel(self.id)

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None


class ConversationMessage(models.Model):
    """A message of a conversation: the user's, the agent's, a system notice or a widget."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(ConversationSession, on_delete=models.CASCADE, related_name="messages")
    message_type = models.CharField(_("message type"), max_length=16, choices=MessageType.choices)
    content = models.TextField(_("content"), blank=True, default="")
    component_type = models.CharField(_("component type"), max_length=100, blank=True, default="")
    component_data = models.JSONField(_("component data"), default=dict, blank=True)
    files: models.ManyToManyField[File, Any] = models.ManyToManyField("File", blank=True, related_name="messages")
    processing_status = models.CharField(
        _("processing status"),
        max_length=20,
        choices=ProcessingStatus.choices,
        default=ProcessingStatus.COMPLETED,
    )
    # The user message an agent, system or widget message answers.
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    # Streaming: the sequence number of the last chunk whose text is included in ``content``.
    stream_sequence = models.PositiveIntegerField(_("stream sequence"), default=0)
    # Tool steps and widgets: where the row sits in its reply's text (UTF-16 units, as JavaScript
    # counts), so clients and history place it among the reply's parts. None on other messages.
    text_offset = models.PositiveIntegerField(_("text offset"), null=True, blank=True, editable=False)
    # Per-turn figures, on the agent message: queue_wait_ms, first_chunk_ms, total_ms, chunks,
    # prompt_tokens, completion_tokens ...
    metrics = models.JSONField(_("metrics"), default=dict, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    timestamp = models.DateTimeField(_("timestamp"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    # Turn bookkeeping on user messages.
    cancel_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: The ``X-Operation-Id`` of the bridge request that created this user message: a client that
    #: sends it again (a retry after a lost answer) gets this row back instead of a second message.
    client_operation_id = models.CharField(max_length=128, blank=True, default="", editable=False)

    # Versions (docs/versions.md). The conversation is a tree of user messages; the active path is
    # the one clients are shown and the model is sent. ``active`` marks its rows (user messages and
    # the rows replying to them); a new row is active, as it joins the path's end.
    active = models.BooleanField(_("on the active path"), default=True)
    #: User messages: the user message before this one on its path; None for the first, and for
    #: messages sent since the conversation's last version change (filled in by the next one:
    #: ``turns.versions.materialize_parents``), so sending a message costs no extra query.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children", editable=False
    )
    #: User messages: the id of the first version of this message, shared by all its versions;
    #: None on a message that has no other version yet (its group is then itself).
    version_group = models.UUIDField(_("version group"), null=True, blank=True, editable=False)
    #: User messages: this version's number (1 for the original) and how many versions the group
    #: has (kept equal on all of them), for a "< 2/3 >" picker without another query.
    version_index = models.PositiveSmallIntegerField(_("version"), default=1, editable=False)
    version_count = models.PositiveSmallIntegerField(_("versions"), default=1, editable=False)
    revision = models.CharField(
        _("revision"), max_length=16, choices=MessageRevision.choices, default=MessageRevision.ORIGINAL, editable=False
    )
    #: When this version was last chosen (created, or switched to); among siblings the path
    #: follows the most recently chosen one. None means its ``timestamp``.
    selected_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: User messages: the agent's Context (as stored JSON) when this turn started, and when it
    #: ended, so the turn can be answered again from its own starting point and switching to a
    #: path restores the Context that path ends with. None until the turn runs.
    context_before = models.JSONField(null=True, blank=True, editable=False)
    context_after = models.JSONField(null=True, blank=True, editable=False)

    # The owner's rating of an agent reply.
    feedback = models.CharField(_("feedback"), max_length=8, choices=FeedbackRating.choices, blank=True, default="")
    feedback_comment = models.TextField(_("feedback comment"), blank=True, default="")
    feedback_at = models.DateTimeField(_("feedback given at"), null=True, blank=True)

    class Meta:
        verbose_name = _("conversation message")
        verbose_name_plural = _("conversation messages")
        ordering = ["timestamp", "id"]
        indexes = [
            models.Index(fields=["session", "timestamp"], name="convmsg_session_time"),
            # The active path of a conversation, in order: what the bridge and history() read.
            models.Index(fields=["session", "active", "timestamp"], name="convmsg_session_path"),
            models.Index(fields=["version_group"], name="convmsg_version_group"),
            models.Index(
                fields=["processing_status", "updated_at"],
                name="convmsg_unfinished",
                condition=Q(processing_status__in=["pending", "processing", "streaming", "awaiting_approval"]),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "client_operation_id"],
                condition=~Q(client_operation_id=""),
                name="convmsg_unique_client_operation",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_message_type_display()} message {str(self.id)[:8]}"


class ConversationWidget(models.Model):
    """A UI component shown in a conversation (``display_widget``).

    ``data`` is what the agent sent; ``display_data`` is presentation state the frontend may change
    (a selected slot, a collapsed panel).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(ConversationSession, on_delete=models.CASCADE, related_name="widgets")
    message = models.OneToOneField(
        ConversationMessage,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="widget",
    )
    widget_type = models.CharField(_("widget type"), max_length=100)
    data = models.JSONField(_("data"), default=dict, blank=True)
    display_data = models.JSONField(_("display data"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("conversation widget")
        verbose_name_plural = _("conversation widgets")
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["session", "created_at"], name="convwidget_session_time")]

    def __str__(self) -> str:
        return f"{self.widget_type} widget {str(self.id)[:8]}"


class File(models.Model):
    """An uploaded file and the text extracted from it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="conversation_files",
    )
    anonymous_id = models.CharField(_("anonymous id"), max_length=128, blank=True, default="")
    session = models.ForeignKey(
        ConversationSession,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="files",
    )
    file = models.FileField(_("file"), upload_to=_upload_to, max_length=255)
    filename = models.CharField(_("file name"), max_length=255)
    content_type = models.CharField(_("content type"), max_length=127, blank=True, default="")
    size = models.PositiveBigIntegerField(_("size"), default=0)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True, default="")
    extraction_status = models.CharField(
        _("extraction status"),
        max_length=16,
        choices=ExtractionStatus.choices,
        default=ExtractionStatus.PENDING,
    )
    extraction_error = models.TextField(_("extraction error"), blank=True, default="")
    extracted_text = models.TextField(_("extracted text"), blank=True, default="")
    extracted_text_truncated = models.BooleanField(default=False)
    extractor = models.CharField(_("extractor"), max_length=100, blank=True, default="")
    extractor_version = models.CharField(_("extractor version"), max_length=50, blank=True, default="")
    extraction_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    extracted_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("file")
        verbose_name_plural = _("files")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="convfile_user_recent"),
            models.Index(fields=["anonymous_id", "-created_at"], name="convfile_anon_recent"),
            models.Index(fields=["sha256"], name="convfile_sha256"),
        ]

    def __str__(self) -> str:
        return self.filename or f"file {str(self.id)[:8]}"

    @property
    def text(self) -> str | None:
        """The extracted text, or None while extraction is pending or after it failed."""
        if self.extraction_status != ExtractionStatus.DONE:
            return None
        return self.extracted_text
