"""A process that used embedded Tika in itself (``EXTRACTION_ISOLATION = "none"``) exits cleanly:
real JVM, real parses, a real interpreter exit.

Task worker threads that ran an extraction stay attached to the JVM and never end, and a parse
abandoned at its timeout may still run at exit. JPype's own shutdown at exit hung or crashed the
process in both cases (seen as "Segmentation fault" after a test run's summary).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.once

SCRIPT = """
import threading, time, django
django.setup()
from django.test import override_settings
override_settings(DJANGO_AI={"EXTRACTION_ISOLATION": "none"}).enable()
from pathlib import Path
from django_ai.conversations.files.extraction.base import ExtractionError, ExtractionSource
from django_ai.conversations.files.extraction.embedded import EmbeddedTikaExtractor

files = Path("tests/fixtures/files")
extractor = EmbeddedTikaExtractor()
done = threading.Event()

def worker():  # like an in-process task thread: extracts, then waits for more work forever
    data = (files / "report.pdf").read_bytes()
    pdf = ExtractionSource.from_bytes(data, filename="r.pdf", content_type="application/pdf")
    text = extractor.extract(pdf, timeout=60, max_length=100).text
    try:
        extractor.extract(ExtractionSource.from_bytes((files / "scanned.pdf").read_bytes(), filename="s.pdf",
                                                      content_type="application/pdf"), timeout=0.2, max_length=100)
    except ExtractionError as exc:
        print("left behind:", exc.code, flush=True)
    print("extracted:", bool(text.strip()), flush=True)
    done.set()
    threading.Event().wait()

threading.Thread(target=worker, daemon=True).start()
done.wait(120)
print("exiting", flush=True)
"""


def test_the_process_exits_cleanly_after_extractions_on_worker_threads():
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "PYTHONPATH": str(root),
        "PYTHONFAULTHANDLER": "1",
    }
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180, env=env, cwd=root)
    assert "extracted: True" in out.stdout and "left behind: timeout" in out.stdout, (out.stdout, out.stderr[-2000:])
    assert "exiting" in out.stdout
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Fatal Python error" not in out.stderr


RELEASED_AT_EXIT = """
import django
django.setup()
import jpype
from django_ai.conversations.files.extraction.tika_jvm import ensure_jvm

ensure_jvm()

class Task:
    def run(self):
        pass

# Python objects handed to Java and dropped: JPype's reference queue (a Java thread) calls into
# Python to release them, and without care it does so while the interpreter finalizes.
for _ in range(20000):
    jpype.JProxy("java.lang.Runnable", inst=Task())
jpype.JClass("java.lang.System").gc()
print("exiting", flush=True)
"""


def test_the_process_exits_cleanly_while_java_releases_python_objects():
    """Before the reference queue was stopped at exit, about half of these runs aborted
    ("terminate called without an active exception"); three runs make a regression visible."""
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "PYTHONPATH": str(root),
        "PYTHONFAULTHANDLER": "1",
    }
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", RELEASED_AT_EXIT], capture_output=True, text=True, timeout=120, env=env, cwd=root
        )
        assert "exiting" in out.stdout, out.stderr[-2000:]
        assert out.returncode == 0, out.stderr[-3000:]
