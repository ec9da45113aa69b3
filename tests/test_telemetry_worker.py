"""The trace of the request that saved a message, continued by its turn in a real task worker
process (django-tasks-db's ``db_worker``), and an upload's by its extraction: the worker's settings
configure the OpenTelemetry SDK to write its spans to a file (tests/telemetry_worker_settings.py),
which the test reads. A task queued without a trace context (as older releases queued them) runs
too, as a trace of its own. SQLite file / PostgreSQL."""

from __future__ import annotations

import importlib.util

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from opentelemetry import trace

from django_ai.conversations.constants import ExtractionStatus, ProcessingStatus
from django_ai.conversations.models import File
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import UserFactory, isolated_registry, task_worker, wait_until
from tests.bridge_support import API, user_api
from tests.telemetry_support import SPAN_FILE_ENV, read_span_file, recording
from tests.turns_support import AGENT_PATHS, AGENTS, ai_settings, post, status_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        importlib.util.find_spec("django_tasks_db") is None,
        reason="the 'worker' extra (django-tasks-db) is not installed",
    ),
]

WORKER_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.fixture
def span_file(tmp_path, monkeypatch):
    path = tmp_path / "spans.jsonl"
    monkeypatch.setenv(SPAN_FILE_ENV, str(path))
    # The worker's generated settings start from this module (task_worker reads the variable).
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.telemetry_worker_settings")
    with (
        recording(),
        isolated_registry(AGENTS),
        override_settings(TASKS=WORKER_TASKS),
        ai_settings(AGENTS=AGENT_PATHS),
    ):
        yield str(path)


def hex_ids(span) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def named(spans: list[dict], name: str) -> list[dict]:
    return [s for s in spans if s["name"] == name]


def test_a_worker_continues_the_trace_of_the_request_that_saved_the_message(span_file):
    from django_tasks_db.models import DBTaskResult

    with task_worker() as start:
        worker = start()
        session = ConversationService.create_session("quick-echo")
        with trace.get_tracer("tests").start_as_current_span("POST message") as request_span:
            traced = post(session, "traced")
        task = DBTaskResult.objects.get()
        assert task.args_kwargs["kwargs"]["trace"]["traceparent"]
        wait_until(lambda: status_of(traced) == ProcessingStatus.COMPLETED, 30, message=worker.output())
        turns = wait_until(lambda: named(read_span_file(span_file), "django_ai.turn"), 20, message=worker.output())

        # A task without a trace context (an older release's payload) runs, as a trace of its own.
        untraced = post(session, "untraced")
        assert "trace" not in DBTaskResult.objects.order_by("enqueued_at").last().args_kwargs["kwargs"]
        wait_until(lambda: status_of(untraced) == ProcessingStatus.COMPLETED, 30, message=worker.output())
        wait_until(lambda: len(named(read_span_file(span_file), "django_ai.turn")) == 2, 20, message=worker.output())

    spans = read_span_file(span_file)
    trace_id, request_id = hex_ids(request_span)
    first, second = named(spans, "django_ai.turn")
    assert first["attributes"]["django_ai.message.id"] == str(traced.pk)
    assert first["trace_id"] == trace_id and first["parent_span_id"] == request_id
    assert first["attributes"]["django_ai.turn.outcome"] == "completed"
    agents = [s for s in named(spans, "django_ai.agent") if s["trace_id"] == trace_id]
    assert len(agents) == 1 and agents[0]["parent_span_id"] == first["span_id"]
    assert second["attributes"]["django_ai.message.id"] == str(untraced.pk)
    assert second["parent_span_id"] is None and second["trace_id"] != trace_id
    assert turns  # read once the first turn had ended


def test_a_worker_continues_the_trace_of_the_upload_in_its_extraction(span_file, settings, tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_AI_VAR_DIR", str(tmp_path))  # the worker's MEDIA_ROOT (demo settings)
    settings.MEDIA_ROOT = tmp_path / "media"
    with task_worker() as start:
        api = user_api(UserFactory())
        with trace.get_tracer("tests").start_as_current_span("POST file") as upload_span:
            response = api.client.post(API + "files/", {"file": SimpleUploadedFile("notes.txt", b"plain words\n")})
        assert response.status_code == 201, response.content
        worker = start()
        file_id = response.json()["data"]
        wait_until(
            lambda: File.objects.get(pk=file_id).extraction_status == ExtractionStatus.DONE, 60, message=worker.output()
        )
        extractions = wait_until(
            lambda: named(read_span_file(span_file), "django_ai.extraction"), 20, message=worker.output()
        )
    trace_id, upload_id = hex_ids(upload_span)
    [extraction] = extractions
    assert extraction["trace_id"] == trace_id and extraction["parent_span_id"] == upload_id
    assert extraction["attributes"]["django_ai.file.id"] == str(file_id)
    assert extraction["attributes"]["django_ai.extraction.outcome"] == "done"
