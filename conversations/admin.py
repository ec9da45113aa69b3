"""Admin for conversations: sessions with their messages inline.

The lists fit a 1280 px screen with the filter sidebar: few columns, titles, contents and ids
cut short (the full value in the cell's tooltip), one compact date. Inlines show only when the
session has rows for them: no empty "widgets" table under every conversation.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import SimpleListFilter
from django.contrib.admin.options import InlineModelAdmin
from django.db import models
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.urls import URLPattern
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from .admin_ops import operations_urls
from .admin_usage import CostFilter, OwnerKindFilter, format_cost, format_tokens, usage_urls
from .constants import FeedbackRating, SessionStatus
from .files.extraction.tasks import reextract
from .models import ConversationMessage, ConversationSession, ConversationWidget, File
from .turns.scheduling import rerun_messages

#: Characters shown of a title, an owner's name or a message's content in a list cell.
TITLE_CHARS = 40
OWNER_CHARS = 20
SESSION_CHARS = 24
PREVIEW_CHARS = 80
INLINE_PREVIEW_CHARS = 200


def _pretty_json(value: object) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


def _short(text: str, chars: int) -> str:
    """``text`` on one line, cut to ``chars`` characters; the whole of it (up to 1,000 characters)
    in the tooltip."""
    flat = " ".join(str(text).split())
    short = Truncator(flat).chars(chars)
    if short == flat:
        return short
    return format_html('<span title="{}">{}</span>', Truncator(flat).chars(1000), short)


def _short_id(obj: models.Model) -> str:
    full = str(obj.pk)
    return format_html('<code title="{}">{}</code>', full, full[:8])


def _when(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M") if value else "-"


class ShownWhenFilledInline(admin.TabularInline):
    """An inline the change page shows only when the object has rows for it (and never on the
    add page): ``extra = 0`` alone still draws an empty table with its headers."""

    extra = 0

    fk_name: str

    def has_rows(self, obj: models.Model) -> bool:
        return self.model._default_manager.filter(**{self.fk_name: obj}).exists()


class MessageInline(ShownWhenFilledInline):
    model = ConversationMessage
    fk_name = "session"
    fields = ("timestamp", "message_type", "processing_status", "content_preview", "component_type")
    readonly_fields = fields
    ordering = ("timestamp",)
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    @admin.display(description="content")
    def content_preview(self, obj: ConversationMessage) -> str:
        return _short(obj.content, INLINE_PREVIEW_CHARS)


class WidgetInline(ShownWhenFilledInline):
    model = ConversationWidget
    fk_name = "session"
    fields = ("widget_type", "data", "display_data", "created_at")
    readonly_fields = ("created_at",)


@admin.register(ConversationSession)
class ConversationSessionAdmin(admin.ModelAdmin):
    """Every conversation, those their owners deleted too (filter by status ``deleted``): they can
    be restored until ``manage.py purge_conversations`` removes them."""

    list_display = ("conversation", "agent_path", "owner", "status", "tokens", "cost_usd", "updated")
    list_display_links = ("conversation",)
    list_select_related = ("user",)
    list_filter = ("status", "agent_path", OwnerKindFilter, CostFilter, "created_at")
    search_fields = ("id", "title", "agent_path", "user__username", "user__email", "messages__content")
    readonly_fields = (
        "id",
        "created_at",
        "updated_at",
        "last_message_at",
        "context_view",
        "active_turn",
        "turn_heartbeat_at",
        "deleted_at",
        "prompt_tokens",
        "completion_tokens",
        "cost",
    )
    exclude = ("context",)
    raw_id_fields = ("user",)
    date_hierarchy = "created_at"
    inlines = [MessageInline, WidgetInline]
    actions = ["restore_deleted"]

    def save_model(self, request: HttpRequest, obj: ConversationSession, form: Any, change: bool) -> None:
        # A status changed here keeps deleted_at true: dated when deleted, cleared otherwise.
        if obj.status == SessionStatus.DELETED and obj.deleted_at is None:
            obj.deleted_at = timezone.now()
        elif obj.status != SessionStatus.DELETED:
            obj.deleted_at = None
        super().save_model(request, obj, form, change)

    @admin.action(description="Restore deleted conversations", permissions=["change"])
    def restore_deleted(self, request: HttpRequest, queryset: QuerySet[ConversationSession]) -> None:
        restored = 0
        # One by one: each save tells the owner's open pages (model_change) it is back.
        for session in queryset.filter(status=SessionStatus.DELETED):
            session.status = SessionStatus.ACTIVE
            session.deleted_at = None
            session.save(update_fields=["status", "deleted_at", "updated_at"])
            restored += 1
        if restored:
            self.message_user(request, f"{restored} conversation(s) restored.", messages.SUCCESS)
        else:
            self.message_user(request, "None of the selected conversations was deleted.", messages.WARNING)

    def get_urls(self) -> list[URLPattern]:
        # The operations view (admin_ops.py) lives under this admin's URLs; its change list
        # template links to it.
        return [*operations_urls(self.admin_site), *usage_urls(self), *super().get_urls()]

    def get_inline_instances(
        self, request: HttpRequest, obj: ConversationSession | None = None
    ) -> list[InlineModelAdmin[Any, Any]]:
        inlines = super().get_inline_instances(request, obj)
        return [
            inline
            for inline in inlines
            if obj is not None and (not isinstance(inline, ShownWhenFilledInline) or inline.has_rows(obj))
        ]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ConversationSession], search_term: str
    ) -> tuple[QuerySet[ConversationSession], bool]:
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return queryset, True if search_term else may_have_duplicates

    @admin.display(description="conversation", ordering="title")
    def conversation(self, obj: ConversationSession) -> str:
        title = _short(obj.title, TITLE_CHARS) if obj.title else format_html("<i>{}</i>", "untitled")
        return format_html("{} {}", title, _short_id(obj))

    @admin.display(description="owner")
    def owner(self, obj: ConversationSession) -> str:
        if obj.user_id:
            return _short(str(obj.user), OWNER_CHARS)
        return "anonymous" if obj.anonymous_id else "-"

    @admin.display(description="tokens", ordering=F("prompt_tokens") + F("completion_tokens"))
    def tokens(self, obj: ConversationSession) -> str:
        return format_html(
            '<span title="{} prompt, {} completion">{}</span>',
            obj.prompt_tokens,
            obj.completion_tokens,
            format_tokens(obj.prompt_tokens + obj.completion_tokens),
        )

    @admin.display(description="cost", ordering="cost")
    def cost_usd(self, obj: ConversationSession) -> str:
        return format_cost(obj.cost)

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj: ConversationSession) -> str:
        return _when(obj.updated_at)

    @admin.display(description="context")
    def context_view(self, obj: ConversationSession) -> str:
        return _pretty_json(obj.context)


class FeedbackFilter(SimpleListFilter):
    """Agent replies by their owner's rating."""

    title = "feedback"
    parameter_name = "feedback"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("up", "Rated up"), ("down", "Rated down"), ("rated", "Rated"), ("none", "Not rated")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ConversationMessage]) -> QuerySet[ConversationMessage]:
        value = self.value()
        if value in (FeedbackRating.UP, FeedbackRating.DOWN):
            return queryset.filter(feedback=value)
        if value == "rated":
            return queryset.exclude(feedback="")
        if value == "none":
            return queryset.filter(message_type="agent", feedback="")
        return queryset


@admin.register(ConversationMessage)
class ConversationMessageAdmin(admin.ModelAdmin):
    list_display = ("short_id", "content_preview", "kind", "status", "rating", "conversation", "sent")
    list_display_links = ("short_id",)
    list_select_related = ("session",)
    list_filter = ("message_type", "processing_status", FeedbackFilter, "timestamp")
    search_fields = ("id", "content", "session__id")
    raw_id_fields = ("session", "reply_to")
    filter_horizontal = ("files",)
    readonly_fields = (
        "id",
        "timestamp",
        "updated_at",
        "metrics_view",
        "started_at",
        "finished_at",
        "attempts",
        "cancel_requested_at",
        # The owner's rating is theirs: readable here, never edited.
        "feedback",
        "feedback_comment",
        "feedback_at",
    )
    date_hierarchy = "timestamp"
    actions = ["rerun_failed"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # A user message added here is answered by the agent (enqueued on save): start it pending.
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("message_type", "user")
        initial.setdefault("processing_status", "pending")
        return initial

    @admin.display(description="id")
    def short_id(self, obj: ConversationMessage) -> str:
        return _short_id(obj)

    @admin.display(description="content")
    def content_preview(self, obj: ConversationMessage) -> str:
        return _short(obj.content, PREVIEW_CHARS)

    @admin.display(description="type", ordering="message_type")
    def kind(self, obj: ConversationMessage) -> str:
        return obj.get_message_type_display()

    @admin.display(description="status", ordering="processing_status")
    def status(self, obj: ConversationMessage) -> str:
        return obj.get_processing_status_display()

    @admin.display(description="rating", ordering="feedback")
    def rating(self, obj: ConversationMessage) -> str:
        if not obj.feedback:
            return "-"
        label = "\N{THUMBS UP SIGN} up" if obj.feedback == FeedbackRating.UP else "\N{THUMBS DOWN SIGN} down"
        return _short(f"{label}: {obj.feedback_comment}", TITLE_CHARS) if obj.feedback_comment else label

    @admin.display(description="conversation", ordering="session__title")
    def conversation(self, obj: ConversationMessage) -> str:
        return _short(str(obj.session), SESSION_CHARS)

    @admin.display(description="sent", ordering="timestamp")
    def sent(self, obj: ConversationMessage) -> str:
        return _when(obj.timestamp)

    @admin.display(description="metrics")
    def metrics_view(self, obj: ConversationMessage) -> str:
        return _pretty_json(obj.metrics)

    @admin.action(description="Re-run the selected failed messages", permissions=["change"])
    def rerun_failed(self, request: HttpRequest, queryset: QuerySet[ConversationMessage]) -> None:
        requeued = rerun_messages(queryset)
        if requeued:
            self.message_user(request, f"{len(requeued)} message(s) queued to be answered again.", messages.SUCCESS)
        else:
            self.message_user(
                request,
                "None of the selected messages failed (or answers a failed message): nothing to re-run.",
                messages.WARNING,
            )


@admin.register(ConversationWidget)
class ConversationWidgetAdmin(admin.ModelAdmin):
    list_display = ("__str__", "session", "widget_type", "created_at")
    list_filter = ("widget_type",)
    raw_id_fields = ("session", "message")
    search_fields = ("id", "widget_type")


@admin.register(File)
class FileAdmin(admin.ModelAdmin):
    list_display = ("filename", "content_type", "size", "extraction_status", "extractor", "created_at")
    list_filter = ("extraction_status", "content_type", "extractor")
    search_fields = ("id", "filename", "sha256")
    raw_id_fields = ("user", "session")
    readonly_fields = ("id", "sha256", "size", "extracted_at", "extraction_duration_ms", "created_at", "updated_at")
    actions = ["reextract_selected"]

    @admin.action(description="Extract the text of the selected files again", permissions=["change"])
    def reextract_selected(self, request: HttpRequest, queryset: QuerySet[File]) -> None:
        count = reextract(queryset)
        self.message_user(request, f"Text extraction of {count} file(s) was queued again.", messages.SUCCESS)
