"""``manage.py reextract_files``: extract the text of uploaded files again.

Use it after installing a better extractor (e.g. tesseract for OCR), after changing
``MAX_EXTRACTED_TEXT_LENGTH``, or to recover files left ``pending`` when a task could not be
enqueued or ``processing`` by a worker that died.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from ...constants import ExtractionStatus
from ...files.extraction.tasks import reextract, stale_before
from ...models import File


class Command(BaseCommand):
    help = "Extract the text of uploaded files again (enqueued as tasks, or here with --now)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", help="ids of the files to extract again")
        parser.add_argument("--failed", action="store_true", help="every file whose extraction failed")
        parser.add_argument(
            "--pending",
            action="store_true",
            help="files still pending, and files 'processing' for longer than a run can take (a worker died)",
        )
        parser.add_argument("--all", action="store_true", help="every file")
        parser.add_argument("--now", action="store_true", help="extract in this process instead of enqueuing tasks")

    def handle(self, *args: Any, **options: Any) -> None:
        ids, failed, pending, every = options["ids"], options["failed"], options["pending"], options["all"]
        if not (ids or failed or pending or every):
            raise CommandError("Say which files: give ids, or use --failed, --pending or --all.")
        if every:
            query = Q()
        else:
            query = Q(pk__in=[])
            if ids:
                try:
                    query |= Q(pk__in=[uuid.UUID(value) for value in ids])
                except ValueError as exc:
                    raise CommandError(f"Not a file id: {exc}") from exc
            if failed:
                query |= Q(extraction_status=ExtractionStatus.FAILED)
            if pending:
                query |= Q(extraction_status=ExtractionStatus.PENDING)
                query |= Q(extraction_status=ExtractionStatus.PROCESSING, updated_at__lt=stale_before())
        if ids:
            found = {
                str(pk) for pk in File.objects.filter(pk__in=[uuid.UUID(v) for v in ids]).values_list("pk", flat=True)
            }
            missing = [value for value in ids if str(uuid.UUID(value)) not in found]
            if missing:
                raise CommandError(f"No file with id {', '.join(missing)}.")
        pks = list(File.objects.filter(query).order_by("created_at").values_list("pk", flat=True))
        count = reextract(File.objects.filter(pk__in=pks).order_by("created_at").iterator(), now=options["now"])
        if options["now"]:
            done = File.objects.filter(pk__in=pks, extraction_status=ExtractionStatus.DONE).count()
            self.stdout.write(f"Extracted {count} file(s): {done} done, {count - done} failed.")
        else:
            self.stdout.write(f"Enqueued extraction of {count} file(s).")
