"""Extraction stays bounded whatever the file: bombs generated here (a PDF with one huge blank page,
Word files holding hundreds of MB of XML, an image of 400 million pixels) end ``failed`` with
``too_complex`` while the memory of this process and of the extraction process stays low; good
files still extract through the extraction process, and a killed extraction process is replaced.

Real parts: embedded Tika in its extraction process (the default isolation), real tesseract, the
database and the File rows; memory is read from /proc (the peak RSS, VmHWM, reset through
``clear_refs`` before each bomb).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_ai.conversations.constants import ExtractionStatus
from django_ai.conversations.files.extraction import (
    EmbeddedTikaExtractor,
    ExtractionError,
    ExtractionSource,
    PlainTextExtractor,
    _ocr_guard,
    isolated,
)
from django_ai.conversations.files.extraction.limits import ExtractionLimits, check_container
from django_ai.conversations.files.extraction.tasks import run_extraction
from django_ai.conversations.models import File
from django_ai.conversations.testing import FileFactory
from tests.fixtures.files import generate

FILES = Path(generate.__file__).parent
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MB = 1024 * 1024

#: What a bomb may add to the peak RSS of this (the web) process: the bomb's bytes and their
#: bookkeeping, never the parse.
TEST_PROCESS_GROWTH = 64 * MB
#: The peak RSS of the extraction process during a bomb: its JVM at work (about 200 MB), half the
#: 1 GiB EXTRACTION_MEMORY_LIMIT at most. Unbounded, in the web process, these files took 2.5 GB
#: (the PDF, with tesseract) and over 3 GB (the Word files) before they were stopped.
EXTRACTION_PROCESS_PEAK = 512 * MB

needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="reads memory from Linux's /proc")
needs_ocr = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract is not installed (CI installs it from scripts/apt-packages.txt)",
)

pytestmark = [pytest.mark.django_db, pytest.mark.once]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def blank_pdf(width: int, height: int) -> bytes:
    """A PDF of one blank page of ``width`` x ``height`` points (a few hundred bytes)."""
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 %d %d]>>" % (width, height),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


_CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    b'<Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_RELS = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    b'<Relationship Id="rId1" '
    b'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
    b'Target="word/document.xml"/></Relationships>'
)


def xml_docx(megabytes: int, *, claimed_size: int | None = None) -> bytes:
    """A Word file whose document.xml is ``megabytes`` MB of paragraphs (about 2.3 MB packed for
    300). With ``claimed_size`` its zip directory and local header say the part unpacks to that
    many bytes: a bomb that lies about its size."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _RELS)
        with archive.open("word/document.xml", "w") as part:
            part.write(
                b'<?xml version="1.0" encoding="UTF-8"?><w:document '
                b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
            )
            paragraph = b"<w:p><w:r><w:t>bomb</w:t></w:r></w:p>"
            block = paragraph * (MB // len(paragraph))
            for _ in range(megabytes):
                part.write(block)
            part.write(b"</w:body></w:document>")
    data = bytearray(buffer.getvalue())
    if claimed_size is not None:
        at = 0
        while (at := data.find(b"PK\x01\x02", at)) >= 0:
            name_length = struct.unpack_from("<H", data, at + 28)[0]
            if data[at + 46 : at + 46 + name_length] == b"word/document.xml":
                struct.pack_into("<L", data, at + 24, claimed_size)
                local = struct.unpack_from("<L", data, at + 42)[0]
                struct.pack_into("<L", data, local + 22, claimed_size)
            at += 4
    return bytes(data)


def blank_png(width: int, height: int, *, bits: int = 8) -> bytes:
    """A white grayscale PNG: 20,000 x 20,000 pixels pack into 450 KB. Made in a fraction of a
    second: one block of rows is deflated once, up to a full flush (after which nothing refers
    back), and repeated; the zlib checksum is computed over all the rows."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + b"\xff" * ((width * bits + 7) // 8)
    per_block = max(1, MB // len(row))
    block = row * per_block
    blocks, rest = divmod(height, per_block)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.compress(row * rest) + packer.flush(zlib.Z_FINISH)
    checksum = 1
    for _ in range(blocks):
        checksum = zlib.adler32(block, checksum)
    checksum = zlib.adler32(row * rest, checksum)
    stream = b"\x78\xda" + packed * blocks + tail + struct.pack(">I", checksum)
    header = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def peak_rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def reset_peak_rss(pid: int | str = "self") -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")


def extraction_process() -> int:
    """The pid of the running extraction process (started if need be)."""
    EmbeddedTikaExtractor().get_version()
    running = isolated.running_process()
    assert running is not None
    return running[0]


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def processes_in_group(group: int) -> dict[int, str]:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if int(fields[2]) == group and fields[0] != b"Z":
                found[int(name)] = stat[stat.find(b"(") + 1 : stat.rfind(b")")].decode()
    return found


def extract_row(data: bytes, filename: str, content_type: str) -> File:
    file = FileFactory(content=data, filename=filename, content_type=content_type)
    return run_extraction(file.pk)


def bounded_extraction(data: bytes, filename: str, content_type: str) -> File:
    """Extract a stored file of ``data`` and return it, checking that neither this process's peak
    RSS nor the extraction process's grew past their bounds, and that the extraction process is
    the same one afterwards (the bomb did not take it down)."""
    child = extraction_process()
    reset_peak_rss()
    reset_peak_rss(child)
    before = peak_rss()
    file = extract_row(data, filename, content_type)
    assert isolated.running_process()[0] == child
    assert peak_rss() - before < TEST_PROCESS_GROWTH
    assert peak_rss(child) < EXTRACTION_PROCESS_PEAK
    return file


@needs_proc
def test_a_pdf_with_a_huge_blank_page_fails_as_too_complex():
    """5000 x 5000 points (69 inches a side): rendered at 300 dpi for OCR it would be 434 million
    pixels, in the JVM and then in tesseract. Even at 100 dpi it is over OCR_MAX_IMAGE_PIXELS, so
    the page is not OCR'd, and with no text of its own the file fails."""
    data = blank_pdf(5000, 5000)
    assert len(data) < 400
    file = bounded_extraction(data, "poster.pdf", "application/pdf")
    assert file.extraction_status == ExtractionStatus.FAILED
    assert file.metadata["extraction"]["error_code"] == "too_complex"
    assert "too large to read their text with OCR" in file.extraction_error


@needs_proc
def test_a_word_file_holding_300_mb_of_xml_fails_as_too_complex():
    """2.3 MB packed, 300 MB unpacked: refused from the zip's directory, nothing is unpacked."""
    data = xml_docx(300)
    assert len(data) < 3 * MB
    file = bounded_extraction(data, "notes.docx", DOCX)
    assert file.extraction_status == ExtractionStatus.FAILED
    assert file.metadata["extraction"]["error_code"] == "too_complex"
    assert file.extraction_error == (
        "The file is too large to read on this server: its contents unpack to more than 256 MB."
    )


@needs_proc
def test_a_word_file_that_lies_about_its_size_is_read_as_a_stream():
    """The directory says 10 KB, the part unpacks to 300 MB: the check cannot see it, but Word
    XML is read as a stream of events (not built into a tree first), so memory stays flat and
    the read ends at MAX_EXTRACTED_TEXT_LENGTH."""
    data = xml_docx(300, claimed_size=10_000)
    with override_settings(DJANGO_AI={"MAX_EXTRACTED_TEXT_LENGTH": 1000}):
        file = bounded_extraction(data, "notes.docx", DOCX)
    assert file.extraction_status == ExtractionStatus.DONE
    assert file.extracted_text_truncated is True
    assert file.extracted_text.split() == ["bomb"] * len(file.extracted_text.split())


@needs_proc
@needs_ocr
def test_an_image_of_400_million_pixels_fails_as_too_complex():
    """20,000 x 20,000 gray pixels in 450 KB (tesseract would need about 2 GB for them): refused
    from the header before tesseract reads it."""
    data = blank_png(20_000, 20_000)
    assert len(data) < 500_000
    file = bounded_extraction(data, "scan.png", "image/png")
    assert file.extraction_status == ExtractionStatus.FAILED
    assert file.metadata["extraction"]["error_code"] == "too_complex"
    assert file.extraction_error == (
        "The image is too large to read its text: 20,000 x 20,000 pixels, more than the 25 million this server reads."
    )


@needs_proc
@needs_ocr
def test_the_limits_hold_in_process_too():
    """With EXTRACTION_ISOLATION = "none" the same checks run in this process."""
    bombs = [
        (blank_pdf(5000, 5000), "poster.pdf", "application/pdf"),
        (xml_docx(300), "notes.docx", DOCX),
        (blank_png(20_000, 20_000), "scan.png", "image/png"),
    ]
    with override_settings(DJANGO_AI={"EXTRACTION_ISOLATION": "none"}):
        extractor = EmbeddedTikaExtractor()
        extractor.get_version()  # the JVM runs in this process
        reset_peak_rss()
        before = peak_rss()
        for data, name, content_type in bombs:
            with pytest.raises(ExtractionError) as info:
                extractor.extract(
                    ExtractionSource.from_bytes(data, filename=name, content_type=content_type),
                    timeout=60,
                    max_length=1000,
                )
            assert info.value.code == "too_complex", name
    assert peak_rss() - before < TEST_PROCESS_GROWTH


@needs_ocr
def test_a_large_pdf_page_is_ocrd_at_a_lower_resolution():
    """A0 (2384 x 3370 points) at 300 dpi is 70 million pixels: rendered at 127 dpi instead."""
    result = EmbeddedTikaExtractor().extract(
        ExtractionSource.from_bytes(blank_pdf(2384, 3370), filename="a0.pdf", content_type="application/pdf"),
        timeout=60,
        max_length=1000,
    )
    assert result.metadata["ocr_dpi"] == 127
    assert result.metadata["ocr"] is True


def test_an_extraction_process_over_its_memory_limit_is_stopped():
    """128 MB is less than the JVM itself needs: the watchdog kills the process at work, the file
    fails (a new process alone would go over again), and the next process runs with the limit
    back to normal."""
    report = (FILES / "report.pdf").read_bytes()
    with override_settings(DJANGO_AI={"EXTRACTION_MEMORY_LIMIT": 128 * MB}):
        file = extract_row(report, "report.pdf", "application/pdf")
    assert file.extraction_status == ExtractionStatus.FAILED
    assert file.metadata["extraction"]["error_code"] == "too_complex"
    assert file.extraction_error == (
        "Reading this file needed more memory than this server allows (128 MB), so it was stopped."
    )
    file = extract_row(report, "report.pdf", "application/pdf")
    assert file.extraction_status == ExtractionStatus.DONE
    assert generate.PDF_TEXT in " ".join(file.extracted_text.split())


@needs_ocr
def test_a_pdf_and_an_image_are_read_in_the_extraction_process():
    pdf = extract_row((FILES / "report.pdf").read_bytes(), "report.pdf", "application/pdf")
    png = extract_row((FILES / "invoice.png").read_bytes(), "invoice.png", "image/png")
    assert pdf.extraction_status == png.extraction_status == ExtractionStatus.DONE
    assert generate.PDF_TEXT in " ".join(pdf.extracted_text.split())
    assert "INVOICE NUMBER 4711" in " ".join(png.extracted_text.split())
    assert png.metadata["extraction"]["ocr"] is True
    running = isolated.running_process()
    assert running is not None and running[0] != os.getpid()


SCRIPT = """
import django
django.setup()
import jpype
from django_ai.conversations.files.extraction import EmbeddedTikaExtractor, ExtractionSource, isolated
result = EmbeddedTikaExtractor().extract(
    ExtractionSource.from_path("tests/fixtures/files/report.pdf", content_type="application/pdf"),
    timeout=120,
    max_length=1000,
)
print("text:", " ".join(result.text.split()))
print("jvm here:", jpype.isJVMStarted())
print("extraction process:", isolated.running_process()[0], flush=True)
"""


def test_the_web_process_starts_no_jvm_and_its_extraction_process_ends_with_it():
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings", "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180, env=env, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"text: {generate.PDF_TEXT}" in out.stdout
    assert "jvm here: False" in out.stdout
    child = int(out.stdout.split("extraction process:")[1].split()[0])
    wait_for(lambda: not processes_in_group(child), timeout=30)


@needs_ocr
def test_a_killed_extraction_process_is_replaced_and_the_files_are_read():
    """Killed while tesseract reads a scanned page (the moment is waited for, not guessed): that
    file is read again, alone, in a new extraction process, and the next file works there."""
    child = extraction_process()
    source = ExtractionSource.from_path(FILES / "scanned.pdf", content_type="application/pdf")
    outcome: dict[str, object] = {}

    def extract() -> None:
        try:
            outcome["result"] = EmbeddedTikaExtractor().extract(source, timeout=120, max_length=10_000)
        except ExtractionError as exc:
            outcome["result"] = exc

    worker = threading.Thread(target=extract)
    worker.start()
    wait_for(lambda: "tesseract" in processes_in_group(child).values() or not worker.is_alive(), timeout=60)
    assert worker.is_alive(), "the OCR ended before it could be interrupted"
    os.killpg(child, signal.SIGKILL)
    worker.join(120)
    result = outcome["result"]
    assert not isinstance(result, ExtractionError), result
    assert "SCANNED CONTRACT 8042" in " ".join(result.text.split())
    replacement = isolated.running_process()[0]
    assert replacement != child
    file = extract_row((FILES / "report.pdf").read_bytes(), "report.pdf", "application/pdf")
    assert file.extraction_status == ExtractionStatus.DONE
    assert generate.PDF_TEXT in " ".join(file.extracted_text.split())
    assert isolated.running_process()[0] == replacement


def plain_extraction(data: bytes, filename: str, content_type: str, *, max_length: int):
    """The plain-text extractor's result for ``data`` and the peak of Python memory it allocated."""
    source = ExtractionSource.from_bytes(data, filename=filename, content_type=content_type)
    tracemalloc.start()
    try:
        result = PlainTextExtractor().extract(source, timeout=30, max_length=max_length)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_plain_text_is_cut_while_it_is_read():
    """20 MB of text, 1000 characters kept: never decoded whole."""
    data = ("word " * (4 * MB)).encode()
    result, peak = plain_extraction(data, "big.txt", "text/plain", max_length=1000)
    assert result.truncated is True
    assert result.text == ("word " * 200)
    assert peak < 2 * MB


def test_plain_html_is_cut_while_it_is_read():
    """17 MB of HTML, 100 characters kept: one piece of 256 KB is parsed, not the document."""
    page = ("<html><head><title>Big</title></head><body>" + "<p>one   two</p>\n" * MB + "</body></html>").encode()
    result, peak = plain_extraction(page, "big.html", "text/html", max_length=100)
    assert result.truncated is True
    assert result.text.startswith("Big\n\none two\n\none two")
    assert len(result.text) == 100
    assert peak < 8 * MB


def zip_of(parts: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in parts.items():
            archive.writestr(name, body)
    buffer.seek(0)
    return buffer


def test_container_check_refuses_a_part_compressed_like_a_bomb():
    with pytest.raises(ExtractionError) as info:
        check_container(zip_of({"a.xml": b" " * (50 * MB)}), ExtractionLimits())
    assert info.value.code == "too_complex"
    assert "more than 100 times its packed size" in info.value.message
    # Small parts may compress that well; a higher limit lets the large one through.
    check_container(zip_of({"a.xml": b" " * 500_000}), ExtractionLimits())
    check_container(zip_of({"a.xml": b" " * (50 * MB)}), ExtractionLimits(max_compression_ratio=10_000))


def test_container_check_refuses_too_many_parts():
    with pytest.raises(ExtractionError) as info:
        check_container(zip_of({str(n): b"" for n in range(10_001)}), ExtractionLimits())
    assert "more than 10,000 parts" in info.value.message


def test_container_check_reads_zip64_sizes():
    """A directory entry whose sizes are in the zip64 extra field (a part of 5 GB)."""
    name = b"big.xml"
    extra = struct.pack("<HHQQ", 1, 16, 5 * 1024**3, 1000)
    entry = struct.pack(
        "<4s6H3L5H2L",
        b"PK\x01\x02",
        45,
        45,
        0,
        8,
        0,
        0,
        0,
        0xFFFFFFFF,
        0xFFFFFFFF,
        len(name),
        len(extra),
        0,
        0,
        0,
        0,
        0,
    )
    directory = entry + name + extra
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(directory), 0, 0)
    with pytest.raises(ExtractionError) as info:
        check_container(io.BytesIO(directory + end), ExtractionLimits())
    assert "unpack to more than 256 MB" in info.value.message


def test_container_check_leaves_other_files_to_the_parser():
    check_container(io.BytesIO(b"PK\x03\x04 not really a zip"), ExtractionLimits())
    check_container(io.BytesIO((FILES / "notes.docx").read_bytes()), ExtractionLimits())


def test_image_sizes_are_read_from_headers(tmp_path):
    gif = b"GIF89a" + struct.pack("<HHBBB", 40, 30, 0, 0, 0) + b"," + struct.pack("<4HB", 0, 0, 4000, 3000, 0)
    jpeg = (
        b"\xff\xd8\xff\xe0"
        + struct.pack(">H", 16)
        + b"JFIF\x00"
        + bytes(9)
        + b"\xff\xc0"
        + struct.pack(">HBHH", 17, 8, 123, 321)
    )
    bmp = b"BM" + bytes(12) + struct.pack("<Iii", 40, 321, -123)
    webp = (
        b"RIFF"
        + struct.pack("<I", 30)
        + b"WEBPVP8X"
        + struct.pack("<I", 10)
        + bytes(4)
        + (39_999).to_bytes(3, "little")
        + (29_999).to_bytes(3, "little")
    )
    tiff = (
        b"II*\x00"
        + struct.pack("<I", 8)
        + struct.pack("<H", 2)
        + struct.pack("<HHI4s", 256, 3, 1, struct.pack("<H", 321) + b"\0\0")
    )
    tiff += struct.pack("<HHII", 257, 4, 1, 123) + struct.pack("<I", 0)
    pnm = b"P5\n# a comment\n321 123\n255\n" + bytes(10)
    cases = {
        "png": (blank_png(321, 123), [(321, 123)]),
        "gif": (gif, [(40, 30), (4000, 3000)]),
        "jpeg": (jpeg, [(321, 123)]),
        "bmp": (bmp, [(321, 123)]),
        "webp": (webp, [(40_000, 30_000)]),
        "tiff": (tiff, [(321, 123)]),
        "pnm": (pnm, [(321, 123)]),
        "unknown": (b"not an image", None),
    }
    for kind, (data, sizes) in cases.items():
        path = tmp_path / f"image.{kind}"
        path.write_bytes(data)
        assert _ocr_guard.image_sizes(str(path)) == sizes, kind


def test_the_ocr_guard_refuses_large_images_and_limits_tesseract(tmp_path):
    """The guard with a stand-in for tesseract that prints the limits it runs under."""
    fake = tmp_path / "tesseract"
    fake.write_text('#!/bin/sh\necho "$(ulimit -v) $(ulimit -t) $OMP_THREAD_LIMIT ${TESSDATA_PREFIX:-unset} $*"\n')
    fake.chmod(0o700)
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    small.write_bytes(blank_png(100, 100))
    large.write_bytes(blank_png(2000, 2000))
    guard = Path(_ocr_guard.__file__)
    folder = str(tmp_path / "guard")
    env = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
    env["TESSDATA_PREFIX"] = folder + "/tessdata"  # what Tika sets for a tesseractPath

    def run(image: Path) -> subprocess.CompletedProcess[str]:
        command = [
            sys.executable,
            "-I",
            "-S",
            str(guard),
            str(fake),
            "1000000",
            str(200 * MB),
            "7",
            folder,
            "",
            "--",
            str(image),
            "out",
        ]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)

    ran = run(small)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == [str(200 * 1024), "7", "1", "unset", str(small), "out"]
    refused = run(large)
    assert refused.returncode == _ocr_guard.REFUSED
    assert refused.stdout == ""
    assert f"{_ocr_guard.MARKER} too-large 2000x2000" in refused.stderr


def test_isolation_setting_is_checked():
    with override_settings(DJANGO_AI={"EXTRACTION_ISOLATION": "container"}):
        errors = [m for m in run_checks() if m.id == "django_ai.E023"]
    assert errors and "'subprocess'" in errors[0].hint
    with override_settings(DJANGO_AI={"EXTRACTION_MEMORY_LIMIT": 10}):
        assert any(m.id == "django_ai.E003" and "EXTRACTION_MEMORY_LIMIT" in m.msg for m in run_checks())
