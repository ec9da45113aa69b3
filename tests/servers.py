"""The demo project as a real server process, for tests that need one (``runserver`` or ``uvicorn``).

::

    env = migrated_demo_env(tmp_path / "var")           # demo settings on a fresh SQLite file
    with running_server("uvicorn", env, tmp_path / "uvicorn.log") as server:
        requests.get(server.base + "/api/conversations/realtime/config/")

The environment never reaches the suite's own databases (``DATABASE_URL`` and the test database name
are dropped) and uses the Local realtime backend (no ``PUSHER_KEY``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
API = "/api/conversations/"
#: Variables of the suite's own run that a server process must not inherit.
SUITE_ONLY = ("DATABASE_URL", "DJANGO_TEST_DB_NAME", "PUSHER_KEY")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on the port (no HTTP request is made)."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def migrated_demo_env(
    var: Path, *, settings: dict[str, Any] | None = None, drop: Iterable[str] = (), **extra: str
) -> dict[str, str]:
    """The environment of a demo server with its files in ``var`` (created), migrated.

    ``settings`` go to ``DJANGO_AI_SETTINGS_JSON``; ``drop`` names more variables to remove;
    ``extra`` sets more variables.
    """
    var.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backend.settings",
        "DJANGO_AI_VAR_DIR": str(var),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    if settings:
        env["DJANGO_AI_SETTINGS_JSON"] = json.dumps(settings)
    for key in (*SUITE_ONLY, *drop):
        env.pop(key, None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    return env


def server_command(kind: str, port: int) -> list[str]:
    """The command line of a ``runserver`` (threaded WSGI) or ``uvicorn`` (ASGI) demo server."""
    if kind == "runserver":
        return [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    if kind == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "backend.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    raise ValueError(f"unknown server kind {kind!r}")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, size: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-size:]


@contextmanager
def running_server(
    kind: str, env: dict[str, str], log: Path, *, http_ready: bool = True, timeout: float = 60.0
) -> Iterator[Server]:
    """Start a demo server and wait until it is ready, stop it on exit.

    Ready means it answers ``realtime/config/`` (``http_ready``) or, with ``http_ready=False``, only
    that it accepts TCP connections: no request has reached Django yet.
    """
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(server_command(kind, port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, port, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} exited: {server.log_tail()}")
            if http_ready:
                try:
                    if requests.get(server.base + API + "realtime/config/", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
            elif listening(port):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} was not ready within {timeout:.0f} s: {server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
