"""One extraction process, seen from the process that started it: its pipes, the thread that reads
its answers, and the watchdog that reads its memory.

isolated.py decides when one is started, replaced, and what its end means for the files it was
parsing (its docstring records the decisions); _child.py is the program it runs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from ...constants import ErrorCode
from .base import ExtractionError
from .frames import read_frame, write_frame
from .limits import MIB, python_executable

__all__ = ["CHILD_MODULE", "Child", "Death", "group_rss"]

logger = logging.getLogger("django_ai.conversations.extraction")

CHILD_MODULE = "django_ai.conversations.files.extraction._child"
#: Seconds between two looks at the child's memory while it has work.
WATCH_INTERVAL = 0.1
#: Seconds a child may take to start its JVM before it is killed.
START_LIMIT = 300.0
#: Exit status of a JVM ended by -XX:+ExitOnOutOfMemoryError.
JVM_OUT_OF_MEMORY = 3

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


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
class Death:
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
        self.answer: dict[str, Any] | Death | None = None


class Child:
    """One extraction process: its pipes, the thread reading its answers, its watchdog."""

    def __init__(self, *, options: dict[str, Any], concurrency: int, key: str) -> None:
        self.key = key
        self.memory_limit = int(options["limits"]["memory"])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
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
            raise ExtractionError(
                self.info.get("message") or None, code=self.info.get("code") or ErrorCode.EXTRACTOR_UNAVAILABLE
            )
        if self.alive:
            raise ExtractionError(
                f"Starting the text extraction took longer than {timeout:.3g} seconds, so this file was not read. "
                "Try again later.",
                code=ErrorCode.TIMEOUT,
            )
        logger.error(
            "The extraction process %d ended while starting (exit status %s)", self.pid, self.process.returncode
        )
        raise ExtractionError("Text extraction is not available on this server.", code=ErrorCode.EXTRACTOR_UNAVAILABLE)

    def call(self, request: dict[str, Any], *, wait: float) -> dict[str, Any] | Death:
        """Send one request and wait up to ``wait`` seconds for its answer (or the child's end)."""
        call = _Call()
        with self._lock:
            if not self.alive:
                return Death(self.death_reason or "crashed", shared=False)
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
            if isinstance(call.answer, Death):
                return Death("timeout", shared=False)  # this file's own time ran out
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
                    call = self._pending.pop(int(frame.get("id") or 0), None)
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
            call.answer = Death(reason, shared=len(calls) > 1, fresh=self.served == 1, detail=f"exit status {status}")
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
                    self.pid,
                    rss // MIB,
                    self.memory_limit // MIB,
                )
                self.kill("memory")
                return
            self._ended.wait(WATCH_INTERVAL)
