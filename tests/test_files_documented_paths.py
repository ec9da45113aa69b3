"""The older paths of the files code keep working: the modules docs/files.md names, the
``TEXT_EXTRACTOR`` values that point at them, and the extraction task's path stored in the task
queues of a running deployment."""

from __future__ import annotations

import importlib

import pytest
from django.test import override_settings
from django.utils.module_loading import import_string

from django_ai.conversations import exceptions
from django_ai.conversations.constants import ExtractionStatus
from django_ai.conversations.files import extraction as files_extraction
from django_ai.conversations.files import sniffing, throttles, uploads, views
from django_ai.conversations.files.extraction import get_extractor, tasks
from django_ai.conversations.testing import FileFactory

OLD_TASK_PATH = "django_ai.conversations.extraction.tasks.extract_file_task"


def test_the_uploads_alias_names_the_same_objects():
    alias = importlib.import_module("django_ai.conversations.uploads")
    homes = (sniffing, throttles, uploads, views)
    for name in alias.__all__:
        (home,) = [module for module in homes if name in module.__all__] or [exceptions]
        assert getattr(alias, name) is getattr(home, name), name
    from django_ai.conversations.uploads import save_upload  # as docs/files.md writes it

    assert save_upload is uploads.save_upload


def test_the_extraction_alias_names_the_same_objects():
    alias = importlib.import_module("django_ai.conversations.extraction")
    for name in alias.__all__:
        home = tasks if name == "schedule_extraction" else files_extraction
        assert getattr(alias, name) is getattr(home, name), name
    with pytest.raises(AttributeError):
        alias.not_a_name  # noqa: B018
    from django_ai.conversations.extraction import ExtractionError, ExtractionResult, TextExtractor  # docs/files.md

    assert (ExtractionError, ExtractionResult, TextExtractor) == (
        files_extraction.ExtractionError,
        files_extraction.ExtractionResult,
        files_extraction.TextExtractor,
    )


@pytest.mark.parametrize("name", ["EmbeddedTikaExtractor", "TikaServerExtractor", "PlainTextExtractor"])
def test_text_extractor_setting_takes_the_older_and_the_new_paths(name):
    for path in (f"django_ai.conversations.extraction.{name}", f"django_ai.conversations.files.extraction.{name}"):
        with override_settings(DJANGO_AI={"TEXT_EXTRACTOR": path, "TIKA_SERVER_ENDPOINT": "http://tika.invalid:9998"}):
            assert type(get_extractor()) is getattr(files_extraction, name), path


@pytest.mark.django_db
def test_a_task_queued_under_the_older_path_still_extracts(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    task = import_string(OLD_TASK_PATH)
    assert task is tasks.extract_file_task
    # New tasks are stored under the new path.
    assert task.module_path == "django_ai.conversations.files.extraction.tasks.extract_file_task"
    file = FileFactory(content=b"Opening hours: 9 to 5.\n", filename="hours.txt", content_type="text/plain")
    with override_settings(DJANGO_AI={"TEXT_EXTRACTOR": "django_ai.conversations.extraction.PlainTextExtractor"}):
        assert task.call(str(file.pk)) == {"file_id": str(file.pk), "status": ExtractionStatus.DONE}
    file.refresh_from_db()
    assert file.extracted_text == "Opening hours: 9 to 5."
