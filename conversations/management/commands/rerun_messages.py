"""``manage.py rerun_messages``: answer failed user messages again."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ...constants import MessageType, ProcessingStatus
from ...models import ConversationMessage
from ...turns.scheduling import rerun_messages


class Command(BaseCommand):
    help = (
        "Put failed user messages back in their conversation's queue so the agent answers them again. "
        "Name messages by id (an agent or system message stands for the user message it answers), "
        "or select failed ones with --failed and the filters."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", metavar="MESSAGE_ID", help="Ids of failed messages.")
        parser.add_argument(
            "--failed", action="store_true", help="Select the failed user messages (narrow with the options below)."
        )
        parser.add_argument("--session", metavar="SESSION_ID", help="Only messages of this conversation.")
        parser.add_argument("--agent", metavar="AGENT_PATH", help="Only conversations with this agent.")
        parser.add_argument(
            "--since", type=float, metavar="MINUTES", help="Only messages that failed in the last MINUTES."
        )
        parser.add_argument("--dry-run", action="store_true", help="List what would be re-run, change nothing.")

    def handle(
        self,
        *args: Any,
        ids: list[str],
        failed: bool,
        session: str | None,
        agent: str | None,
        since: float | None,
        dry_run: bool,
        **options: Any,
    ) -> None:
        if not ids and not failed:
            raise CommandError("Name message ids, or pass --failed to select the failed messages.")
        queryset = ConversationMessage.objects.all()
        if ids:
            queryset = queryset.filter(pk__in=[self._uuid(value, "message id") for value in ids])
        else:
            queryset = queryset.filter(message_type=MessageType.USER, processing_status=ProcessingStatus.FAILED)
        if session:
            queryset = queryset.filter(session_id=self._uuid(session, "--session"))
        if agent:
            queryset = queryset.filter(session__agent_path=agent)
        if since is not None:
            if since <= 0:
                raise CommandError("--since must be a positive number of minutes.")
            queryset = queryset.filter(finished_at__gte=timezone.now() - timedelta(minutes=since))
        messages = list(queryset.order_by("timestamp"))
        if ids:
            missing = {str(self._uuid(v, "message id")) for v in ids} - {str(m.pk) for m in messages}
            if missing:
                raise CommandError(f"No message with id {', '.join(sorted(missing))}.")
        if not messages:
            self.stdout.write("No failed messages match.")
            return
        if dry_run:
            for message in messages:
                self.stdout.write(
                    f"would re-run: message {message.reply_to_id or message.pk} ({message.processing_status})"
                )
            return
        requeued = rerun_messages(messages)
        for message in requeued:
            self.stdout.write(f"re-queued: message {message.pk} (conversation {message.session_id})")
        skipped = len(messages) - len(requeued)
        if skipped > 0 or not requeued:
            self.stdout.write(f"{len(requeued)} message(s) re-queued; the others did not fail.")

    @staticmethod
    def _uuid(value: str, what: str) -> uuid.UUID:
        try:
            return uuid.UUID(str(value))
        except ValueError as exc:
            raise CommandError(f"{what} {value!r} is not a valid id (a UUID).") from exc
