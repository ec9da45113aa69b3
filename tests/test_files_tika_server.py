"""The Tika server extractor, through the real ``tika`` client and real HTTP.

No Tika server can run on the test machines, so most tests talk to a local stub HTTP server that
replays recorded answers (tests/fixtures/files/tika_server/recordings.json; how they were made is
in record.py beside them: the Tika 3.3.1 components behind tika-server's ``PUT /rmeta/text``).
Status answers that a recording cannot hold (422, 415, 503, 500, a slow server) are set per test.
``test_live_tika_server`` runs against a real server when TIKA_SERVER_ENDPOINT is set.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_ai.conversations.constants import ExtractionStatus
from django_ai.conversations.files.extraction import ExtractionError, ExtractionSource, TikaServerExtractor
from django_ai.conversations.files.extraction.tasks import run_extraction
from django_ai.conversations.testing import FileFactory
from tests.fixtures.files import generate

FILES = Path(generate.__file__).parent
RECORDINGS = json.loads((FILES / "tika_server" / "recordings.json").read_text())
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


class StubTikaServer:
    """Replays recorded answers keyed by method, path and body hash; remembers what it got."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.override: tuple[int, str] | None = None
        self.delay = 0.0
        self.trickle = 0.0  # seconds between the answer's bytes (each read well within the timeout)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, method: str) -> None:
                body = self._body()
                stub.requests.append({"method": method, "path": self.path, "headers": dict(self.headers), "body": body})
                if stub.delay:
                    time.sleep(stub.delay)
                if stub.override is not None and method == "PUT":
                    status, text = stub.override
                    payload, content_type = text.encode(), "text/plain"
                else:
                    digest = hashlib.sha256(body).hexdigest()
                    match = next(
                        (
                            r["response"]
                            for r in RECORDINGS
                            if r["request"]["method"] == method
                            and r["request"]["path"] == self.path
                            and r["request"]["sha256"] == digest
                        ),
                        None,
                    )
                    if match is None:
                        status, payload, content_type = 404, b"no recording for this request", "text/plain"
                    else:
                        status, payload, content_type = match["status"], match["body"].encode(), match["content_type"]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if stub.trickle and method == "PUT":
                    for n in range(len(payload)):
                        try:
                            self.wfile.write(payload[n : n + 1])
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            return
                        time.sleep(stub.trickle)
                    return
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_PUT(self) -> None:
                self._answer("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubTikaServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    with StubTikaServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_jar_download(monkeypatch):
    """The client must never fetch a jar or start a server: fail loudly if it tries."""
    from django_ai.conversations.files.extraction.server import tika_client

    client = tika_client()

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the tika client tried to download a jar or start a Tika server")

    monkeypatch.setattr(client, "checkTikaServer", forbidden)
    monkeypatch.setattr(client, "getRemoteJar", forbidden)
    monkeypatch.setattr(client, "startServer", forbidden)


def extract(url: str, name: str, content_type: str, *, timeout: float = 30, max_length: int = 10_000):
    extractor = TikaServerExtractor(endpoint=url)
    return extractor.extract(
        ExtractionSource.from_path(FILES / name, content_type=content_type), timeout=timeout, max_length=max_length
    )


def test_pdf_through_the_server(stub):
    result = extract(stub.url, "report.pdf", "application/pdf")
    assert generate.PDF_TEXT in " ".join(result.text.split())
    assert result.metadata["content_type"] == "application/pdf"
    assert result.truncated is False
    (request,) = stub.requests
    assert request["method"] == "PUT" and request["path"] == "/rmeta/text"
    assert request["body"] == (FILES / "report.pdf").read_bytes()
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/pdf"
    assert headers["content-disposition"] == "attachment; filename*=UTF-8''report.pdf"
    assert headers["writelimit"] == "10000"
    assert headers["x-tika-ocrlanguage"] == "eng"
    assert headers["x-tika-ocrskipocr"] == "false"


def test_docx_and_ocr_image_through_the_server(stub):
    docx = extract(stub.url, "notes.docx", DOCX)
    assert generate.DOCX_TEXT in docx.text
    image = extract(stub.url, "invoice.png", "image/png")
    assert "INVOICE NUMBER 4711" in image.text
    assert image.metadata["ocr"] is True


def test_version_from_the_server(stub):
    assert TikaServerExtractor(endpoint=stub.url).get_version() == "3.3.1"


@pytest.mark.parametrize(("name", "code"), [("encrypted.pdf", "encrypted"), ("corrupt.pdf", "corrupt")])
def test_parse_failures_reported_in_the_metadata(stub, name, code):
    with pytest.raises(ExtractionError) as info:
        extract(stub.url, name, "application/pdf")
    assert info.value.code == code


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (422, "org.apache.tika.exception.EncryptedDocumentException: document is encrypted", "encrypted"),
        (422, "Unprocessable Entity", "corrupt"),
        (415, "Unsupported Media Type", "unsupported"),
        (503, "Service Unavailable", "extractor_unavailable"),
        (500, "java.lang.NullPointerException", "extraction_failed"),
        (200, "this is not json", "extraction_failed"),
    ],
)
def test_error_statuses(stub, status, body, code):
    stub.override = (status, body)
    with pytest.raises(ExtractionError) as info:
        extract(stub.url, "report.pdf", "application/pdf")
    assert info.value.code == code
    assert "java" not in info.value.message.lower()


def test_unreachable_server_fails_with_reason_and_no_download():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ExtractionError) as info:
        extract(f"http://127.0.0.1:{port}", "report.pdf", "application/pdf")
    assert info.value.code == "extractor_unavailable"
    assert info.value.message == "The text extraction service is not reachable right now. Try again later."


@pytest.mark.parametrize(
    ("slowness", "timeout", "bound"),
    [
        # The server would answer after a minute; the call gives up at its timeout.
        ({"delay": 60}, 0.3, 30),
        # Every byte comes within the read timeout, the whole answer would take minutes: the
        # timeout holds for the whole exchange.
        ({"trickle": 0.05}, 1, 10),
    ],
    ids=["answers-late", "trickles"],
)
def test_a_slow_server_times_out(stub, slowness, timeout, bound):
    # The bound is far from both the timeout and the server's time (a busy machine may take
    # seconds), so only waiting for the answer fails it.
    for name, value in slowness.items():
        setattr(stub, name, value)
    started = time.monotonic()
    with pytest.raises(ExtractionError) as info:
        extract(stub.url, "report.pdf", "application/pdf", timeout=timeout)
    assert info.value.code == "timeout"
    assert time.monotonic() - started < bound


def test_text_longer_than_the_limit_is_cut(stub):
    result = extract(stub.url, "report.pdf", "application/pdf", max_length=12)
    assert result.truncated is True and len(result.text) == 12


@pytest.mark.django_db
def test_extraction_task_with_the_server_extractor(stub, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    config = {
        "TEXT_EXTRACTOR": "django_ai.conversations.files.extraction.TikaServerExtractor",
        "TIKA_SERVER_ENDPOINT": stub.url,
    }
    with override_settings(DJANGO_AI=config):
        file = FileFactory(content=(FILES / "notes.docx").read_bytes(), filename="notes.docx", content_type=DOCX)
        run_extraction(file.pk)
    file.refresh_from_db()
    assert file.extraction_status == ExtractionStatus.DONE
    assert file.extractor == "tika-server" and file.extractor_version == "3.3.1"
    assert generate.DOCX_TEXT in file.extracted_text


def test_default_choice_prefers_a_configured_server(stub):
    from django_ai.conversations.files.extraction import get_extractor

    with override_settings(DJANGO_AI={"TIKA_SERVER_ENDPOINT": stub.url}):
        extractor = get_extractor()
        assert isinstance(extractor, TikaServerExtractor) and extractor.endpoint == stub.url


@pytest.mark.skipif(
    not os.environ.get("TIKA_SERVER_ENDPOINT"), reason="set TIKA_SERVER_ENDPOINT to test against a live Tika server"
)
def test_live_tika_server():
    url = os.environ["TIKA_SERVER_ENDPOINT"]
    extractor = TikaServerExtractor(endpoint=url)
    assert extractor.get_version()
    result = extract(url, "report.pdf", "application/pdf")
    assert generate.PDF_TEXT in " ".join(result.text.split())
    with pytest.raises(ExtractionError) as info:
        extract(url, "encrypted.pdf", "application/pdf")
    assert info.value.code == "encrypted"
