"""The documented alias of :mod:`django_ai.conversations.files.extraction`: it only re-exports.

``DJANGO_AI['TEXT_EXTRACTOR']`` values such as ``"django_ai.conversations.extraction.EmbeddedTikaExtractor"``
and ``from django_ai.conversations.extraction import TextExtractor`` (docs/files.md) keep working;
new code imports from ``django_ai.conversations.files.extraction``.
"""

from __future__ import annotations

from typing import Any

from ..files.extraction import *  # noqa: F403 - an alias re-exports the whole public surface
from ..files.extraction import __all__ as _public

__all__ = [*_public, "schedule_extraction"]  # noqa: F405 - schedule_extraction: from __getattr__ below


def __getattr__(name: str) -> Any:
    # schedule_extraction lives with the task, which imports the models: importing it here at the
    # top would make this alias unusable before Django's app registry is ready, as it was before.
    if name == "schedule_extraction":
        from ..files.extraction.tasks import schedule_extraction

        return schedule_extraction
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
