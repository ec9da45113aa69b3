"""Plain text: text formats only, with nothing to install. The fallback when Tika is absent."""

from __future__ import annotations

import codecs
import re
import sys
import time
from html.parser import HTMLParser
from typing import ClassVar

from .base import ExtractionError, ExtractionResult, ExtractionSource, TextExtractor, describe_type

__all__ = ["PlainTextExtractor", "decode_text", "html_to_text", "is_text_type"]

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
            "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer",
            "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "title", "dt", "dd", "hr", "main", "nav",
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


def html_to_text(html: str, *, deadline: float | None = None) -> str:
    """The visible text of an HTML document (title first), without scripts and styles.

    With ``deadline`` (a ``time.monotonic()`` value) it stops with a ``timeout`` ExtractionError
    when parsing runs past it."""
    collector = _TextCollector()
    step = 256 * 1024
    for start in range(0, len(html), step):
        if deadline is not None and time.monotonic() > deadline:
            raise _timeout()
        collector.feed(html[start : start + step])
    collector.close()
    body = "".join(collector.parts)
    lines = [re.sub(r"[ \t\f\v]+", " ", line).strip() for line in body.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = " ".join("".join(collector.title).split())
    return f"{title}\n\n{text}" if title and not text.startswith(title) else text


def _timeout() -> ExtractionError:
    return ExtractionError(
        "Reading the text took too long and was stopped. Try a smaller file.", code="timeout"
    )


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
                code="unsupported",
            )
        deadline = time.monotonic() + timeout
        text = decode_text(source.read())
        if content_type in ("text/html", "application/xhtml+xml"):
            text = html_to_text(text, deadline=deadline)
        elif time.monotonic() > deadline:
            raise _timeout()
        truncated = len(text) > max_length
        return ExtractionResult(text=text[:max_length], truncated=truncated, metadata={"content_type": content_type})
