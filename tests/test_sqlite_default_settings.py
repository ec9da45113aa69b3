"""The embedded defaults on Django's default SQLite settings (``DATABASES`` with no OPTIONS).

The demo's and the tests' settings tune SQLite (``backend/settings.py``); a new project does not.
A project of its own runs in a subprocess here, on a database file made by ``migrate``: in-process
tasks extract a file while the turn that waits for it writes its messages, as when the seed's file
example is sent right after an upload. Before the app gave SQLite connections IMMEDIATE
transactions, one of the two writers failed at once with "database is locked" and the file stayed
``processing`` (or ``pending``) while the turn waited for it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.db import connection, connections
from django.db.utils import load_backend
from django.test import override_settings

REPOSITORY = Path(__file__).resolve().parent.parent
RUNS = 20
DYING_RUNS = 10

SETTINGS = """
import os

SECRET_KEY = "default-sqlite-test"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "django_filters",
    "django_ai.conversations",
]
# Django's default, as startproject writes it.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DB_PATH"]}}
MEDIA_ROOT = os.environ["MEDIA_ROOT"]
# The plain-text extractor reads a .txt as embedded Tika would, without a JVM to start.
DJANGO_AI = {
    # The seed README's file example (tests/example_agents.py; the repository is on the path).
    "AGENTS": {"files": "tests.example_agents.FileAgent"},
    "TEXT_EXTRACTOR": "django_ai.conversations.extraction.PlainTextExtractor",
}
"""

AGENTS = """
from django_ai.conversations.extraction import TextExtractor


class BrokenExtractor(TextExtractor):
    name = "broken"

    def extract(self, source, *, timeout, max_length):
        raise RuntimeError("a bug in the extractor")
"""


SCRIPT = """
import json
import sys

import django

django.setup()

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from django_ai.conversations.models import File
from django_ai.conversations.owners import Owner
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import wait_for_turns
from django_ai.conversations.uploads import save_upload

user = get_user_model().objects.create(username="reader")


def ask(number):
    session = ConversationService.create_session("files", user=user)
    text = f"Call Bob on Monday, note {number}.".encode()
    upload = SimpleUploadedFile(f"notes{number}.txt", text, content_type="text/plain")
    file = save_upload(upload, owner=Owner(user=user))
    result = ConversationService.send_message(session.id, "What is in this?", user=user, files=[file])
    wait_for_turns(timeout=120)  # the extraction task, when the turn did not wait for it
    file.refresh_from_db()
    return {"number": number, "result": result, "status": file.extraction_status, "error": file.extraction_error}


runs = [ask(number) for number in range(int(sys.argv[1]))]
# An hour's wait: a turn that waited for a dead extraction would never end here.
with override_settings(DJANGO_AI={
    "AGENTS": {"files": "tests.example_agents.FileAgent"},
    "TEXT_EXTRACTOR": "site_agents.BrokenExtractor",
    "FILE_WAIT_TIMEOUT": 3600,
}):
    dying = [ask(number) for number in range(int(sys.argv[2]))]
print(json.dumps({"runs": runs, "dying": dying}))
"""


@pytest.fixture(scope="module")
def default_sqlite_project(tmp_path_factory):
    """The runs of the script above in a project with Django's default DATABASES."""
    root = tmp_path_factory.mktemp("default_sqlite")
    project = root / "project"
    project.mkdir()
    (project / "site_settings.py").write_text(SETTINGS)
    (project / "site_agents.py").write_text(AGENTS)
    (project / "run.py").write_text(SCRIPT)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join([str(project), str(REPOSITORY)]),
        "DJANGO_SETTINGS_MODULE": "site_settings",
        "DB_PATH": str(root / "db.sqlite3"),
        "MEDIA_ROOT": str(root / "media"),
        "HOME": str(root),
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("-m", "django", "migrate", "--noinput", "-v", "0")
    return json.loads(run("run.py", str(RUNS), str(DYING_RUNS)).strip().splitlines()[-1])


# The project is SQLite whatever database the suite runs on: once, in the SQLite run, is enough.
only_once = pytest.mark.skipif(connection.vendor != "sqlite", reason="runs in the suite's SQLite run")


@pytest.mark.slow
@only_once
def test_the_seed_file_example_reads_a_file_sent_right_after_its_upload_every_time(default_sqlite_project):
    runs = default_sqlite_project["runs"]
    assert len(runs) == RUNS
    for run in runs:
        number = run["number"]
        assert run["result"]["status"] == "success", run
        assert (
            run["result"]["response"]
            == f"File analysis:\nFrom notes{number}.txt: Call Bob on Monday, note {number}...."
        ), run
        assert run["status"] == "done", run


@pytest.mark.slow
@only_once
def test_a_file_whose_extraction_died_is_failed_and_the_turn_goes_on(default_sqlite_project):
    dying = default_sqlite_project["dying"]
    assert len(dying) == DYING_RUNS
    for run in dying:
        assert run["result"] == {**run["result"], "status": "success", "response": "File analysis:\n"}, run
        assert run["status"] == "failed", run
        assert run["error"] == "The text of this file could not be read because of an error on the server.", run


@pytest.mark.parametrize(
    ("options", "holds_the_write_lock"),
    [({}, True), ({"transaction_mode": "DEFERRED"}, False)],
    ids=["unset", "chosen by the project"],
)
def test_sqlite_transactions_take_the_write_lock_as_they_begin(
    tmp_path, django_db_blocker, options, holds_the_write_lock
):
    wrapper_class = load_backend("django.db.backends.sqlite3").DatabaseWrapper
    path = tmp_path / "db.sqlite3"
    settings_dict = {**connections["default"].settings_dict, "NAME": str(path), "OPTIONS": options}
    app = wrapper_class(settings_dict, alias="default_sqlite_settings")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with django_db_blocker.unblock():
        try:
            # What atomic() does first on SQLite.
            app.set_autocommit(False, force_begin_transaction_with_broken_autocommit=True)
            if holds_the_write_lock:
                with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                    other.execute("BEGIN IMMEDIATE")
            else:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
        finally:
            other.close()
            app.close()


@pytest.mark.parametrize(
    ("options", "warned"),
    [
        ({}, False),
        ({"transaction_mode": "IMMEDIATE"}, False),
        ({"transaction_mode": "EXCLUSIVE"}, False),
        ({"transaction_mode": "deferred"}, True),
    ],
)
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")  # only the check reads them here
def test_check_warns_about_deferred_sqlite_transactions(options, warned):
    databases = {
        "default": connections["default"].settings_dict,
        "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x", "OPTIONS": options},
    }
    with override_settings(DATABASES=databases):
        messages = [m for m in run_checks(tags=["django_ai"]) if m.id == "django_ai.W060"]
    assert bool(messages) == warned
    if warned:
        assert "DATABASES['other']" in messages[0].msg
        assert "'transaction_mode': 'IMMEDIATE'" in messages[0].hint and "'timeout': 20" in messages[0].hint
