"""Tika server: send files to a running Apache Tika server (``TIKA_SERVER_ENDPOINT``) through
the ``tika`` client (``pip install 'django-ai-first[tika-server]'``).

The ``tika`` package can download a Tika jar and start a server by itself when it cannot reach
one; that never happens here: the client is switched to client-only mode before every call, so
an unreachable server is a failure with a clear reason, not a surprise download.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from types import ModuleType
from typing import Any, ClassVar
from urllib.parse import quote

from ...conf import ai_settings
from ...constants import ErrorCode
from .base import ExtractionError, ExtractionResult, ExtractionSource, TextExtractor, describe_type

__all__ = ["TikaServerExtractor", "tika_client"]

logger = logging.getLogger("django_ai.conversations.extraction")


def tika_client() -> Any:
    """The ``tika.tika`` module, set to client-only mode (no jar download, no server start)."""
    # At import the client adds a log file in the temp folder unless TIKA_LOG_FILE is empty.
    os.environ.setdefault("TIKA_LOG_FILE", "")
    os.environ.setdefault("TIKA_CLIENT_ONLY", "True")
    # The tika client is an optional dependency (the 'tika-server' extra): imported on first use.
    from tika import tika as client

    client.TikaClientOnly = True
    return client


def _requests() -> ModuleType:
    """``requests``, which comes with the tika client."""
    # An optional dependency with the tika client (the 'tika-server' extra): imported on first use.
    import requests

    return requests


def _within(timeout: float, call: Any) -> Any:
    """``call()`` on a daemon thread, waited for at most ``timeout`` seconds in all.

    requests' read timeout applies to each read of the socket, so a server that sends its answer
    slowly, a little at a time, could take far longer than ``timeout``; this is the total limit.
    A call still running then is left to end at its next read timeout.
    """
    requests = _requests()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="django-ai-tika-server", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise requests.Timeout(f"the Tika server's answer took longer than {timeout:g} s in all")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class TikaServerExtractor(TextExtractor):
    """Extract through a Tika server's ``/rmeta/text`` endpoint (text of the file and of the
    files inside it, OCR included when the server has tesseract).

    Use it when Tika runs as its own service (e.g. the ``apache/tika`` container); set
    ``TIKA_SERVER_ENDPOINT`` to its URL, e.g. ``"http://tika:9998"``.
    """

    name: ClassVar[str] = "tika-server"

    def __init__(self, *, endpoint: str | None = None) -> None:
        self.endpoint = (endpoint or ai_settings.TIKA_SERVER_ENDPOINT or "").rstrip("/")

    @classmethod
    def missing_requirements(cls) -> list[str]:
        missing = []
        if importlib.util.find_spec("tika") is None:
            missing.append("the 'tika' client package: pip install 'django-ai-first[tika-server]'")
        if not ai_settings.TIKA_SERVER_ENDPOINT:
            missing.append("the Tika server's URL: set DJANGO_AI['TIKA_SERVER_ENDPOINT'], e.g. 'http://localhost:9998'")
        return missing

    def _require_endpoint(self) -> str:
        if not self.endpoint:
            raise ExtractionError(
                "Text extraction is not available on this server.", code=ErrorCode.EXTRACTOR_UNAVAILABLE
            ) from RuntimeError("TikaServerExtractor needs DJANGO_AI['TIKA_SERVER_ENDPOINT'].")
        return self.endpoint

    def get_version(self) -> str:
        """The server's version (``GET /version``), e.g. ``"Apache Tika 3.2.3"`` -> ``"3.2.3"``."""
        requests = _requests()
        try:
            response = requests.get(self._require_endpoint() + "/version", timeout=10)
            response.raise_for_status()
        except requests.RequestException:
            logger.warning("Could not read the Tika server's version", exc_info=True)
            return ""
        return response.text.replace("Apache Tika", "").strip()[:50]

    def extract(self, source: ExtractionSource, *, timeout: float, max_length: int) -> ExtractionResult:
        requests = _requests()
        client = tika_client()
        endpoint = self._require_endpoint()
        headers = {
            # The file name helps the server's type detection; the client-side sniffed type too.
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(source.filename)}",
            # Per-request TesseractOCRConfig and write limit (tika-server's header conventions).
            "X-Tika-OCRlanguage": str(ai_settings.OCR_LANGUAGE),
            "X-Tika-OCRskipOcr": "false" if ai_settings.OCR_ENABLED else "true",
            "X-Tika-OCRtimeoutSeconds": str(max(1, int(timeout))),
            "writeLimit": str(max_length),
        }
        if source.content_type:
            headers["Content-Type"] = source.content_type
        try:
            with source.open() as body:
                status, raw = _within(
                    timeout,
                    lambda: client.callServer(
                        "put",
                        endpoint,
                        "/rmeta/text",
                        body,
                        {**headers, "Accept": "application/json"},
                        False,
                        rawResponse=True,
                        requestOptions={"timeout": (min(10.0, timeout), timeout), "verify": True},
                    ),
                )
        except requests.Timeout as exc:
            raise ExtractionError(
                f"Reading the text took longer than {timeout:g} seconds and was stopped. Try a smaller file.",
                code=ErrorCode.TIMEOUT,
            ) from exc
        except requests.RequestException as exc:
            logger.warning("The Tika server at %s could not be reached: %s", endpoint, exc)
            raise ExtractionError(
                "The text extraction service is not reachable right now. Try again later.",
                code=ErrorCode.EXTRACTOR_UNAVAILABLE,
            ) from exc
        return self._read_response(status, raw, source, max_length)

    def _read_response(self, status: int, raw: bytes, source: ExtractionSource, max_length: int) -> ExtractionResult:
        kind = describe_type(source.content_type)
        if status == 415:
            raise ExtractionError(f"Text cannot be read from {kind} files.", code=ErrorCode.UNSUPPORTED)
        if status == 422:
            # Tika server answers 422 for encrypted documents and for ones it cannot process.
            text = raw.decode("utf-8", errors="replace").lower()
            if "encrypt" in text or "password" in text:
                raise _encrypted()
            raise _corrupt(kind)
        if status == 503:
            raise ExtractionError(
                "The text extraction service is busy. Try again later.", code=ErrorCode.EXTRACTOR_UNAVAILABLE
            )
        if status != 200:
            logger.warning("The Tika server answered %s: %s", status, raw[:500])
            raise ExtractionError(
                "The text extraction service failed to read this file.", code=ErrorCode.EXTRACTION_FAILED
            )
        try:
            documents = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExtractionError(
                "The text extraction service sent an answer that could not be read.", code=ErrorCode.EXTRACTION_FAILED
            ) from exc
        if not isinstance(documents, list) or not documents:
            raise ExtractionError(
                "The text extraction service sent an answer that could not be read.", code=ErrorCode.EXTRACTION_FAILED
            )
        container = documents[0] if isinstance(documents[0], dict) else {}
        problem = str(container.get("X-TIKA:EXCEPTION:container_exception") or "")
        truncated = any(
            str(d.get("X-TIKA:EXCEPTION:write_limit_reached", "")).lower() == "true"
            for d in documents
            if isinstance(d, dict)
        )
        if problem and "WriteLimitReached" not in problem:
            logger.info("The Tika server could not read a %s file: %s", kind, problem.splitlines()[0][:300])
            if "EncryptedDocumentException" in problem or "InvalidPasswordException" in problem:
                raise _encrypted()
            if "ZeroByteFileException" in problem:
                raise ExtractionError("The file is empty.", code=ErrorCode.EMPTY_FILE)
            raise _corrupt(kind)
        text = "".join(str(d.get("X-TIKA:content") or "") for d in documents if isinstance(d, dict))
        facts: dict[str, Any] = {}
        detected = container.get("Content-Type")
        if isinstance(detected, str):
            facts["content_type"] = detected.split(";")[0].strip()
        pages = container.get("xmpTPg:NPages")
        if isinstance(pages, (str, int)) and str(pages).isdigit():
            facts["pages"] = int(pages)
        parsed_by = [p for d in documents if isinstance(d, dict) for p in _as_list(d.get("X-TIKA:Parsed-By"))]
        facts["ocr"] = any("TesseractOCRParser" in str(p) for p in parsed_by)
        if len(text) > max_length:
            text, truncated = text[:max_length], True
        return ExtractionResult(text=text, truncated=truncated, metadata=facts)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _encrypted() -> ExtractionError:
    return ExtractionError(
        "The file is password-protected, so its text cannot be read. Upload a copy without a password.",
        code=ErrorCode.ENCRYPTED,
    )


def _corrupt(kind: str) -> ExtractionError:
    return ExtractionError(
        f"The file seems to be damaged or is not a valid {kind} file, so its text cannot be read.",
        code=ErrorCode.CORRUPT,
    )
