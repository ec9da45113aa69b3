"""What a failed Tika parse means for people: Java exceptions translated into ExtractionErrors.

The codes and messages are the ones docs/files.md lists (``encrypted``, ``corrupt``,
``unsupported``, ``too_complex`` ...); the Java details go to the log.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ...constants import ErrorCode
from ._ocr_guard import MARKER as OCR_GUARD_MARKER
from .base import ExtractionError, describe_type
from .limits import ExtractionLimits, too_complex
from .tika_jvm import java

__all__ = ["translate"]

logger = logging.getLogger("django_ai.conversations.extraction")

_ENCRYPTED = frozenset(
    {
        "org.apache.tika.exception.EncryptedDocumentException",
        "org.apache.pdfbox.pdmodel.encryption.InvalidPasswordException",
        "org.apache.poi.EncryptedDocumentException",
    }
)
_EMPTY = frozenset({"org.apache.tika.exception.ZeroByteFileException"})
_UNSUPPORTED = frozenset({"org.apache.tika.exception.UnsupportedFormatException"})
_TOO_BIG = frozenset({"java.lang.OutOfMemoryError", "org.apache.poi.util.RecordFormatException"})


def _java_chain(error: BaseException) -> list[Any]:
    """A Java exception and its causes (empty for Python exceptions)."""
    chain: list[Any] = []
    throwable = java().JClass("java.lang.Throwable")
    current: Any = error
    while current is not None and isinstance(current, throwable) and len(chain) < 20:
        chain.append(current)
        cause = current.getCause()
        current = None if cause is None or cause is current else cause
    return chain


_GUARD_REFUSAL = re.compile(re.escape(OCR_GUARD_MARKER) + r" too-large (\d+)x(\d+)")
_BAD_EXIT = re.compile(r"TesseractOCRParser bad exit value (\d+)")


def translate(error: BaseException, content_type: str, limits: ExtractionLimits) -> ExtractionError:
    """The failure to store for a parse that raised ``error``; a Python-side error (not the
    file's fault, a bug to see) is raised again."""
    chain = _java_chain(error)
    if not chain:
        # A Python-side failure (JPype, the thread): not the file's fault, a bug to see.
        raise error
    names = {str(e.getClass().getName()) for e in chain}
    said = "\n".join(str(e.getMessage() or "") for e in chain)
    kind = describe_type(content_type)
    logger.info("Embedded Tika could not read a %s file: %s (%s)", kind, error, " <- ".join(sorted(names)))
    if names & _ENCRYPTED:
        return ExtractionError(
            "The file is password-protected, so its text cannot be read. Upload a copy without a password.",
            code=ErrorCode.ENCRYPTED,
        )
    if names & _EMPTY:
        return ExtractionError("The file is empty.", code=ErrorCode.EMPTY_FILE)
    if names & _UNSUPPORTED:
        return ExtractionError(f"Text cannot be read from {kind} files.", code=ErrorCode.UNSUPPORTED)
    refused = _GUARD_REFUSAL.search(said)
    if refused:
        width, height = int(refused.group(1)), int(refused.group(2))
        return too_complex(
            f"The image is too large to read its text: {width:,} x {height:,} pixels, more than the "
            f"{limits.ocr_max_pixels / 1e6:g} million this server reads."
        )
    bad_exit = int(exited.group(1)) if (exited := _BAD_EXIT.search(said)) else 0
    if bad_exit >= 128:
        # tesseract killed by a signal: over its address-space (an allocation failed) or CPU limit.
        return too_complex("Reading the text of this image needed more memory or time than this server allows.")
    if bad_exit in (126, 127):
        logger.error("tesseract could not be started (exit status %d): %s", bad_exit, said[-500:])
        return ExtractionError("Text recognition (OCR) could not run on this server.", code=ErrorCode.OCR_UNAVAILABLE)
    if "zip bomb" in said.lower():
        return too_complex(
            f"The file is not read: a part of it unpacks to more than {limits.max_compression_ratio:g} times "
            "its packed size, as in a zip bomb."
        )
    if names & _TOO_BIG:
        return ExtractionError(
            "The file is too large or too complex to read on this server.", code=ErrorCode.TOO_COMPLEX
        )
    return ExtractionError(
        f"The file seems to be damaged or is not a valid {kind} file, so its text cannot be read.",
        code=ErrorCode.CORRUPT,
    )
