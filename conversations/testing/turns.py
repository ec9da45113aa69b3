"""Wait for turns in tests, and run a real task worker process against the test database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

from ..turns.inprocess import in_process_runner

__all__ = ["TaskWorker", "task_worker", "wait_for_turns", "wait_until"]


def wait_for_turns(timeout: float = 10.0) -> None:
    """Wait until the turns running in this process's background threads have finished.

    With Django's ImmediateBackend (the default TASKS) and ``IN_PROCESS_TURN_THREADS > 0``, a
    committed user message is answered in a background thread; call this before asserting on the
    reply. Raises AssertionError after ``timeout`` seconds.
    """
    runner = in_process_runner()
    if not runner.wait(timeout):
        raise AssertionError(f"{runner.unfinished} background turn task(s) still running after {timeout} s.")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"Condition not met within {timeout} s.")
        time.sleep(interval)


class TaskWorker:
    """A task worker process (``db_worker`` or ``rqworker``) using this process's test database."""

    def __init__(
        self, *, args: list[str], env: dict[str, str], log_path: Path, cwd: str, ready_line: str = "Starting worker"
    ):
        self.args = args
        self.ready_line = ready_line
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_timeout: float = 30.0) -> TaskWorker:
        """Start the process and wait until it polls for tasks."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.process = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + ready_timeout
        while self.ready_line not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"The task worker exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"The task worker did not start within {ready_timeout} s:\n{self.output()}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the worker dies at once, as in a crash (no cleanup)."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the worker finishes its task and exits), then SIGKILL after ``timeout``."""
        if not self.alive():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


_KINDS = {
    # kind: (apps the worker needs, the line that says it is polling)
    "db": (["django_tasks_db"], "Starting worker"),
    "ai_db": (["django_tasks_db"], "Starting worker"),
    "rq": (["django_rq", "django_tasks_rq"], "Listening on"),
}


def _worker_settings_module(directory: Path, django_ai: dict[str, Any] | None, kind: str) -> str:
    databases = {}
    for alias in settings.DATABASES:
        db = {k: v for k, v in connections[alias].settings_dict.items() if k != "TEST"}
        databases[alias] = db
    apps = list(settings.INSTALLED_APPS)
    apps += [app for app in _KINDS[kind][0] if app not in apps]
    values = {
        "DATABASES": databases,
        "TASKS": settings.TASKS,
        "INSTALLED_APPS": apps,
        # A task worker sweeps for stale turns (TURN_RECOVERY_LOOP), as the deployment docs say.
        "DJANGO_AI": {**(getattr(settings, "DJANGO_AI", {}) or {}), "TURN_RECOVERY_LOOP": True, **(django_ai or {})},
    }
    rq_queues = getattr(settings, "RQ_QUEUES", None)
    if rq_queues is not None:
        values["RQ_QUEUES"] = rq_queues
    name = f"django_ai_worker_settings_{uuid.uuid4().hex[:12]}"
    lines = [
        "# Generated by django_ai.conversations.testing.task_worker: the test process's settings.",
        f"from {os.environ.get('DJANGO_SETTINGS_MODULE') or settings.SETTINGS_MODULE} import *  # noqa",
        "import json as _json",
    ]
    for key, value in values.items():
        lines.append(f"{key} = _json.loads({json.dumps(json.dumps(value, default=str))})")
    (directory / f"{name}.py").write_text("\n".join(lines) + "\n")
    return name


@contextmanager
def task_worker(
    *,
    kind: str = "db",
    django_ai: dict[str, Any] | None = None,
    backend: str = "default",
    queue: str = "*",
    interval: float = 0.05,
    start: bool = True,
    args: list[str] | None = None,
) -> Iterator[Callable[[], TaskWorker]]:
    """Run task workers in subprocesses against the current (test) database.

    ``kind="db"``: django-tasks-db's ``db_worker`` (the test overrides ``TASKS`` to a
    ``django_tasks_db.DatabaseBackend``); ``kind="ai_db"``: this app's ``ai_db_worker`` (the same
    worker, woken by PostgreSQL's NOTIFY and keeping its connection); ``kind="rq"``: django-rq's ``rqworker`` with
    django-tasks-rq's job class, on ``queue`` (the test overrides ``TASKS`` to a
    ``django_tasks_rq.RQBackend`` and sets ``RQ_QUEUES``).

    Yields a factory: each call starts one more worker (``TaskWorker``). The workers use this
    process's settings (``DATABASES`` pointing at the test database, ``TASKS``, ``RQ_QUEUES``,
    ``DJANGO_AI`` updated with ``django_ai``); ``args`` are added to each worker's command line
    (e.g. ``["--no-wakeup"]``). The test must be transactional
    (``@pytest.mark.django_db(transaction=True)``): a worker only sees committed rows. Agents
    must be importable by the worker: register them through ``DJANGO_AI['AGENTS']`` too. Every
    worker is stopped when the block ends.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, not {kind!r}.")
    workers: list[TaskWorker] = []
    with tempfile.TemporaryDirectory(prefix="django-ai-worker-") as tmp:
        directory = Path(tmp)
        module = _worker_settings_module(directory, django_ai, kind)
        cwd = str(getattr(settings, "BASE_DIR", None) or os.getcwd())
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([tmp, cwd, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "DJANGO_SETTINGS_MODULE": module,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DATABASE_URL", None)  # the generated settings name the database

        def make() -> TaskWorker:
            n = len(workers) + 1
            if kind in ("db", "ai_db"):
                command = [
                    sys.executable,
                    "-m",
                    "django",
                    "db_worker" if kind == "db" else "ai_db_worker",
                    "--backend",
                    backend,
                    "--queue-name",
                    queue,
                    "--interval",
                    str(interval),
                    "--no-startup-delay",
                    "--no-reload",
                    "--worker-id",
                    f"test-worker-{n}-{uuid.uuid4().hex[:8]}",
                    "--verbosity",
                    "1",
                    *(args or []),
                ]
            else:
                command = [
                    sys.executable,
                    "-m",
                    "django",
                    "rqworker",
                    "--job-class",
                    "django_tasks_rq.Job",
                    "--name",
                    f"test-worker-{n}-{uuid.uuid4().hex[:8]}",
                    "--verbosity",
                    "1",
                    *(args or []),
                    queue,
                ]
            worker = TaskWorker(
                args=command, env=env, log_path=directory / f"worker-{n}.log", cwd=cwd, ready_line=_KINDS[kind][1]
            )
            workers.append(worker)
            return worker.start() if start else worker

        try:
            yield make
        finally:
            for worker in workers:
                worker.stop(timeout=5)
