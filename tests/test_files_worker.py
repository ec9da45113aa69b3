"""Extraction in a real task worker process (django-tasks-db's ``db_worker``): the web process
stores the upload and the task; the worker starts its own JVM and runs Tika and tesseract."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from django_ai.conversations.constants import ExtractionStatus
from django_ai.conversations.models import File
from django_ai.conversations.testing import UserFactory, task_worker, wait_until
from tests.bridge_support import API
from tests.fixtures.files import generate

pytest.importorskip("django_tasks_db", reason="the 'worker' extra (django-tasks-db) is not installed")

FILES = Path(generate.__file__).parent
WORKER_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed (CI installs it)")
def test_worker_process_extracts_an_upload_with_ocr(settings, tmp_path, monkeypatch):
    # The worker reads the demo settings: MEDIA_ROOT follows DJANGO_AI_VAR_DIR there.
    monkeypatch.setenv("DJANGO_AI_VAR_DIR", str(tmp_path))
    settings.MEDIA_ROOT = tmp_path / "media"
    from django_tasks_db.models import DBTaskResult

    with override_settings(TASKS=WORKER_TASKS), task_worker() as start:
        client = Client()
        client.force_login(UserFactory())
        response = client.post(
            API + "files/", {"file": SimpleUploadedFile("scan.pdf", (FILES / "scanned.pdf").read_bytes())}
        )
        body = response.json()
        assert response.status_code == 201, body
        # Stored and enqueued; the web process did not extract it. (The worker starts after this
        # check: a running one could claim the file between the commit and the answer.)
        assert body["included"]["file"][body["data"]]["extraction_status"] == ExtractionStatus.PENDING
        task = DBTaskResult.objects.get()
        assert task.task_path == "django_ai.conversations.files.extraction.tasks.extract_file_task"
        file = File.objects.get(pk=body["data"])
        assert file.extraction_status == ExtractionStatus.PENDING
        worker = start()
        wait_until(
            lambda: File.objects.get(pk=file.pk).extraction_status in (ExtractionStatus.DONE, ExtractionStatus.FAILED),
            90,
            message=worker.output(),
        )
        file.refresh_from_db()
        assert file.extraction_status == ExtractionStatus.DONE, (file.extraction_error, worker.output())
        assert "SCANNED CONTRACT 8042" in " ".join(file.extracted_text.split())
        assert file.extractor == "tika-embedded" and "tesseract" in file.extractor_version
        assert file.metadata["extraction"]["ocr"] is True
        wait_until(lambda: DBTaskResult.objects.get().status == "SUCCESSFUL", 20, message=worker.output())
