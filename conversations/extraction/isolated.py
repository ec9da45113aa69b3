"""The extraction process: embedded Tika outside the web process, within a memory bound.

One file can ask a parser for gigabytes (limits.py lists how); inside the web process that takes
the site down with it. So :class:`~.embedded.EmbeddedTikaExtractor` sends each file to an
extraction process of its own (``EXTRACTION_ISOLATION = "subprocess"``, the default) and gets the
text back.

Decisions:

- One long-lived child per process that extracts (web process or task worker): ``python -m
  django_ai.conversations.extraction._child``, started on the first extraction, with one warm
  JVM inside. After its start a document costs what it cost in the web process plus a round
  trip over a pipe (docs/benchmarks.md).
- The bound is the RSS of the child's process group (the child and the tesseract runs its JVM
  starts), read from /proc by a watchdog thread here every WATCH_INTERVAL seconds while the
  child has work; beyond ``EXTRACTION_MEMORY_LIMIT`` the group is killed (SIGKILL) and replaced.
  RLIMIT_AS is not set on the child: the JVM reserves address space far beyond what it uses
  (the heap reservation, code cache, class space, a stack per thread: several GB for a 512 MB
  heap), so an address-space limit either kills healthy JVMs or bounds nothing. The JVM heap is
  limited instead (``-Xmx``, half of the bound) with ``-XX:+ExitOnOutOfMemoryError``: a JVM out
  of heap ends and is replaced rather than going on in an unknown state. tesseract, whose
  address space is close to what it uses, runs under RLIMIT_AS and RLIMIT_CPU (_ocr_guard.py).
- Time: the child stops waiting for a parse at the file's timeout, as in the web process. A
  parse it leaves behind on a Java thread (one that ignores the interrupt) gets the child
  replaced as soon as that answer is in: killing the process is the only way to stop such a
  thread. A child that does not answer within the timeout plus CHILD_GRACE seconds is killed.
- A child that dies takes the parses it was running with it. Each of them is tried once more,
  alone in a fresh child (no other parse starts meanwhile), when that may end otherwise
  (:meth:`_Death.worth_another_try`): it ran beside others, the child crashed (or was killed from
  outside), or it went over memory in a child that had served other files before. So a bomb sent
  beside a good file does not fail the good file, and a file fails for memory only when it went
  over alone, in a new process (or ran the JVM out of heap alone, which would happen again). Then
  the failure is the file's: ``too_complex`` (over memory), ``timeout``, or
  ``extraction_failed`` (the process crashed twice).
- ``EXTRACTION_CONCURRENCY`` files are parsed at a time; more wait for a turn, within their
  timeout (``extractor_busy`` when it runs out).
- Disk: the child sets RLIMIT_CORE to 0 and RLIMIT_FSIZE to the container limit for the files it
  writes (Tika's temporary files), with SIGXFSZ ignored so that a write past it fails instead of
  killing the process (_child.py).
- Protocol: 4-byte big-endian length + JSON, requests on the child's stdin, answers on its
  stdout. The child points its own fd 1 at stderr so that nothing the JVM prints can break a
  frame; its stderr is this process's. Files are passed by path (a local copy for remote
  storages, kept until the answer is in).
- The child leads its own process group (``start_new_session``), so a kill ends its tesseract
  runs too; it ends itself and its group when its stdin closes, i.e. when this process exits.
- fork(): a forked process (a server's worker) starts its own child instead of sharing the
  parent's. The web process itself never starts a JVM here, so fork() is safe at any time.
- This bounds resources; it is not a security sandbox. The child runs as the same user with the
  same file access. To contain a parser bug, run extraction workers in a container.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

from .base import ExtractionError, ExtractionResult
from .limits import MIB, python_executable, too_complex

__all__ = ["ExtractionProcessError", "extract", "group_rss", "read_frame", "running_process", "versions", "write_frame"]

logger = logging.getLogger("django_ai.conversations.extraction")

CHILD_MODULE = "django_ai.conversations.extraction._child"
#: Seconds past a file's timeout before a child that has not answered is killed.
CHILD_GRACE = 10.0
#: Seconds between two looks at the child's memory while it has work.
WATCH_INTERVAL = 0.1
#: Seconds a child may take to start its JVM before it is killed.
START_LIMIT = 300.0
#: Exit status of a JVM ended by -XX:+ExitOnOutOfMemoryError.
JVM_OUT_OF_MEMORY = 3

_FRAME = struct.Struct(">I")
_MAX_FRAME = 1 << 30
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ExtractionProcessError(RuntimeError):
    """The extraction process raised something unexpected (a bug); its traceback is the message."""


def write_frame(stream: IO[bytes], payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> dict[str, Any] | None:
    """The next frame, or None at the end of the stream."""
    head = _read_exactly(stream, _FRAME.size)
    if head is None:
        return None
    (size,) = _FRAME.unpack(head)
    if size > _MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes")
    body = _read_exactly(stream, size)
    return None if body is None else json.loads(body)


def _read_exactly(stream: IO[bytes], count: int) -> bytes | None:
    parts = []
    while count:
        chunk = stream.read(count)
        if not chunk:
            return None
        parts.append(chunk)
        count -= len(chunk)
    return b"".join(parts)


def group_rss(group: int) -> int | None:
    """Bytes resident in memory for the processes of process group ``group`` (Linux /proc), or
    None where there is no /proc."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    total = 0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
            # The command name (in parentheses) may hold spaces; the fields after it do not.
            if int(stat[stat.rfind(b")") + 2 :].split()[2]) != group:
                continue
            with open(f"/proc/{name}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
    return total


@dataclass
class _Death:
    """How a child ended, as seen by one parse it was running."""

    #: "heap" (the JVM ran out of heap), "memory" (over EXTRACTION_MEMORY_LIMIT), "timeout",
    #: "crashed", or "replaced" (stopped by this process: new settings, a parse left behind).
    reason: str
    #: Whether other parses were running in the child when it ended.
    shared: bool
    #: Whether this parse was the only one the child ever ran (nothing earlier used its memory).
    fresh: bool = False
    detail: str = ""

    def worth_another_try(self) -> bool:
        """Whether the parse may end otherwise alone in a new child: it ran beside others, the
        child was replaced or crashed under it, or it went over memory in a child that had run
        other parses before. Out of heap or out of time alone, or over memory alone in a new
        child, it would be the same again."""
        if self.shared or self.reason in ("replaced", "crashed"):
            return True
        return self.reason == "memory" and not self.fresh


class _Call:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: dict[str, Any] | _Death | None = None


class _Child:
    """One extraction process: its pipes, the thread reading its answers, its watchdog."""

    def __init__(self, *, options: dict[str, Any], concurrency: int, key: str) -> None:
        self.key = key
        self.memory_limit = int(options["limits"]["memory"])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(  # noqa: S603 - our own module, no shell
            [python_executable(), "-m", CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
        self.pid = self.process.pid
        self.served = 0
        self.info: dict[str, Any] = {}
        self.death_reason: str | None = None
        self.peak_rss = 0
        self._lock = threading.Lock()
        self._pending: dict[int, _Call] = {}
        self._next_id = 0
        self._kill_reason: str | None = None
        self._ready = threading.Event()
        self._busy = threading.Event()
        self._ended = threading.Event()
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin = self.process.stdin
        self._stdout = self.process.stdout
        try:
            write_frame(self._stdin, {"options": options, "concurrency": concurrency})
        except OSError:
            pass  # it died at once: the reader sees the end and says why
        threading.Thread(target=self._read, name=f"django-ai-extraction-{self.pid}", daemon=True).start()
        threading.Thread(target=self._watch, name=f"django-ai-extraction-watch-{self.pid}", daemon=True).start()

    @property
    def alive(self) -> bool:
        return not self._ended.is_set()

    def wait_ready(self, timeout: float) -> None:
        """Wait until the child has started its JVM; raise when it cannot (or not in time: it
        goes on starting for the next file, and is killed after START_LIMIT seconds)."""
        self._ready.wait(max(0.0, timeout))
        if self.info.get("ready"):
            return
        if self.info:  # the child said why it cannot run
            raise ExtractionError(self.info.get("message") or None, code=self.info.get("code") or "extractor_unavailable")
        if self.alive:
            raise ExtractionError(
                f"Starting the text extraction took longer than {timeout:.3g} seconds, so this file was not read. "
                "Try again later.",
                code="timeout",
            )
        logger.error("The extraction process %d ended while starting (exit status %s)", self.pid, self.process.returncode)
        raise ExtractionError("Text extraction is not available on this server.", code="extractor_unavailable")

    def call(self, request: dict[str, Any], *, wait: float) -> dict[str, Any] | _Death:
        """Send one request and wait up to ``wait`` seconds for its answer (or the child's end)."""
        call = _Call()
        with self._lock:
            if not self.alive:
                return _Death(self.death_reason or "crashed", shared=False)
            self._next_id += 1
            number = self._next_id
            self._pending[number] = call
            self.served += 1
            self._busy.set()
            try:
                write_frame(self._stdin, {**request, "id": number})
            except OSError:
                pass  # it died: the reader thread answers this call with how
        if not call.done.wait(wait):
            logger.warning("The extraction process %d did not answer within %.0f s; stopping it", self.pid, wait)
            self.kill("timeout")
            call.done.wait()
            if isinstance(call.answer, _Death):
                return _Death("timeout", shared=False)  # this file's own time ran out
        assert call.answer is not None
        return call.answer

    def kill(self, reason: str) -> None:
        with self._lock:
            if self._kill_reason is None:
                self._kill_reason = reason
        if self.process.returncode is not None:
            return  # already reaped: its pid may belong to another process by now
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _read(self) -> None:
        try:
            while (frame := read_frame(self._stdout)) is not None:
                if "ready" in frame:
                    self.info = frame
                    self._ready.set()
                    continue
                with self._lock:
                    call = self._pending.pop(frame.get("id"), None)
                    if not self._pending:
                        self._busy.clear()
                if call is not None:
                    call.answer = frame
                    call.done.set()
                if frame.get("left_behind"):
                    # A parse that ignored its interrupt still runs on a Java thread: only ending
                    # the process stops it. Parses running beside it are tried again.
                    logger.warning("Replacing the extraction process %d: a parse did not stop at its timeout", self.pid)
                    self.kill("replaced")
        except (OSError, ValueError):
            logger.exception("Reading from the extraction process %d failed", self.pid)
            self.kill("crashed")
        finally:
            self._end()

    def _end(self) -> None:
        try:
            status = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill("crashed")
            status = self.process.wait()
        for stream in (self._stdin, self._stdout):
            try:
                stream.close()
            except OSError:
                pass
        with self._lock:
            reason = self._kill_reason
            if reason is None:
                reason = "heap" if status == JVM_OUT_OF_MEMORY else "crashed"
                if reason == "crashed" and self.info.get("ready"):
                    logger.error("The extraction process %d ended unexpectedly (exit status %s)", self.pid, status)
            self.death_reason = reason
            calls = list(self._pending.values())
            self._pending.clear()
            self._ended.set()
            self._busy.set()  # let the watchdog see the end
        for call in calls:
            call.answer = _Death(reason, shared=len(calls) > 1, fresh=self.served == 1, detail=f"exit status {status}")
            call.done.set()
        self._ready.set()

    def _watch(self) -> None:
        if not self._ready.wait(START_LIMIT) and self.alive:
            logger.error("The extraction process %d did not start within %d s; stopping it", self.pid, START_LIMIT)
            self.kill("timeout")
            return
        while self.alive:
            if not self._busy.wait(1.0):
                continue
            rss = group_rss(self.pid)
            if rss is None:
                return  # no /proc here: the heap and tesseract limits are the bounds
            self.peak_rss = max(self.peak_rss, rss)
            if rss > self.memory_limit and self.alive:
                logger.warning(
                    "The extraction process %d holds %d MB, over EXTRACTION_MEMORY_LIMIT (%d MB): stopping it",
                    self.pid, rss // MIB, self.memory_limit // MIB,
                )
                self.kill("memory")
                return
            self._ended.wait(WATCH_INTERVAL)


class _Slots:
    """``size`` parses at a time, or one alone (a retry after a child died)."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._cond = threading.Condition()
        self._active = 0
        self._alone = False
        self._alone_waiting = 0

    def acquire(self, *, alone: bool, deadline: float) -> bool:
        with self._cond:
            if alone:
                self._alone_waiting += 1
                try:
                    ok = self._cond.wait_for(lambda: not self._alone and self._active == 0, max(0.0, deadline - time.monotonic()))
                finally:
                    self._alone_waiting -= 1
                    self._cond.notify_all()  # parses held back for this one may go (again)
                self._alone = ok
                return ok
            ok = self._cond.wait_for(
                lambda: not self._alone and not self._alone_waiting and self._active < self.size,
                max(0.0, deadline - time.monotonic()),
            )
            if ok:
                self._active += 1
            return ok

    def release(self, *, alone: bool) -> None:
        with self._cond:
            if alone:
                self._alone = False
            else:
                self._active -= 1
            self._cond.notify_all()


class _Supervisor:
    """The child of this process: started on demand, replaced when it dies or settings change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._pid = os.getpid()
        self._slots: _Slots | None = None

    def child(self, options: dict[str, Any], concurrency: int, *, timeout: float, fresh: bool = False) -> _Child:
        key = json.dumps([options, concurrency], sort_keys=True)
        with self._lock:
            if self._pid != os.getpid():  # forked: that child belongs to the parent process
                self._child, self._slots, self._pid = None, None, os.getpid()
            child = self._child
            if child is not None and (child.key != key or not child.alive or (fresh and child.served)):
                if child.alive:
                    child.kill("replaced")
                child = None
            if child is None:
                child = self._child = _Child(options=options, concurrency=concurrency, key=key)
        child.wait_ready(timeout)
        return child

    def slots(self, concurrency: int) -> _Slots:
        with self._lock:
            if self._pid != os.getpid():
                self._child, self._slots, self._pid = None, None, os.getpid()
            if self._slots is None or self._slots.size != max(1, concurrency):
                self._slots = _Slots(concurrency)
            return self._slots

    def run(self, request: dict[str, Any], *, options: dict[str, Any], concurrency: int, timeout: float) -> dict[str, Any]:
        outcome = self._attempt(request, options, concurrency, timeout, alone=False)
        if isinstance(outcome, _Death) and outcome.worth_another_try():
            logger.warning(
                "The extraction process ended (%s) while reading %r; trying it again alone",
                outcome.reason, request.get("filename"),
            )
            outcome = self._attempt(request, options, concurrency, timeout, alone=True)
        if isinstance(outcome, _Death):
            raise _failure(outcome, request, options, timeout)
        return outcome

    def _attempt(
        self, request: dict[str, Any], options: dict[str, Any], concurrency: int, timeout: float, *, alone: bool
    ) -> dict[str, Any] | _Death:
        deadline = time.monotonic() + timeout
        slots = self.slots(concurrency)
        if not slots.acquire(alone=alone, deadline=deadline):
            raise ExtractionError(
                "The text extraction service is busy with other files right now. Try again later.",
                code="extractor_busy",
            )
        try:
            child = self.child(options, concurrency, timeout=deadline - time.monotonic(), fresh=alone)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _Death("timeout", shared=False)
            return child.call({**request, "timeout": remaining}, wait=remaining + CHILD_GRACE)
        finally:
            slots.release(alone=alone)

    def stop(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is not None and child.alive and self._pid == os.getpid():
            child.kill("replaced")


def _failure(death: _Death, request: dict[str, Any], options: dict[str, Any], timeout: float) -> ExtractionError:
    if death.reason in ("heap", "memory"):
        limit = int(options["limits"]["memory"]) // MIB
        return too_complex(f"Reading this file needed more memory than this server allows ({limit:,} MB), so it was stopped.")
    if death.reason == "timeout":
        return ExtractionError(
            f"Reading the text took longer than {timeout:.3g} seconds and was stopped. Try a smaller file.", code="timeout"
        )
    if death.reason == "replaced":
        return ExtractionError(
            "The text extraction service is busy with other files right now. Try again later.", code="extractor_busy"
        )
    logger.error("The extraction process crashed twice while reading %r (%s)", request.get("filename"), death.detail)
    return ExtractionError(
        "The text extraction stopped while reading this file, so its text cannot be read.", code="extraction_failed"
    )


_supervisor = _Supervisor()
atexit.register(_supervisor.stop)


def extract(path: str, *, options: dict[str, Any], concurrency: int, timeout: float, **request: Any) -> ExtractionResult:
    """Extract the file at ``path`` in the extraction process (started if need be).

    ``options`` are :class:`~.embedded.EngineOptions` as a dict; ``request`` holds
    ``filename``, ``content_type``, ``max_length``, ``ocr_enabled`` and ``ocr_language``.
    """
    answer = _supervisor.run({"op": "extract", "path": path, **request}, options=options, concurrency=concurrency, timeout=timeout)
    if "error" in answer:
        raise ExtractionError(answer["error"]["message"], code=answer["error"]["code"])
    if "bug" in answer:
        raise ExtractionProcessError(f"The extraction process failed on {request.get('filename')!r}:\n{answer['bug']}")
    return ExtractionResult(text=answer["text"], truncated=bool(answer["truncated"]), metadata=answer["metadata"])


def versions(options: dict[str, Any], *, concurrency: int, timeout: float) -> tuple[str, str | None]:
    """Tika's and tesseract's versions in the extraction process (started if need be)."""
    child = _supervisor.child(options, concurrency, timeout=timeout)
    return str(child.info.get("tika_version") or ""), child.info.get("ocr_version")


def running_process() -> tuple[int, int] | None:
    """(pid, peak RSS in bytes seen by the watchdog) of this process's extraction process, if one
    runs: for tests and diagnostics."""
    child = _supervisor._child
    if child is None or not child.alive or _supervisor._pid != os.getpid():
        return None
    return child.pid, child.peak_rss
