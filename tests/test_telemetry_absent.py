"""Without OpenTelemetry installed the app works and imports nothing of it: a process whose import
system refuses ``opentelemetry`` (a finder ahead of every other in ``sys.meta_path``, installed
before Django starts) migrates a SQLite database and answers a message through an LLM agent that
calls a tool, and no ``opentelemetry`` module was loaded afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import json, sys


class NoOpenTelemetry:
    # Answers for opentelemetry as an interpreter without it would: no such module.
    refused = []

    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            self.refused.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoOpenTelemetry())
try:
    import opentelemetry  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the finder did not refuse opentelemetry")

import django

django.setup()
from django.core.management import call_command

call_command("migrate", verbosity=0)

from django_ai.conversations import register_agent, telemetry
from django_ai.conversations.llm import LLMAgent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FakeModel, FakeToolCall


class Desk(LLMAgent):
    tools = ["stock"]
    model = FakeModel(replies=[FakeToolCall("stock", {"item": "pen"}), "Three pens left."])

    def stock(self, item: str) -> dict:
        "Stock of an item."
        return {"item": item, "left": 3}


register_agent("desk", Desk)
session = ConversationService.create_session("desk")
result = ConversationService.send_message(session.id, "pens?")
loaded = sorted(name for name, module in sys.modules.items() if name.split(".")[0] == "opentelemetry")
print(json.dumps({"response": result["response"], "enabled": telemetry.enabled(), "loaded": loaded}))
"""


def test_a_turn_runs_without_opentelemetry_and_imports_none_of_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_TEST_DB_NAME")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DJANGO_AI_VAR_DIR=str(tmp_path),  # a SQLite database of its own
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"response": "Three pens left.", "enabled": False, "loaded": []}
