"""The extraction task's bookkeeping (a run that dies leaves its file failed, and a turn waiting
for the file goes on), re-extraction (command and admin action), and the system checks that say
which extractor runs. Documents are extracted by the real embedded Tika."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.test import Client, override_settings
from django.utils import timezone

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import EventName, ExtractionStatus
from django_ai.conversations.context import get_file_text
from django_ai.conversations.files.extraction import (
    EmbeddedTikaExtractor,
    ExtractionResult,
    PlainTextExtractor,
    TextExtractor,
)
from django_ai.conversations.files.extraction import checks as extraction_checks
from django_ai.conversations.files.extraction.tasks import (
    GENERIC_FAILURE,
    reset_for_reextraction,
    run_extraction,
    schedule_extraction,
)
from django_ai.conversations.models import ConversationMessage, File
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FileFactory, UserFactory, wait_for_turns, wait_until
from tests.bridge_support import API, user_api
from tests.fixtures.files import generate

FILES = Path(generate.__file__).parent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def pdf_file(**kwargs) -> File:
    return FileFactory(
        content=(FILES / "report.pdf").read_bytes(), filename="report.pdf", content_type="application/pdf", **kwargs
    )


class ScriptedExtractor(TextExtractor):
    """Returns what a test puts in ``script`` (a result, or an exception to raise)."""

    name = "scripted"
    script: object = None

    def get_version(self) -> str:
        return "1.0"

    def extract(self, source, *, timeout, max_length):
        outcome = type(self).script
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            return outcome(source)
        return outcome


SCRIPTED = {"TEXT_EXTRACTOR": f"{__name__}.ScriptedExtractor"}


def test_statuses_and_events(events, django_capture_on_commit_callbacks):
    file = pdf_file(user=UserFactory())  # events go to the owner's channel
    events.clear()
    with django_capture_on_commit_callbacks(execute=True):
        run_extraction(file.pk)
    file.refresh_from_db()
    assert file.extraction_status == ExtractionStatus.DONE
    # Text is tidied: no blank lines around, none doubled.
    assert file.extracted_text == f"{generate.PDF_TEXT}\nCosts stayed flat."
    ops = [p["operation"] for p in events.of(EventName.MODEL_CHANGE) if p["model"] == "file"]
    assert ops == ["update", "update"]  # processing, then done
    # A finished file is not extracted again by a second (duplicate) task.
    before = file.updated_at
    run_extraction(file.pk)
    file.refresh_from_db()
    assert file.updated_at == before


def test_deleted_file_row_is_ignored():
    file = pdf_file()
    pk = file.pk
    file.delete()
    assert run_extraction(pk) is None


def test_fresh_processing_is_left_alone_stale_processing_is_recovered():
    file = pdf_file()
    File.objects.filter(pk=file.pk).update(extraction_status=ExtractionStatus.PROCESSING, updated_at=timezone.now())
    run_extraction(file.pk)
    assert File.objects.get(pk=file.pk).extraction_status == ExtractionStatus.PROCESSING
    File.objects.filter(pk=file.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    run_extraction(file.pk)
    assert File.objects.get(pk=file.pk).extraction_status == ExtractionStatus.DONE


def test_a_reset_during_a_run_wins_over_the_older_run():
    file = FileFactory()

    def reset_midway(source):
        reset_for_reextraction(File.objects.get(pk=file.pk))  # e.g. the admin action meanwhile
        return ExtractionResult(text="stale text")

    ScriptedExtractor.script = reset_midway
    with override_settings(DJANGO_AI=SCRIPTED):
        run_extraction(file.pk)
    file.refresh_from_db()
    assert file.extraction_status == ExtractionStatus.PENDING and file.extracted_text == ""


def test_text_is_cut_at_the_limit_and_cleaned():
    file = FileFactory()
    ScriptedExtractor.script = ExtractionResult(text="\n\n  abc\x00def   \n\n\n\nghi  " + "x" * 100)
    with override_settings(DJANGO_AI={**SCRIPTED, "MAX_EXTRACTED_TEXT_LENGTH": 20}):
        run_extraction(file.pk)
    file.refresh_from_db()
    assert file.extracted_text == "abcdef\n\nghi  xxxxxxx"
    assert file.extracted_text_truncated is True
    assert (file.extractor, file.extractor_version) == ("scripted", "1.0")


def test_a_bug_in_an_extractor_fails_the_file_generically_and_is_raised(caplog):
    file = FileFactory()
    ScriptedExtractor.script = KeyError("internal detail")
    with override_settings(DJANGO_AI=SCRIPTED), caplog.at_level(logging.ERROR), pytest.raises(KeyError):
        run_extraction(file.pk)
    file.refresh_from_db()
    assert file.extraction_status == ExtractionStatus.FAILED
    assert file.extraction_error == GENERIC_FAILURE
    assert "internal detail" not in file.extraction_error
    assert "unexpected error" in caplog.text


def test_a_base_exception_from_an_extractor_fails_the_file_and_is_raised():
    # An extractor built on asyncio can end with CancelledError, which is no Exception.
    file = FileFactory()
    ScriptedExtractor.script = asyncio.CancelledError()
    with override_settings(DJANGO_AI=SCRIPTED), pytest.raises(asyncio.CancelledError):
        run_extraction(file.pk)
    file.refresh_from_db()
    assert file.extraction_status == ExtractionStatus.FAILED
    assert file.extraction_error == GENERIC_FAILURE
    assert file.metadata["extraction"] == {"error_code": "extraction_failed"}


def lose_the_database_connection(source):
    """What a database restart or a cut network does to a worker's connection during a long
    extraction, done for real: PostgreSQL ends the backend of this thread's connection; SQLite,
    which has no server, has its connection closed under Django's feet."""
    if connection.vendor == "postgresql":
        pid = connection.connection.info.backend_pid
        other = connections.create_connection(DEFAULT_DB_ALIAS)
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        finally:
            other.close()
    else:
        connection.connection.close()
    return ExtractionResult(text=f"Text read before the connection was lost: {source.filename}")


@pytest.fixture
def refused_text():
    """A real database error for the text of a result: a trigger refuses texts containing
    'refused', as a database would refuse a value it cannot store."""
    table = File._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_text() RETURNS trigger AS $$ BEGIN "
                "IF NEW.extracted_text LIKE '%refused%' THEN RAISE EXCEPTION 'this text is refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER refuse_text BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_text()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER refuse_text BEFORE UPDATE ON {table} WHEN NEW.extracted_text LIKE '%refused%' "
                "BEGIN SELECT RAISE(ABORT, 'this text is refused'); END"
            )
    yield
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER refuse_text ON {table}")
            cursor.execute("DROP FUNCTION refuse_text()")
        else:
            cursor.execute("DROP TRIGGER refuse_text")


@pytest.mark.django_db(transaction=True)
def test_the_text_is_saved_on_a_new_connection_when_the_old_one_died_during_extraction():
    file = FileFactory(filename="notes.txt")
    ScriptedExtractor.script = lose_the_database_connection
    with override_settings(DJANGO_AI=SCRIPTED):
        run_extraction(file.pk)
    file.refresh_from_db()
    assert file.extraction_status == ExtractionStatus.DONE
    assert file.extracted_text == "Text read before the connection was lost: notes.txt"


@pytest.mark.django_db(transaction=True)
def test_a_result_the_database_refuses_fails_the_file_instead_of_leaving_it_processing(refused_text):
    file = FileFactory(filename="refused.txt")
    ScriptedExtractor.script = lose_the_database_connection  # and then the text is refused
    with override_settings(DJANGO_AI=SCRIPTED), pytest.raises(DatabaseError):
        run_extraction(file.pk)
    file.refresh_from_db()
    assert file.extraction_status == ExtractionStatus.FAILED
    assert file.extraction_error == GENERIC_FAILURE
    assert file.extracted_text == ""


class ReportingAgent(ConversationAgent):
    """Says what get_file_text() gave it for each attached file."""

    def get_response(self, message, request=None, **kwargs):
        return "; ".join(f"{file.filename}: {get_file_text(file.id)!r}" for file in self.files)


def die_once_a_turn_waits(source):
    # Dies while the turn is waiting for this file (its message is being answered), never before.
    wait_until(
        lambda: ConversationMessage.objects.filter(message_type="user", processing_status="processing").exists(),
        timeout=60,
        message="no turn started",
    )
    raise asyncio.CancelledError()


@pytest.mark.django_db(transaction=True)
def test_a_turn_stops_waiting_for_a_file_whose_extraction_died(settings):
    """The message is sent through the bridge, as the SDK does, and answered on the in-process
    task threads while a second thread runs the extraction. The turn would wait an hour for a
    file left 'processing'; it ends as soon as the file is 'failed'."""
    register_agent("report", ReportingAgent)
    settings.DJANGO_AI = {**SCRIPTED, "FILE_WAIT_TIMEOUT": 3600}
    ScriptedExtractor.script = die_once_a_turn_waits
    alice = UserFactory()
    api = user_api(alice)
    upload = api.client.post(API + "files/", {"file": SimpleUploadedFile("notes.txt", b"never read")}, **api.headers)
    assert upload.status_code == 201, upload.json()
    session = ConversationService.create_session("report", user=alice)

    sent = api.create(
        "message", {"session": str(session.pk), "content": "What is in it?", "files": [upload.json()["data"]]}
    )

    assert sent.status_code == 201, sent.json()
    wait_for_turns(timeout=120)  # with the file left 'processing', the turn would still wait
    reply = ConversationMessage.objects.get(session=session, message_type="agent")
    assert reply.content == "notes.txt: None"
    assert File.objects.get(pk=upload.json()["data"]).extraction_status == ExtractionStatus.FAILED


def test_missing_stored_bytes_fail_with_reason():
    file = pdf_file()
    file.file.storage.delete(file.file.name)
    run_extraction(file.pk)
    file.refresh_from_db()
    assert file.extraction_status == ExtractionStatus.FAILED
    assert file.extraction_error == "The uploaded file is no longer stored on the server."


DUMMY_TASKS = {
    "default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend", "QUEUES": ["default", "files"]},
}


@pytest.fixture
def dummy_tasks(settings):
    try:
        import django.tasks  # noqa: F401
    except ImportError:
        DUMMY_TASKS["default"]["BACKEND"] = "django_tasks.backends.dummy.DummyBackend"
    settings.TASKS = DUMMY_TASKS
    from django_ai.conversations.internal.tasks_compat import task_backends

    backend = task_backends["default"]
    backend.clear() if hasattr(backend, "clear") else backend.results.clear()
    return backend


def test_extraction_is_enqueued_only_when_the_upload_commits(dummy_tasks, django_capture_on_commit_callbacks):
    file = FileFactory()

    def failed_upload():
        with transaction.atomic():
            schedule_extraction(file.pk)
            raise RuntimeError("the upload failed")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        failed_upload()
    assert dummy_tasks.results == []
    with override_settings(DJANGO_AI={"EXTRACTION_QUEUE": "files"}), django_capture_on_commit_callbacks(execute=True):
        schedule_extraction(file.pk)
    (result,) = dummy_tasks.results
    assert result.args == [str(file.pk)]
    assert result.task.queue_name == "files"
    assert result.task.func.__name__ == "extract_file_task"


def test_an_enqueue_failure_is_logged_and_the_file_stays_pending(
    dummy_tasks, django_capture_on_commit_callbacks, caplog
):
    file = FileFactory()
    with override_settings(DJANGO_AI={"EXTRACTION_QUEUE": "no-such-queue"}), caplog.at_level(logging.ERROR):
        with django_capture_on_commit_callbacks(execute=True):
            schedule_extraction(file.pk)
    assert f"Could not enqueue text extraction for file {file.pk}" in caplog.text
    assert File.objects.get(pk=file.pk).extraction_status == ExtractionStatus.PENDING


def test_reextract_command(capsys):
    failed = FileFactory(failed=True, content=b"now readable\n")
    done = FileFactory(text="old text", content=b"new text\n")
    stuck = FileFactory(content=b"stuck\n")
    File.objects.filter(pk=stuck.pk).update(
        extraction_status=ExtractionStatus.PROCESSING, updated_at=timezone.now() - timedelta(hours=1)
    )

    call_command("reextract_files", "--failed", "--now")
    assert "Extracted 1 file(s): 1 done, 0 failed." in capsys.readouterr().out
    assert File.objects.get(pk=failed.pk).extracted_text == "now readable"
    assert File.objects.get(pk=done.pk).extracted_text == "old text"

    call_command("reextract_files", "--pending", "--now")
    assert File.objects.get(pk=stuck.pk).extracted_text == "stuck"

    call_command("reextract_files", str(done.pk), "--now")
    assert File.objects.get(pk=done.pk).extracted_text == "new text"

    with pytest.raises(CommandError, match="Say which files"):
        call_command("reextract_files")
    with pytest.raises(CommandError, match="No file with id"):
        call_command("reextract_files", "3f1d2c4b-0000-4000-8000-000000000000")
    with pytest.raises(CommandError, match="Not a file id"):
        call_command("reextract_files", "nope")


def test_reextract_command_enqueues_by_default(dummy_tasks, django_capture_on_commit_callbacks, capsys):
    files = [FileFactory(failed=True) for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        call_command("reextract_files", "--all")
    assert "Enqueued extraction of 2 file(s)." in capsys.readouterr().out
    assert sorted(r.args[0] for r in dummy_tasks.results) == sorted(str(f.pk) for f in files)
    assert {f.extraction_status for f in File.objects.all()} == {ExtractionStatus.PENDING}


def test_admin_action_extracts_again(django_capture_on_commit_callbacks):
    admin = UserFactory(is_staff=True, is_superuser=True)
    file = FileFactory(failed=True, content=(FILES / "hours.txt").read_bytes(), filename="hours.txt")
    client = Client()
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/django_ai_conversations/file/",
            {"action": "reextract_selected", "_selected_action": [str(file.pk)]},
            follow=True,
        )
    assert response.status_code == 200
    assert "Text extraction of 1 file(s) was queued again." in response.content.decode()
    file.refresh_from_db()
    assert file.extraction_status == ExtractionStatus.DONE
    assert file.extracted_text == generate.TXT_TEXT.strip()


def ids(messages) -> list[str]:
    return [m.id for m in messages if (m.id or "").startswith("django_ai.")]


def deploy_checks():
    return run_checks(include_deployment_checks=True)


def test_checks_are_quiet_when_tika_and_tesseract_are_here():
    assert not [i for i in ids(deploy_checks()) if i.startswith(("django_ai.W02", "django_ai.E02"))]


def test_check_warns_when_only_plain_text_is_possible(monkeypatch):
    # As on a machine without Java: the embedded extractor reports what it lacks.
    monkeypatch.setattr(
        EmbeddedTikaExtractor, "missing_requirements", classmethod(lambda cls: ["Java 11 or newer: install a JRE"])
    )
    messages = [m for m in deploy_checks() if m.id == "django_ai.W020"]
    assert len(messages) == 1
    assert "only text files" in messages[0].msg and "Java 11 or newer" in messages[0].hint
    # Not on every check/migrate/runserver of a project that may never receive a document.
    assert "django_ai.W020" not in ids(run_checks())


def test_check_warns_when_tesseract_is_missing(monkeypatch):
    monkeypatch.setattr(extraction_checks, "tesseract_version", lambda: None)
    assert "django_ai.W021" in ids(deploy_checks())
    assert "django_ai.W021" not in ids(run_checks())
    with override_settings(DJANGO_AI={"OCR_ENABLED": False}):
        assert "django_ai.W021" not in ids(deploy_checks())
    with override_settings(
        DJANGO_AI={"TEXT_EXTRACTOR": "django_ai.conversations.files.extraction.EmbeddedTikaExtractor"}
    ):
        assert "django_ai.W021" in ids(deploy_checks())


def test_a_document_refused_for_want_of_an_extractor_logs_w020_once(monkeypatch, caplog):
    """Where a document is actually extracted, the missing extractor is said in the log, once."""
    monkeypatch.setattr(
        EmbeddedTikaExtractor, "missing_requirements", classmethod(lambda cls: ["Java 11 or newer: install a JRE"])
    )
    monkeypatch.setattr(extraction_checks, "_warned_no_document_extractor", False)
    with caplog.at_level(logging.WARNING, logger="django_ai.conversations.extraction"):
        for _ in range(2):
            file = run_extraction(pdf_file().pk, extractor=PlainTextExtractor())
            assert file.extraction_status == ExtractionStatus.FAILED
            assert "text only from text files" in file.extraction_error
    logged = [r.getMessage() for r in caplog.records if "django_ai.W020" in r.getMessage()]
    assert len(logged) == 1 and "Java 11 or newer" in logged[0]


def test_check_errors_for_an_extractor_that_cannot_run():
    with override_settings(
        DJANGO_AI={"TEXT_EXTRACTOR": "django_ai.conversations.files.extraction.TikaServerExtractor"}
    ):
        (message,) = [m for m in run_checks() if m.id == "django_ai.E021"]
    assert "TIKA_SERVER_ENDPOINT" in message.msg
    with override_settings(DJANGO_AI={"TEXT_EXTRACTOR": "django_ai.conversations.models.File"}):
        assert "django_ai.E020" in ids(run_checks())


def test_check_errors_when_the_server_client_is_missing(monkeypatch):
    from django_ai.conversations.files.extraction import TikaServerExtractor

    monkeypatch.setattr(
        TikaServerExtractor, "missing_requirements", classmethod(lambda cls: ["the 'tika' client package"])
    )
    with override_settings(DJANGO_AI={"TIKA_SERVER_ENDPOINT": "http://tika:9998"}):
        (message,) = [m for m in run_checks() if m.id == "django_ai.E022"]
    assert message.hint == "pip install 'django-ai-first[tika-server]'"
