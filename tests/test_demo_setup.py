"""``manage.py demo_setup``, what ``./dev demo`` runs before serving: on a fresh database it
migrates and creates the demo login, in one process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parent.parent


def test_demo_setup_migrates_a_fresh_database_and_creates_the_login(tmp_path):
    env = {**os.environ, "DJANGO_AI_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "backend.settings"}
    env.pop("DATABASE_URL", None)
    for _ in range(2):  # and again, as every start of the demo does
        done = subprocess.run(
            [sys.executable, "manage.py", "demo_setup"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    assert "Demo login ready: demo / demo" in done.stdout
    with sqlite3.connect(tmp_path / "demo.sqlite3") as db:
        [(is_superuser,)] = db.execute("SELECT is_superuser FROM auth_user WHERE username = 'demo'").fetchall()
        assert is_superuser
        assert (
            db.execute("SELECT count(*) FROM django_migrations WHERE app = 'django_ai_conversations'").fetchone()[0] > 0
        )


def test_the_demo_has_its_own_agents_and_the_sdk_tests_have_theirs():
    """``./dev demo`` (backend.settings) lists the demo's agents only; the test settings, which the
    SDK's test server runs, add the SDK tests' agents of tests/sdk_agents.py."""
    from django_ai.conversations.registry import registry
    from tests.sdk_agents import StreamTestAgent

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings"}
    env.pop("DJANGO_AI_SETTINGS_JSON", None)
    code = (
        "import django; django.setup(); from django_ai.conversations.registry import registry; print(registry.paths())"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['echo', 'files', 'notes', 'sales', 'support', 'writer']"
    assert registry.get("stream-test") is StreamTestAgent
