"""``manage.py purge_conversations``: delete for good the conversations their owners deleted long
enough ago (docs/conversations.md, "Delete, restore, purge")."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from ...bridge.model_signals import announcements_paused
from ...conf import ai_settings
from ...constants import SessionStatus
from ...models import ConversationMessage, ConversationSession, ConversationWidget, File

#: Conversations deleted per transaction: a long backlog does not hold one huge transaction.
BATCH_SIZE = 200


def _used_elsewhere(pks: list[Any]) -> dict[Any, Any]:
    """The files of the conversations ``pks`` that a message of another conversation names, each
    with one of those conversations."""
    links = ConversationMessage.files.through.objects.filter(file__session__in=pks).exclude(
        conversationmessage__session__in=pks
    )
    return dict(links.values_list("file_id", "conversationmessage__session_id"))


class Command(BaseCommand):
    help = (
        "Delete for good the conversations deleted (by their owner) more than --days days ago "
        "(default: DELETED_CONVERSATION_RETENTION_DAYS), with their messages, widgets and files, "
        "including the files' stored bytes. Until then, staff can restore them in the admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            metavar="N",
            help="Purge conversations deleted more than N days ago (default: DELETED_CONVERSATION_RETENTION_DAYS).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be purged.")

    def handle(self, *args: Any, days: int | None, dry_run: bool, **options: Any) -> None:
        if days is None:
            days = int(ai_settings.DELETED_CONVERSATION_RETENTION_DAYS)
        if days < 0:
            raise CommandError("--days must be 0 or more.")
        cutoff = timezone.now() - timedelta(days=days)
        # A conversation set to deleted without a date (by hand, in SQL) is never purged: its age
        # is unknown. The admin dates the ones it deletes.
        due = ConversationSession.objects.filter(status=SessionStatus.DELETED, deleted_at__lt=cutoff)
        pks = list(due.order_by("deleted_at").values_list("pk", flat=True))
        counts = {
            "conversations": len(pks),
            "messages": ConversationMessage.objects.filter(session__in=pks).count(),
            "widgets": ConversationWidget.objects.filter(session__in=pks).count(),
            "files": File.objects.filter(session__in=pks).exclude(pk__in=_used_elsewhere(pks)).count(),
        }
        summary = ", ".join(f"{count} {name}" for name, count in counts.items())
        if dry_run:
            self.stdout.write(f"Would purge {summary} (deleted more than {days} days ago).")
            return
        for start in range(0, len(pks), BATCH_SIZE):
            self._purge(pks[start : start + BATCH_SIZE], cutoff)
        self.stdout.write(f"Purged {summary} (deleted more than {days} days ago).")

    def _purge(self, pks: list[Any], cutoff: Any) -> None:
        with transaction.atomic():
            # Locked and checked again: a conversation restored since the count stays.
            locked = list(
                ConversationSession.objects.select_for_update()
                .filter(pk__in=pks, status=SessionStatus.DELETED, deleted_at__lt=cutoff)
                .values_list("pk", flat=True)
            )
            # A file that a message of another conversation also names (a message may name any
            # file of its owner) stays: it moves to that conversation instead.
            for file_pk, session_pk in _used_elsewhere(locked).items():
                File.objects.filter(pk=file_pk).update(session_id=session_pk)
            files = File.objects.filter(session__in=locked)
            stored = [(row.file.storage, str(row.file.name)) for row in files.only("pk", "file") if row.file.name]
            # Files point to their conversation with SET_NULL: deleted first, or they would stay
            # as the owner's loose uploads.
            # Nobody sees these rows any more (a deleted conversation is 404 to its owner): one
            # model_change per deleted message, widget and file would only load the realtime
            # backend.
            with announcements_paused():
                files.delete()
                ConversationSession.objects.filter(pk__in=locked).delete()
            for storage, name in stored:
                # The bytes go only once the rows are gone for good.
                transaction.on_commit(partial(storage.delete, name), robust=True)
