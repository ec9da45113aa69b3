"""The extractor interface: what an extractor is given, what it returns, how it fails.

:class:`ExtractionError` is defined in ``conversations/exceptions.py`` with every other error and
re-exported here, where extractors import it."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

from ...exceptions import ExtractionError

__all__ = [
    "ExtractionError",
    "ExtractionResult",
    "ExtractionSource",
    "TextExtractor",
    "describe_type",
]


# Short names people know, for messages; anything else is shown as its MIME type.
_TYPE_NAMES = {
    "application/pdf": "PDF",
    "application/msword": "Word",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "Excel",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "PowerPoint",
    "application/vnd.oasis.opendocument.text": "OpenDocument text",
    "application/rtf": "RTF",
    "text/html": "HTML",
    "text/plain": "text",
    "text/csv": "CSV",
    "text/markdown": "Markdown",
    "application/json": "JSON",
}


def describe_type(content_type: str) -> str:
    """A short name for a MIME type, for messages people read (``"PDF"``, ``"PNG image"``)."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if content_type in _TYPE_NAMES:
        return _TYPE_NAMES[content_type]
    if content_type.startswith("image/"):
        return f"{content_type[6:].upper()} image"
    return content_type or "unknown"


@dataclass
class ExtractionSource:
    """The file to extract from, independent of where it is stored.

    ``opener`` returns a fresh binary file object each time; ``path`` is a local path when the
    storage has one (FileSystemStorage), so extractors that need random access avoid a copy.
    """

    filename: str
    content_type: str
    size: int
    opener: Callable[[], IO[bytes]]
    path: str | None = None

    @classmethod
    def from_bytes(cls, data: bytes, *, filename: str = "upload", content_type: str = "") -> ExtractionSource:
        return cls(filename=filename, content_type=content_type, size=len(data), opener=lambda: io.BytesIO(data))

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, filename: str | None = None, content_type: str = ""
    ) -> ExtractionSource:
        path = os.fspath(path)
        return cls(
            filename=filename or os.path.basename(path),
            content_type=content_type,
            size=os.path.getsize(path),
            opener=lambda: open(path, "rb"),
            path=path,
        )

    def open(self) -> IO[bytes]:
        return self.opener()

    def read(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    @contextlib.contextmanager
    def local_path(self) -> Iterator[str]:
        """A local file path for the content: the stored file itself, or a temporary copy."""
        if self.path and os.path.exists(self.path):
            yield self.path
            return
        suffix = os.path.splitext(self.filename)[1][:16]
        fd, tmp = tempfile.mkstemp(prefix="django-ai-extract-", suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as out, self.open() as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


@dataclass
class ExtractionResult:
    """What an extractor found: the text (possibly cut at ``max_length``) and a few facts."""

    text: str
    truncated: bool = False
    #: Small JSON-safe facts: detected ``content_type``, ``pages``, whether ``ocr`` ran ...
    metadata: dict[str, Any] = field(default_factory=dict)


class TextExtractor:
    """Base class of text extractors, selected with ``DJANGO_AI['TEXT_EXTRACTOR']``.

    Subclass it to plug in another engine (a cloud OCR service, a different parser): implement
    ``extract`` and, when the engine needs something installed, ``missing_requirements``.
    ``extract`` runs in a background task, never in agent code; it must honour ``timeout``
    (seconds) and raise :class:`ExtractionError` with a plain-words message for files it cannot
    read. Any other exception is treated as a bug: logged, and the file is marked failed with a
    generic reason.
    """

    #: Stored on each File as ``extractor``.
    name: ClassVar[str] = "custom"

    @classmethod
    def missing_requirements(cls) -> list[str]:
        """What must be installed before this extractor can run (empty when it is ready).

        Each entry names the missing part and how to add it; the system check shows them.
        Override when the extractor depends on packages, programs or services.
        """
        return []

    def get_version(self) -> str:
        """The engine's version, stored on each File as ``extractor_version``."""
        return ""

    def extract(self, source: ExtractionSource, *, timeout: float, max_length: int) -> ExtractionResult:
        """Return the text of ``source``; stop after ``timeout`` seconds; keep at most
        ``max_length`` characters (set ``truncated`` when text was cut)."""
        raise NotImplementedError(f"{type(self).__name__} must implement extract(source, *, timeout, max_length).")
