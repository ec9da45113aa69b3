"""The extraction task: claim a File, extract its text, store the outcome.

Status changes are saved with ``save()`` so that each one sends a ``model_change`` event
(``realtime/sync.py``) and clients can show progress: pending -> processing -> done | failed.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, connections, router, transaction
from django.utils import timezone

from ... import telemetry
from ...conf import ai_settings
from ...constants import ErrorCode, ExtractionStatus
from ...internal.tasks_compat import task
from ...models import File
from ...turns.enqueue import enqueue_task
from .base import ExtractionError, ExtractionResult, ExtractionSource, TextExtractor
from .checks import warn_once_no_document_extractor
from .selection import get_extractor

__all__ = [
    "extract_file_task",
    "reextract",
    "reset_for_reextraction",
    "run_extraction",
    "schedule_extraction",
    "source_for",
    "stale_before",
]

logger = logging.getLogger("django_ai.conversations.extraction")

GENERIC_FAILURE = "The text of this file could not be read because of an error on the server."
_RUN_KEY = "extraction_run"


def source_for(file: File) -> ExtractionSource:
    """An :class:`ExtractionSource` reading the File's content through its storage."""
    storage, name = file.file.storage, file.file.name or ""
    try:
        path = storage.path(name)
    except NotImplementedError:  # remote storages (S3, GCS ...) have no local path
        path = None
    return ExtractionSource(
        filename=file.filename or name.rsplit("/", 1)[-1],
        content_type=file.content_type,
        size=file.size,
        opener=lambda: storage.open(name, "rb"),
        path=path,
    )


def stale_before() -> Any:
    """The time before which a ``processing`` run has died: one that has not finished long after
    its timeout belongs to a worker that died, and the next run takes it over."""
    return timezone.now() - timedelta(seconds=float(ai_settings.EXTRACTION_TIMEOUT) * 2 + 60)


def _claim(file_id: Any) -> tuple[File, str] | None:
    with transaction.atomic():
        file = File.objects.select_for_update().filter(pk=file_id).first()
        if file is None:
            return None
        if file.extraction_status == ExtractionStatus.PROCESSING and file.updated_at >= stale_before():
            return None  # another worker is on it
        if file.extraction_status in (ExtractionStatus.DONE, ExtractionStatus.FAILED):
            return None  # finished; reset_for_reextraction() first to run again
        run = uuid.uuid4().hex
        file.extraction_status = ExtractionStatus.PROCESSING
        file.extraction_error = ""
        file.metadata = {**(file.metadata or {}), _RUN_KEY: run}
        file.save(update_fields=["extraction_status", "extraction_error", "metadata", "updated_at"])
        return file, run


def _tidy(text: str) -> str:
    # PostgreSQL text cannot hold NUL; trailing spaces and runs of blank lines carry nothing.
    text = text.replace("\x00", "")
    text = re.sub(r"[ \t\r\f\v]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _finish(file_id: Any, run: str, **fields: Any) -> File | None:
    with transaction.atomic():
        file = File.objects.select_for_update().filter(pk=file_id).first()
        if file is None or (file.metadata or {}).get(_RUN_KEY) != run:
            # Deleted, or reset for a newer run meanwhile: that run writes the outcome.
            return file
        metadata = {k: v for k, v in (file.metadata or {}).items() if k != _RUN_KEY}
        if "facts" in fields:
            metadata["extraction"] = fields.pop("facts")
        for name, value in fields.items():
            setattr(file, name, value)
        file.metadata = metadata
        file.extracted_at = timezone.now()
        file.save(
            update_fields=[
                *fields.keys(),
                "metadata",
                "extracted_at",
                "updated_at",
            ]
        )
        return file


def _on_a_new_connection_if_it_fails(func: Callable[..., Any], file_id: Any, *args: Any, **kwargs: Any) -> Any:
    """``func(file_id, ...)``, once more on a new database connection when it raises a database
    error: the connection may have died during a long extraction (a database restart, a cut
    network), or the database was busy beyond its timeout. Inside the caller's transaction the
    connection cannot be swapped, and the error stands."""
    try:
        return func(file_id, *args, **kwargs)
    except DatabaseError:
        connection = connections[router.db_for_write(File)]
        if connection.in_atomic_block:
            raise
        logger.warning(
            "Database error on file %s's extraction; trying again on a new connection", file_id, exc_info=True
        )
        connection.close()
        return func(file_id, *args, **kwargs)


def _record_failure(file_id: Any, run: str, **fields: Any) -> None:
    # The last word of a run that died: never leave the file 'processing' if the database lets us.
    try:
        _on_a_new_connection_if_it_fails(
            _finish,
            file_id,
            run,
            extraction_status=ExtractionStatus.FAILED,
            extraction_error=GENERIC_FAILURE,
            extracted_text="",
            extracted_text_truncated=False,
            facts={"error_code": ErrorCode.EXTRACTION_FAILED},
            **fields,
        )
    except Exception:
        logger.exception(
            "Could not mark file %s failed; it stays 'processing' until 'manage.py reextract_files --pending' "
            "takes it over (EXTRACTION_TIMEOUT * 2 + 60 s after this run began).",
            file_id,
        )


def _read(file: File, extractor: TextExtractor, limit: int) -> ExtractionResult:
    try:
        return extractor.extract(source_for(file), timeout=float(ai_settings.EXTRACTION_TIMEOUT), max_length=limit)
    except OSError as exc:
        if not file.file.storage.exists(file.file.name or ""):
            raise ExtractionError(
                "The uploaded file is no longer stored on the server.", code=ErrorCode.MISSING_FILE
            ) from exc
        raise


def run_extraction(file_id: Any, *, extractor: TextExtractor | None = None) -> File | None:
    """Extract the text of File ``file_id`` now, in this thread; the updated File.

    Returns None when the file no longer exists, and the unchanged File when it is not
    ``pending`` (already done, failed, or being extracted by another worker). A run that dies (an
    extractor's bug, any exception, a database error while saving the text) marks the file
    ``failed`` with a generic reason before the exception goes on.
    """
    claimed = _on_a_new_connection_if_it_fails(_claim, file_id)
    if claimed is None:
        return File.objects.filter(pk=file_id).first()
    file, run = claimed
    attributes = {"django_ai.file.id": str(file.pk), "django_ai.file.content_type": file.content_type or None}
    with telemetry.span("django_ai.extraction", attributes) as span:
        return _extract(file, run, extractor, span)


def _extract(file: File, run: str, extractor: TextExtractor | None, span: telemetry.SpanHandle) -> File | None:
    """The claimed ``file``'s extraction, its outcome stored; on the span and the metrics too."""
    started = time.monotonic()
    about = {"extractor": "", "extractor_version": ""}
    outcome_code = "extraction_failed"  # an unexpected error, until the extractor answers
    try:
        extractor = extractor or get_extractor()
        about["extractor"] = getattr(extractor, "name", type(extractor).__name__)[:100]
        about["extractor_version"] = (extractor.get_version() or "")[:50]
        limit = int(ai_settings.MAX_EXTRACTED_TEXT_LENGTH)
        try:
            result = _read(file, extractor, limit)
        except ExtractionError as exc:
            logger.info("Extraction of file %s failed (%s): %s", file.pk, exc.code, exc.message)
            if exc.code == ErrorCode.UNSUPPORTED:
                warn_once_no_document_extractor()  # W020, when only plain text can be read here
            outcome = {
                "extraction_status": ExtractionStatus.FAILED,
                "extraction_error": exc.message,
                "extracted_text": "",
                "extracted_text_truncated": False,
                "facts": {"error_code": exc.code},
            }
            outcome_code = str(exc.code)
            span.error(exc, code=outcome_code)
        else:
            outcome_code = "done"
            pages = (result.metadata or {}).get("pages")
            span.set(**{"django_ai.extraction.pages": pages if isinstance(pages, int) else None})
            text = _tidy(result.text)
            outcome = {
                "extraction_status": ExtractionStatus.DONE,
                "extraction_error": "",
                "extracted_text": text[:limit],
                "extracted_text_truncated": result.truncated or len(text) > limit,
                "facts": result.metadata,
            }
        duration = int((time.monotonic() - started) * 1000)
        return _on_a_new_connection_if_it_fails(
            _finish, file.pk, run, **outcome, **about, extraction_duration_ms=duration
        )
    except BaseException:
        # BaseException too: an asyncio.CancelledError or SystemExit out of an extractor's library
        # must not leave the file 'processing', with turns waiting for it.
        logger.exception("Extraction of file %s failed with an unexpected error", file.pk)
        _record_failure(file.pk, run, **about, extraction_duration_ms=int((time.monotonic() - started) * 1000))
        outcome_code = "extraction_failed"  # the outcome was read, then storing it failed
        raise
    finally:
        seconds = time.monotonic() - started
        span.set(
            **{
                "django_ai.extraction.extractor": about["extractor"] or None,
                "django_ai.extraction.outcome": outcome_code,
                "django_ai.extraction.duration_ms": int(seconds * 1000),
            }
        )
        telemetry.record_extraction(
            extractor=about["extractor"] or "none",
            content_type=file.content_type or "",
            seconds=seconds,
            outcome=outcome_code,
        )


def _queue_name() -> str:
    return str(ai_settings.EXTRACTION_QUEUE or ai_settings.TASK_QUEUE)


# Declared on the configured backend and queue: Django validates a task against them when it is
# declared (a backend limited to QUEUES=["files"] would refuse the "default" queue).
@task(backend=str(ai_settings.TASK_BACKEND), queue_name=_queue_name())
def extract_file_task(file_id: str, trace: dict[str, str] | None = None) -> dict[str, Any]:
    """Background task: extract the text of one File (see :func:`run_extraction`). ``trace`` is
    the trace context of the upload that scheduled it (absent from tasks queued before it was)."""
    with telemetry.continued_from(trace), telemetry.log_context(file_id=file_id):
        file = run_extraction(file_id)
    if file is None:
        return {"file_id": file_id, "status": "missing"}
    return {"file_id": file_id, "status": file.extraction_status}


def _enqueue(file_id: str, carrier: dict[str, str]) -> None:
    queue = _queue_name()
    try:
        # With an in-process backend this runs on the process's background threads, so an upload
        # answers at once instead of waiting for Tika and OCR.
        enqueue_task(extract_file_task, file_id, queue_name=queue, **({"trace": carrier} if carrier else {}))
    except Exception:
        # The File stays pending; `manage.py reextract_files --pending` enqueues it again.
        logger.exception("Could not enqueue text extraction for file %s", file_id)


def schedule_extraction(file_id: Any) -> None:
    """Enqueue extraction of File ``file_id`` when the current transaction commits; the task
    continues the current trace (the upload's)."""
    carrier = telemetry.trace_carrier()
    transaction.on_commit(lambda: _enqueue(str(file_id), carrier))


def reset_for_reextraction(file: File) -> File:
    """Put a File back to ``pending`` (text cleared) so the next extraction run processes it."""
    metadata = {k: v for k, v in (file.metadata or {}).items() if k not in (_RUN_KEY, "extraction")}
    file.extraction_status = ExtractionStatus.PENDING
    file.extraction_error = ""
    file.extracted_text = ""
    file.extracted_text_truncated = False
    file.extracted_at = None
    file.extraction_duration_ms = None
    file.metadata = metadata
    file.save(
        update_fields=[
            "extraction_status",
            "extraction_error",
            "extracted_text",
            "extracted_text_truncated",
            "extracted_at",
            "extraction_duration_ms",
            "metadata",
            "updated_at",
        ]
    )
    return file


def reextract(files: Any, *, now: bool = False) -> int:
    """Reset each File of ``files`` (a queryset or iterable) to pending and extract it again:
    enqueued when the transaction commits, or right here with ``now=True``. The count."""
    count = 0
    for file in files:
        with transaction.atomic():
            locked = File.objects.select_for_update().filter(pk=file.pk).first()
            if locked is None:
                continue
            reset_for_reextraction(locked)
            if not now:
                schedule_extraction(locked.pk)
        if now:
            run_extraction(locked.pk)
        count += 1
    return count
