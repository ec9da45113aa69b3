"""Plain text: text formats only, with nothing to install. The fallback when Tika is absent.

Files are read and decoded in pieces, and reading stops once ``MAX_EXTRACTED_TEXT_LENGTH`` is
passed, so the text of a large file is never held whole.
"""

from __future__ import annotations

import codecs
import re
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import ClassVar

from ...constants import ErrorCode
from .base import ExtractionError, ExtractionResult, ExtractionSource, TextExtractor, describe_type

__all__ = ["PlainTextExtractor", "decode_text", "html_to_text", "is_text_type", "read_text"]

TEXT_TYPES = frozenset({"application/json", "application/xml", "application/x-ndjson"})


def is_text_type(content_type: str) -> bool:
    content_type = (content_type or "").split(";")[0].strip().lower()
    return content_type.startswith("text/") or content_type in TEXT_TYPES


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding: a byte-order mark, else UTF-8, else Windows-1252."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data.decode(encoding, errors="replace")
            break
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # cp1252 leaves five bytes undefined; those become U+FFFD rather than failing.
            text = data.decode("cp1252", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _TextCollector(HTMLParser):
    # Elements whose content is not text a reader sees.
    SKIP = frozenset({"script", "style", "template", "noscript", "svg", "head"})
    BLOCKS = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "ul",
            "ol",
            "tr",
            "table",
            "section",
            "article",
            "header",
            "footer",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "pre",
            "blockquote",
            "title",
            "dt",
            "dd",
            "hr",
            "main",
            "nav",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.title: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self.skip_depth += 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP and self.skip_depth:
            self.skip_depth -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self.skip_depth:
            self.parts.append(data)


class _HtmlText:
    """The visible text of an HTML document fed in pieces (title first), without scripts and styles."""

    def __init__(self) -> None:
        self.collector = _TextCollector()
        self.size = 0

    def feed(self, html: str) -> None:
        before = len(self.collector.parts)
        self.collector.feed(html)
        self.size += sum(len(part) for part in self.collector.parts[before:])

    def text(self) -> str:
        body = "".join(self.collector.parts)
        lines = [re.sub(r"[ \t\f\v]+", " ", line).strip() for line in body.split("\n")]
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
        title = " ".join("".join(self.collector.title).split())
        return f"{title}\n\n{text}" if title and not text.startswith(title) else text


def html_to_text(html: str, *, deadline: float | None = None) -> str:
    """The visible text of an HTML document (title first), without scripts and styles.

    With ``deadline`` (a ``time.monotonic()`` value) it stops with a ``timeout`` ExtractionError
    when parsing runs past it."""
    reader = _HtmlText()
    step = 256 * 1024
    for start in range(0, len(html), step):
        if deadline is not None and time.monotonic() > deadline:
            raise _timeout()
        reader.feed(html[start : start + step])
    reader.collector.close()
    return reader.text()


def _timeout() -> ExtractionError:
    return ExtractionError(
        "Reading the text took too long and was stopped. Try a smaller file.", code=ErrorCode.TIMEOUT
    )


#: Bytes read (and decoded) at a time.
CHUNK_SIZE = 256 * 1024


class _Utf8Failed(Exception):
    """The bytes are not UTF-8 after all: read again as Windows-1252."""


def _pieces(source: ExtractionSource, encoding: str | None, deadline: float) -> Iterator[str]:
    """The text of ``source`` in pieces with line ends made ``\\n``: in the encoding of its byte-order
    mark, else UTF-8 (``encoding`` None; :class:`_Utf8Failed` when it is not), else ``encoding``."""
    with source.open() as handle:
        first = handle.read(CHUNK_SIZE)
        errors = "replace"
        if encoding is None:
            for bom, name in _BOMS:
                if first.startswith(bom):
                    encoding = name
                    break
            else:
                encoding, errors = "utf-8", "strict"
        decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
        carry = ""
        data = first
        while True:
            if time.monotonic() > deadline:
                raise _timeout()
            try:
                piece = carry + decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                raise _Utf8Failed from exc
            # A "\r" at the end may be the first half of "\r\n": keep it for the next piece.
            carry = piece[-1:] if piece.endswith("\r") and data else ""
            piece = piece[: len(piece) - len(carry)].replace("\r\n", "\n").replace("\r", "\n")
            if piece:
                yield piece
            if not data:
                return
            data = handle.read(CHUNK_SIZE)


def read_text(source: ExtractionSource, *, max_length: int, deadline: float, html: bool = False) -> tuple[str, bool]:
    """The text of ``source`` (the visible text for HTML), at most ``max_length`` characters, and
    whether it was cut. Reading stops once the limit is passed: a large file never becomes one
    large string. Encoding as in :func:`decode_text`."""
    for encoding in (None, "cp1252"):
        try:
            return _read_limited(_pieces(source, encoding, deadline), max_length=max_length, html=html)
        except _Utf8Failed:
            continue
    raise AssertionError("cp1252 with errors='replace' decodes any bytes")  # pragma: no cover


def _read_limited(pieces: Iterator[str], *, max_length: int, html: bool) -> tuple[str, bool]:
    if not html:
        parts: list[str] = []
        size = 0
        for piece in pieces:
            parts.append(piece)
            size += len(piece)
            if size > max_length:
                return "".join(parts)[:max_length], True
        return "".join(parts), False
    reader = _HtmlText()
    check_at = max_length
    for piece in pieces:
        reader.feed(piece)
        # The collected text shrinks when blank runs are folded: fold it when it may have passed
        # the limit, and stop reading once it really has.
        if reader.size > check_at:
            text = reader.text()
            if len(text) > max_length:
                return text[:max_length], True
            check_at = reader.size * 2
    reader.collector.close()
    text = reader.text()
    return text[:max_length], len(text) > max_length


class PlainTextExtractor(TextExtractor):
    """Reads text files (plain text, Markdown, CSV, JSON, HTML) in Python.

    PDFs, Office documents and images fail with a clear reason; use the embedded Tika or Tika
    server extractor for those.
    """

    name: ClassVar[str] = "plain"

    def get_version(self) -> str:
        return f"python-{sys.version_info.major}.{sys.version_info.minor}"

    def extract(self, source: ExtractionSource, *, timeout: float, max_length: int) -> ExtractionResult:
        content_type = (source.content_type or "").split(";")[0].strip().lower()
        if not is_text_type(content_type):
            raise ExtractionError(
                f"This server can read text only from text files, not from {describe_type(content_type)} files.",
                code=ErrorCode.UNSUPPORTED,
            )
        text, truncated = read_text(
            source,
            max_length=max_length,
            deadline=time.monotonic() + timeout,
            html=content_type in ("text/html", "application/xhtml+xml"),
        )
        return ExtractionResult(text=text, truncated=truncated, metadata={"content_type": content_type})
