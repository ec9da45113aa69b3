"""Admin for conversations: sessions with their messages inline."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from .models import ConversationMessage, ConversationSession, ConversationWidget, File


def _pretty_json(value: object) -> str:
    return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


class MessageInline(admin.TabularInline):
    model = ConversationMessage
    fk_name = "session"
    extra = 0
    fields = ("timestamp", "message_type", "processing_status", "content", "component_type")
    readonly_fields = fields
    ordering = ("timestamp",)
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


class WidgetInline(admin.TabularInline):
    model = ConversationWidget
    extra = 0
    fields = ("widget_type", "data", "display_data", "created_at")
    readonly_fields = ("created_at",)


@admin.register(ConversationSession)
class ConversationSessionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "agent_path", "owner", "status", "updated_at", "last_message_at")
    list_filter = ("status", "agent_path", "created_at")
    search_fields = ("id", "title", "agent_path", "user__username", "user__email", "messages__content")
    readonly_fields = ("id", "created_at", "updated_at", "last_message_at", "context_view", "active_turn", "turn_heartbeat_at")
    exclude = ("context",)
    raw_id_fields = ("user",)
    date_hierarchy = "created_at"
    inlines = [MessageInline, WidgetInline]

    def get_search_results(self, request, queryset, search_term):  # type: ignore[no-untyped-def]
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return queryset, True if search_term else may_have_duplicates

    @admin.display(description="owner")
    def owner(self, obj: ConversationSession) -> str:
        if obj.user_id:
            return str(obj.user)
        return "anonymous" if obj.anonymous_id else "-"

    @admin.display(description="context")
    def context_view(self, obj: ConversationSession) -> str:
        return _pretty_json(obj.context)


@admin.register(ConversationMessage)
class ConversationMessageAdmin(admin.ModelAdmin):
    list_display = ("__str__", "session", "message_type", "processing_status", "timestamp")
    list_filter = ("message_type", "processing_status", "timestamp")
    search_fields = ("id", "content", "session__id")
    raw_id_fields = ("session", "reply_to")
    filter_horizontal = ("files",)
    readonly_fields = ("id", "timestamp", "updated_at", "metrics_view", "started_at", "finished_at", "attempts", "cancel_requested_at")
    date_hierarchy = "timestamp"
    actions = ["rerun_failed"]

    def get_changeform_initial_data(self, request):  # type: ignore[no-untyped-def]
        # A user message added here is answered by the agent (enqueued on save): start it pending.
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("message_type", "user")
        initial.setdefault("processing_status", "pending")
        return initial

    @admin.display(description="metrics")
    def metrics_view(self, obj: ConversationMessage) -> str:
        return _pretty_json(obj.metrics)

    @admin.action(description="Re-run the selected failed messages", permissions=["change"])
    def rerun_failed(self, request, queryset):  # type: ignore[no-untyped-def]
        from django.contrib import messages

        from .tasks.recovery import rerun_messages

        requeued = rerun_messages(queryset)
        if requeued:
            self.message_user(request, f"{len(requeued)} message(s) queued to be answered again.", messages.SUCCESS)
        else:
            self.message_user(
                request, "None of the selected messages failed (or answers a failed message): nothing to re-run.", messages.WARNING
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
    def reextract_selected(self, request, queryset):  # type: ignore[no-untyped-def]
        from django.contrib import messages

        from .extraction.tasks import reextract

        count = reextract(queryset)
        self.message_user(request, f"Text extraction of {count} file(s) was queued again.", messages.SUCCESS)
