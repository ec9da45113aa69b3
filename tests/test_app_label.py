"""The app beside a project's own generic names: an app labelled ``conversations`` with a ``File``
model and a ``chat`` command. Real parts: a project in a temporary folder, ``manage.py check``,
``migrate`` on SQLite and the command lookup, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent


def test_the_app_label_is_distinctive():
    config = apps.get_app_config("django_ai_conversations")
    assert config.name == "django_ai.conversations"
    assert apps.get_model("django_ai_conversations", "File")._meta.db_table == "django_ai_conversations_file"


@pytest.mark.once
def test_a_project_app_named_conversations_with_a_file_model_and_a_chat_command(tmp_path):
    app = tmp_path / "conversations"
    (app / "migrations").mkdir(parents=True)
    (app / "management" / "commands").mkdir(parents=True)
    for init in (app, app / "migrations", app / "management", app / "management" / "commands"):
        (init / "__init__.py").write_text("")
    (app / "models.py").write_text(
        textwrap.dedent("""
        from django.conf import settings
        from django.db import models

        class File(models.Model):
            user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
            name = models.CharField(max_length=100)
    """)
    )
    (app / "management" / "commands" / "chat.py").write_text(
        textwrap.dedent("""
        from django.core.management.base import BaseCommand

        class Command(BaseCommand):
            def handle(self, *args, **options):
                self.stdout.write("the project's own chat")
    """)
    )
    (tmp_path / "settings.py").write_text(
        textwrap.dedent(f"""
        SECRET_KEY = "x"
        INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                          "conversations", "rest_framework", "django_filters", "django_ai.conversations"]
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {str(tmp_path / "db.sqlite3")!r}}}}}
        USE_TZ = True
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
    """)
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings", "PYTHONPATH": str(tmp_path)}

    def manage(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    manage("makemigrations", "conversations")
    manage("check")
    manage("migrate", "--noinput")
    assert manage("chat").strip() == "the project's own chat"
    assert "ai_chat" in manage("ai_chat", "--help")
