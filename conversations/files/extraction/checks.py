"""System checks: which extractor will run, and what is missing for a better one.

Errors (a configured extractor that cannot run, a bad isolation value) are reported by every
``manage.py check``. What is merely missing for documents (``W020``: no Tika, only text files are
read; ``W021``: no tesseract, no OCR) is a deployment check (``manage.py check --deploy``): a project
that never receives a document should not see it on every ``migrate`` and ``runserver``. When a
document does arrive and cannot be read for that reason, the process logs the same warning once
(:func:`warn_once_no_document_extractor`, called by the extraction task: the place that knows a
document was refused, so that the extractors need not know about each other).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from ...conf import ai_settings
from .base import TextExtractor
from .embedded import EmbeddedTikaExtractor
from .plain import PlainTextExtractor
from .selection import best_available_extractor
from .server import TikaServerExtractor
from .tika_engine import tesseract_version

logger = logging.getLogger("django_ai.conversations.extraction")


@checks.register("django_ai")
def check_extraction(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    if not isinstance(getattr(settings, "DJANGO_AI", None) or {}, dict):
        return []  # reported by check_settings (django_ai.E001)
    isolation = ai_settings.raw("EXTRACTION_ISOLATION")
    if isolation not in ("subprocess", "none"):
        messages.append(
            checks.Error(
                f"DJANGO_AI['EXTRACTION_ISOLATION'] is {isolation!r}.",
                hint="Use 'subprocess' (embedded Tika in an extraction process of its own, within "
                "EXTRACTION_MEMORY_LIMIT) or 'none' (in the process that extracts, e.g. on dedicated workers).",
                id="django_ai.E023",
            )
        )
    configured = ai_settings.raw("TEXT_EXTRACTOR")
    if configured is not None:
        if not isinstance(configured, str):
            return []  # reported by check_settings (django_ai.E002)
        try:
            cls = import_string(configured)
        except ImportError:
            return []  # reported by check_settings (django_ai.E002)
        if not isinstance(cls, type) or not callable(getattr(cls, "extract", None)):
            return [
                checks.Error(
                    f"DJANGO_AI['TEXT_EXTRACTOR'] = {configured!r} is not an extractor class.",
                    hint="Point it at a subclass of django_ai.conversations.files.extraction.TextExtractor.",
                    id="django_ai.E020",
                )
            ]
        missing = cls.missing_requirements() if issubclass(cls, TextExtractor) else []
        if missing:
            messages.append(
                checks.Error(
                    f"DJANGO_AI['TEXT_EXTRACTOR'] is {cls.__name__}, which cannot run here: it needs "
                    + "; ".join(missing)
                    + ".",
                    hint="Install what is listed, or remove TEXT_EXTRACTOR to use the best extractor available.",
                    id="django_ai.E021",
                )
            )
    else:
        if ai_settings.raw("TIKA_SERVER_ENDPOINT"):
            missing = TikaServerExtractor.missing_requirements()
            if missing:
                messages.append(
                    checks.Error(
                        "DJANGO_AI['TIKA_SERVER_ENDPOINT'] is set but the Tika server extractor needs "
                        + "; ".join(missing)
                        + ".",
                        hint="pip install 'django-ai-first[tika-server]'",
                        id="django_ai.E022",
                    )
                )
    return messages


def _document_extractor_warnings() -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    if not isinstance(getattr(settings, "DJANGO_AI", None) or {}, dict):
        return []
    configured = ai_settings.raw("TEXT_EXTRACTOR")
    if configured is not None:
        # The project chose its extractor (check_extraction reports one that cannot run).
        try:
            cls = import_string(configured) if isinstance(configured, str) else None
        except ImportError:
            cls = None
    else:
        cls = best_available_extractor()
    if configured is None and cls is PlainTextExtractor:
        needs = EmbeddedTikaExtractor.missing_requirements()
        messages.append(
            checks.Warning(
                "No document text extractor is available: only text files (plain text, Markdown, CSV, "
                "JSON, HTML) will be read; PDFs, Office documents and images will fail extraction.",
                hint="For embedded Apache Tika install "
                + "; ".join(needs)
                + ". Or run a Tika server and set DJANGO_AI['TIKA_SERVER_ENDPOINT'] "
                "(pip install 'django-ai-first[tika-server]').",
                id="django_ai.W020",
            )
        )
    if cls is EmbeddedTikaExtractor and ai_settings.raw("OCR_ENABLED") and tesseract_version() is None:
        messages.append(
            checks.Warning(
                "tesseract is not installed: text in images and scanned PDFs will not be read (no OCR).",
                hint="Install tesseract (Debian/Ubuntu: apt-get install tesseract-ocr; macOS: brew install "
                "tesseract), or set DJANGO_AI['OCR_ENABLED'] = False to silence this.",
                id="django_ai.W021",
            )
        )
    return messages


@checks.register("django_ai", deploy=True)
def check_document_extraction(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return _document_extractor_warnings()


_warned_no_document_extractor = False


def warn_once_no_document_extractor() -> None:
    """Log W020 once per process, when a document was refused because only the plain-text
    extractor is available (and the project did not choose it). The extraction task calls it
    for every file refused as ``unsupported``; it logs only when W020 applies."""
    global _warned_no_document_extractor
    if _warned_no_document_extractor:
        return
    warnings = [m for m in _document_extractor_warnings() if m.id == "django_ai.W020"]
    if not warnings:
        return
    _warned_no_document_extractor = True
    logger.warning("%s %s (%s)", warnings[0].msg, warnings[0].hint, warnings[0].id)
