"""The distribution as ``pip install django-ai-first`` delivers it.

The wheel is built from this checkout (setuptools, no build isolation: nothing is downloaded) and
unpacked into a folder of its own; a small project outside the repository, set up as
docs/installation.md says, then runs on that folder alone: ``check``, ``migrate``, a turn of the
seed's echo agent through ``ConversationService``, and the bridge's ``start/`` and query paths
through Django's test client. The checkout's editable install is not what gets imported: the child
prints the module's file and the test asserts it lies in the unpacked wheel.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

SETTINGS = """
SECRET_KEY = "packaging-test"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "site_urls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "django_filters",
    "django_ai.conversations",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
DJANGO_AI = {"AGENTS": {"echo": "site_agents.EchoAgent"}}
"""

URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/conversations/", include("django_ai.conversations.urls")),
]
"""

AGENTS = """
from django_ai.conversations import ConversationAgent


class EchoAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        return f"You said: {message}"
"""

SCRIPT = """
import json
import django

django.setup()

import django_ai.conversations as app
from django.test import Client
from django_ai.conversations.service import ConversationService

session = ConversationService.create_session("echo")
result = ConversationService.send_message(session_id=session.id, message="hello wheel")

client = Client()
started = client.post("/api/conversations/start/", {"agent_path": "echo"}, content_type="application/json")
query = client.post("/api/conversations/models/session/query/", {}, content_type="application/json")
print(json.dumps({
    "file": app.__file__,
    "result": result,
    "start": started.status_code,
    "sessions": len(query.json()["data"]),
}))
"""


def _listed_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_listed_in_pyproject():
    # The folder is mapped by hand: a sub-package left out of the list would be missing from the wheel.
    on_disk = {
        "django_ai.conversations" + "".join("." + part for part in init.parent.relative_to(ROOT / "conversations").parts)
        for init in (ROOT / "conversations").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk == _listed_packages()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (built,) = out.glob("django_ai_first-*.whl")
    return built


def test_the_wheel_holds_every_module_and_no_project_folder(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        "django_ai/conversations/" + str(path.relative_to(ROOT / "conversations"))
        for path in (ROOT / "conversations").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources <= names, sorted(sources - names)
    assert "django_ai/conversations/py.typed" in names
    assert any(n.startswith("django_ai/conversations/migrations/0001_") for n in names)
    # The demo project, its agents and the tests stay out of the distribution.
    assert not [n for n in names if n.split("/")[0] in {"backend", "agents", "tests", "conversations", "frontend_client"}]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Name: django-ai-first" in text
    assert "License-Expression: MIT" in text or "License: MIT" in text
    assert "Requires-Python: >=3.12" in text


def test_a_project_outside_the_checkout_runs_on_the_wheel_alone(wheel, tmp_path):
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    project = tmp_path / "project"
    project.mkdir()
    (project / "site_settings.py").write_text(SETTINGS)
    (project / "site_urls.py").write_text(URLS)
    (project / "site_agents.py").write_text(AGENTS)
    (project / "run.py").write_text(SCRIPT)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{site}:{project}",
        "DJANGO_SETTINGS_MODULE": "site_settings",
        "HOME": str(tmp_path),
    }

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("-m", "django", "check", "--fail-level", "ERROR")
    run("-m", "django", "migrate", "--noinput", "-v", "0")
    report = json.loads(run("run.py").strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(site), report["file"]
    assert report["result"]["status"] == "success"
    assert report["result"]["response"] == "You said: hello wheel"
    assert report["start"] == 201
    assert report["sessions"] == 1
