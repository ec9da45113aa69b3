"""The extraction process: embedded Tika outside the web process, within a memory bound.

One file can ask a parser for gigabytes (limits.py lists how); inside the web process that takes
the site down with it. So :class:`~.embedded.EmbeddedTikaExtractor` sends each file to an
extraction process of its own (``EXTRACTION_ISOLATION = "subprocess"``, the default) and gets the
text back. This module is the supervisor: when a child is started or replaced, how many files it
parses at a time, what a child's end means for the files it was parsing. One child, its pipes and
its memory watchdog are process.py; the frames frames.py; the child's program _child.py.

Decisions:

- One long-lived child per process that extracts (web process or task worker): ``python -m
  django_ai.conversations.files.extraction._child``, started on the first extraction, with one warm
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
  (:meth:`Death.worth_another_try`): it ran beside others, the child crashed (or was killed from
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
- Protocol (frames.py): 4-byte big-endian length + JSON, requests on the child's stdin, answers on its
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
import threading
import time
from typing import Any

from ...constants import ErrorCode
from .base import ExtractionError, ExtractionResult
from .limits import MIB, too_complex
from .process import Child, Death

__all__ = ["ExtractionProcessError", "extract", "running_process", "versions"]

logger = logging.getLogger("django_ai.conversations.extraction")

#: Seconds past a file's timeout before a child that has not answered is killed.
CHILD_GRACE = 10.0


class ExtractionProcessError(RuntimeError):
    """The extraction process raised something unexpected (a bug); its traceback is the message."""


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
                    ok = self._cond.wait_for(
                        lambda: not self._alone and self._active == 0, max(0.0, deadline - time.monotonic())
                    )
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
        self._child: Child | None = None
        self._pid = os.getpid()
        self._slots: _Slots | None = None

    def child(self, options: dict[str, Any], concurrency: int, *, timeout: float, fresh: bool = False) -> Child:
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
                child = self._child = Child(options=options, concurrency=concurrency, key=key)
        child.wait_ready(timeout)
        return child

    def slots(self, concurrency: int) -> _Slots:
        with self._lock:
            if self._pid != os.getpid():
                self._child, self._slots, self._pid = None, None, os.getpid()
            if self._slots is None or self._slots.size != max(1, concurrency):
                self._slots = _Slots(concurrency)
            return self._slots

    def run(
        self, request: dict[str, Any], *, options: dict[str, Any], concurrency: int, timeout: float
    ) -> dict[str, Any]:
        outcome = self._attempt(request, options, concurrency, timeout, alone=False)
        if isinstance(outcome, Death) and outcome.worth_another_try():
            logger.warning(
                "The extraction process ended (%s) while reading %r; trying it again alone",
                outcome.reason,
                request.get("filename"),
            )
            outcome = self._attempt(request, options, concurrency, timeout, alone=True)
        if isinstance(outcome, Death):
            raise _failure(outcome, request, options, timeout)
        return outcome

    def _attempt(
        self, request: dict[str, Any], options: dict[str, Any], concurrency: int, timeout: float, *, alone: bool
    ) -> dict[str, Any] | Death:
        deadline = time.monotonic() + timeout
        slots = self.slots(concurrency)
        if not slots.acquire(alone=alone, deadline=deadline):
            raise ExtractionError(
                "The text extraction service is busy with other files right now. Try again later.",
                code=ErrorCode.EXTRACTOR_BUSY,
            )
        try:
            child = self.child(options, concurrency, timeout=deadline - time.monotonic(), fresh=alone)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Death("timeout", shared=False)
            return child.call({**request, "timeout": remaining}, wait=remaining + CHILD_GRACE)
        finally:
            slots.release(alone=alone)

    def stop(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is not None and child.alive and self._pid == os.getpid():
            child.kill("replaced")


def _failure(death: Death, request: dict[str, Any], options: dict[str, Any], timeout: float) -> ExtractionError:
    if death.reason in ("heap", "memory"):
        limit = int(options["limits"]["memory"]) // MIB
        return too_complex(
            f"Reading this file needed more memory than this server allows ({limit:,} MB), so it was stopped."
        )
    if death.reason == "timeout":
        return ExtractionError(
            f"Reading the text took longer than {timeout:.3g} seconds and was stopped. Try a smaller file.",
            code=ErrorCode.TIMEOUT,
        )
    if death.reason == "replaced":
        return ExtractionError(
            "The text extraction service is busy with other files right now. Try again later.",
            code=ErrorCode.EXTRACTOR_BUSY,
        )
    logger.error("The extraction process crashed twice while reading %r (%s)", request.get("filename"), death.detail)
    return ExtractionError(
        "The text extraction stopped while reading this file, so its text cannot be read.",
        code=ErrorCode.EXTRACTION_FAILED,
    )


_supervisor = _Supervisor()
atexit.register(_supervisor.stop)


def extract(
    path: str, *, options: dict[str, Any], concurrency: int, timeout: float, **request: Any
) -> ExtractionResult:
    """Extract the file at ``path`` in the extraction process (started if need be).

    ``options`` are :class:`~.embedded.EngineOptions` as a dict; ``request`` holds
    ``filename``, ``content_type``, ``max_length``, ``ocr_enabled`` and ``ocr_language``.
    """
    answer = _supervisor.run(
        {"op": "extract", "path": path, **request}, options=options, concurrency=concurrency, timeout=timeout
    )
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
