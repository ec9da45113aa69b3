"""The extraction process's main program: ``python -m django_ai.conversations.files.extraction._child``.

Started by process.py (for isolated.py), never by people. It reads one frame of options (the engine's
:class:`~.EngineOptions` as a dict and how many files to parse at a time), starts the
JVM, answers ``{"ready": true, ...}`` (or ``{"ready": false, "code", "message"}`` and ends), then
parses the files it is sent, each on a pool thread, and answers each by its ``id`` with the text
or an error, plus how many parses are left behind on Java threads. It reads no Django settings.

When its stdin ends (the process that started it has gone or closes it), it ends at once with
everything it started: the tesseract runs are in its process group.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import tempfile
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from ...constants import ErrorCode
from .base import ExtractionError
from .frames import read_frame, write_frame
from .tika_engine import EngineOptions, start_engine
from .tika_jvm import parses_left_behind


def _answer(engine: Any, frame: dict[str, Any]) -> dict[str, Any]:
    try:
        result = engine.parse(
            frame["path"],
            filename=frame["filename"],
            content_type=frame["content_type"],
            timeout=float(frame["timeout"]),
            max_length=int(frame["max_length"]),
            ocr_enabled=bool(frame["ocr_enabled"]),
            ocr_language=str(frame["ocr_language"]),
        )
        answer: dict[str, Any] = {"text": result.text, "truncated": result.truncated, "metadata": result.metadata}
    except ExtractionError as exc:
        answer = {"error": {"code": exc.code, "message": exc.message}}
    except Exception:  # noqa: BLE001 - a bug: its traceback goes back to be logged there
        answer = {"bug": traceback.format_exc()}
    answer["id"] = frame["id"]
    answer["left_behind"] = parses_left_behind()
    return answer


def _end() -> None:
    # Take the tesseract runs along when this process leads its group (process.py starts it so).
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(0)


def _limit_files(options: EngineOptions) -> None:
    # No core dump of a JVM of hundreds of MB, and no temporary file (Tika spools embedded
    # documents to disk) larger than a container may unpack to: a write past it fails (EFBIG, as
    # SIGXFSZ is ignored) and the parse with it, instead of filling the disk. The JVM's crash
    # report goes to the temporary folder, not the working directory.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    size = max(options.limits.max_unpacked_size, 64 * 1024 * 1024)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    if hard == resource.RLIM_INFINITY or hard > size:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def main() -> None:
    # Frames go out on a copy of fd 1; fd 1 itself becomes stderr, so that whatever the JVM or a
    # library prints cannot break a frame.
    answers: IO[bytes] = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format=f"django-ai extraction process {os.getpid()}: %(levelname)s %(name)s: %(message)s",
    )
    setup = read_frame(requests)
    if setup is None:
        _end()
        return
    write_lock = threading.Lock()

    def send(payload: dict[str, Any]) -> None:
        with write_lock:
            try:
                write_frame(answers, payload)
            except OSError:
                _end()

    options = EngineOptions.from_dict(setup["options"])
    _limit_files(options)
    error_file = os.path.join(tempfile.gettempdir(), "django-ai-extraction-hs_err_%p.log")
    options = EngineOptions(
        limits=options.limits, jvm_args=(f"-XX:ErrorFile={error_file}", *options.jvm_args), ocr_guard=options.ocr_guard
    )
    try:
        engine = start_engine(options)
    except ExtractionError as exc:
        send({"ready": False, "code": exc.code, "message": exc.message})
        _end()
        return
    except Exception:
        logging.getLogger("django_ai.conversations.extraction").exception("Embedded Tika could not be set up")
        send(
            {
                "ready": False,
                "code": ErrorCode.EXTRACTOR_UNAVAILABLE,
                "message": "Text extraction is not available on this server.",
            }
        )
        _end()
        return
    send({"ready": True, "pid": os.getpid(), "tika_version": engine.tika_version, "ocr_version": engine.ocr_version})
    pool = ThreadPoolExecutor(
        max_workers=max(1, int(setup.get("concurrency") or 1)), thread_name_prefix="django-ai-parse"
    )

    def serve(frame: dict[str, Any]) -> None:
        send(_answer(engine, frame))

    while (frame := read_frame(requests)) is not None:
        pool.submit(serve, frame)
    _end()


if __name__ == "__main__":
    main()
