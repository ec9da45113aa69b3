"""Real servers and clients for the realtime tests and benchmark.

- :class:`Soketi`: a Pusher-protocol server (soketi from npm, in this folder) on free loopback
  ports, with Pusher's own limits (10 KB per event, 10 events per batch);
- :class:`NodeSubscriber`: pusher-js in Node (``subscriber.mjs``), authenticating through the
  project's ``realtime/auth/`` endpoint;
- :class:`UvicornThread`: the project's ASGI application under uvicorn, in a thread of this process;
- :class:`SSEReader`: a Server-Sent Events client over a plain HTTP connection.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SOKETI_BIN = HERE / "node_modules" / "@soketi" / "soketi" / "bin" / "server.js"
PUSHER_JS = HERE / "node_modules" / "pusher-js"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_available() -> str | None:
    """Why the Node parts cannot run here, or None when they can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not SOKETI_BIN.exists() or not PUSHER_JS.exists():
        return f"npm packages missing in {HERE} (run ./dev setup, or npm ci there)"
    return None


class Soketi:
    """A soketi process on 127.0.0.1; use as a context manager."""

    def __init__(self, *, app_id: str = "4242", key: str = "test-key", secret: str = "test-secret"):
        self.app_id, self.key, self.secret = app_id, key, secret
        self.port = free_port()
        self.metrics_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pusher_settings(self) -> dict[str, Any]:
        return {
            "APP_ID": self.app_id,
            "KEY": self.key,
            "SECRET": self.secret,
            "HOST": "127.0.0.1",
            "PORT": self.port,
            "SCHEME": "http",
        }

    def start(self, timeout: float = 30.0) -> Soketi:
        env = {
            **os.environ,
            "SOKETI_HOST": "127.0.0.1",
            "SOKETI_PORT": str(self.port),
            "SOKETI_METRICS_SERVER_PORT": str(self.metrics_port),
            "SOKETI_METRICS_ENABLED": "false",
            "SOKETI_DEFAULT_APP_ID": self.app_id,
            "SOKETI_DEFAULT_APP_KEY": self.key,
            "SOKETI_DEFAULT_APP_SECRET": self.secret,
            # Hosted Pusher's limits, so what passes here passes there.
            "SOKETI_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB": "10",
            "SOKETI_DEFAULT_APP_MAX_EVENT_BATCH_SIZE": "10",
            "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES": "false",
            "SOKETI_SHUTDOWN_GRACE_PERIOD": "100",
        }
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"soketi-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["node", str(SOKETI_BIN), "start"],
            cwd=HERE,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"soketi exited at start-up: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"soketi did not start within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Soketi:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class NodeSubscriber:
    """pusher-js in a Node process; collects what ``subscriber.mjs`` prints."""

    def __init__(
        self,
        *,
        soketi: Soketi,
        auth_endpoint: str,
        channels: list[str],
        headers: dict[str, str] | None = None,
        cookie: str | None = None,
        csrf_token: str | None = None,
    ):
        config = {
            "key": soketi.key,
            "host": "127.0.0.1",
            "port": soketi.port,
            "authEndpoint": auth_endpoint,
            "channels": channels,
            "headers": headers or {},
            "cookie": cookie,
            "csrfToken": csrf_token,
        }
        self.process = subprocess.Popen(
            ["node", str(HERE / "subscriber.mjs"), json.dumps(config)],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            with self._lock:
                self.received.append(item)
            self.lines.put(item)

    def messages(self, type_: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.received if type_ is None or m["type"] == type_]

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages("event") if name is None or m["event"] == name]

    def wait_for(self, predicate: Callable[[NodeSubscriber], bool], timeout: float = 15.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        if predicate(self):
            return
        stderr = ""
        if self.process.poll() is not None and self.process.stderr is not None:
            stderr = self.process.stderr.read().decode(errors="replace")[-2000:]
        raise AssertionError(
            f"pusher-js subscriber: timed out waiting for {what or predicate}; got {self.messages()[-10:]} {stderr}"
        )

    def wait_subscribed(self, count: int = 1, timeout: float = 15.0) -> None:
        self.wait_for(
            lambda s: len(s.messages("subscribed")) + len(s.messages("subscription_error")) >= count,
            timeout,
            "subscriptions",
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> NodeSubscriber:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class UvicornThread:
    """An ASGI application served by uvicorn from a thread of this process."""

    def __init__(self, app: Any):
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class SSEReader:
    """Reads a ``text/event-stream`` response in a thread; events land in :attr:`events`."""

    def __init__(self, base_url: str, path: str, *, headers: dict[str, str] | None = None):
        host_port = base_url.split("://", 1)[1]
        host, port = host_port.split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)
        self.connection.request("GET", path, headers={"Accept": "text/event-stream", **(headers or {})})
        # The response keeps reading from this socket after http.client lets go of it.
        self.sock = self.connection.sock
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())
        self.events: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self.retry: int | None = None
        self.body = b""
        self.closed = threading.Event()
        self._lock = threading.Lock()
        if self.status == 200:
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        else:
            self.body = self.response.read()
            self.closed.set()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            while True:
                raw = self.response.readline()
                if not raw:
                    break
                line = raw.decode("utf-8").rstrip("\r\n")
                if not line:
                    if "data" in fields:
                        with self._lock:
                            self.events.append(
                                {
                                    "id": fields.get("id"),
                                    "event": fields.get("event", "message"),
                                    "data": json.loads(fields["data"]),
                                }
                            )
                    fields = {}
                    continue
                if line.startswith(":"):
                    with self._lock:
                        self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "retry":
                    self.retry = int(value)
                elif name == "data" and "data" in fields:
                    fields["data"] += "\n" + value
                else:
                    fields[name] = value
        except (OSError, ValueError, AttributeError, http.client.HTTPException):  # closed under us
            pass
        finally:
            self.closed.set()

    def wait_for(self, predicate: Callable[[SSEReader], bool], timeout: float = 10.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(self):
                    return
            time.sleep(0.01)
        raise AssertionError(f"SSE: timed out waiting for {what}; got {[e['event'] for e in self.events]}")

    def names(self) -> list[str]:
        with self._lock:
            return [e["event"] for e in self.events]

    def close(self) -> None:
        """Drop the connection as a browser tab that goes away does."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.connection.close()
