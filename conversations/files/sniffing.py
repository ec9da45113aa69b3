"""What an upload is, decided from its content: never from the client's file name or header.

Binary formats are recognised by their signature (the pure-Python ``filetype`` package, a core
dependency; no libmagic). Anything else must look like text (valid UTF-8, a UTF-16 byte-order
mark, or 8-bit text without control bytes), and is then named by its markup (``<!doctype html``)
or its extension (``.csv``, ``.md``, ``.json``). An executable named ``photo.png`` is an
executable.
"""

from __future__ import annotations

import codecs
import os

import filetype

from ..conf import ai_settings

__all__ = ["SNIFF_BYTES", "is_allowed_type", "sniff_content_type"]

#: How much of the content's start is looked at.
SNIFF_BYTES = 8192

_TEXT_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_TEXT_BY_EXTENSION = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".html": "text/html",
    ".htm": "text/html",
    ".json": "application/json",
}


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    if head.startswith(_TEXT_BOMS):
        return True
    if b"\x00" in head:
        return False
    sample = head
    # The head may end inside a multi-byte character: try without up to 3 trailing bytes.
    for cut in range(4):
        try:
            (sample[: len(sample) - cut] if cut else sample).decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    # Legacy 8-bit text: allow printable bytes and common whitespace only.
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls == 0


def sniff_content_type(head: bytes, filename: str = "") -> str:
    """The MIME type of content starting with ``head`` (the first few KB).

    Binary formats are recognised by their signature; text is recognised as text and then named
    by its extension (``.csv`` -> ``text/csv``) or markup (``<!doctype html``). Unknown binary
    content is ``application/octet-stream``. The client's claimed type is never used.
    """
    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime)
    if not _looks_like_text(head):
        return "application/octet-stream"
    stripped = head.lstrip(b"".join(_TEXT_BOMS) + b" \t\r\n").lower()
    if stripped.startswith((b"<!doctype html", b"<html")) or b"<html" in stripped[:1024]:
        return "text/html"
    if stripped.startswith(b"{\\rtf"):
        return "application/rtf"
    extension = os.path.splitext(filename or "")[1].lower()
    by_extension = _TEXT_BY_EXTENSION.get(extension)
    if by_extension == "application/json" and not stripped.startswith((b"{", b"[")):
        by_extension = None
    if by_extension == "text/html":
        by_extension = None  # HTML is recognised by its markup above, not by its name
    return by_extension or "text/plain"


def is_allowed_type(content_type: str) -> bool:
    """Whether ``ALLOWED_UPLOAD_TYPES`` accepts ``content_type`` (entries may be ``"image/*"``;
    None accepts every type)."""
    allowed = ai_settings.ALLOWED_UPLOAD_TYPES
    if allowed is None:
        return True
    content_type = content_type.lower()
    for entry in allowed:
        entry = str(entry).lower()
        if entry == content_type or (entry.endswith("/*") and content_type.startswith(entry[:-1])):
            return True
    return False
