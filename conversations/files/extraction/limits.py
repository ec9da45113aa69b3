"""What one extraction may cost, and the checks made on a file before it is parsed.

A few hundred bytes can ask a parser for gigabytes: a PDF page of 200 x 200 inches rendered for
OCR, a Word file whose 2 MB unpack to 1 GB of XML, a PNG of 50,000 x 50,000 blank pixels. Each
kind is stopped where it is cheapest to see it:

- zip containers (Word, Excel, PowerPoint, OpenDocument, EPUB) by their central directory,
  before anything is unpacked: :func:`check_container`. That reads the sizes the file declares;
  one that lies about them is read anyway, and then Word and PowerPoint XML is streamed
  (embedded.py), so memory stays flat, and the JVM heap limit holds for the rest;
- images by their header, before tesseract reads them (``_ocr_guard.py``, which also puts
  tesseract under an address-space and a CPU-time limit);
- PDF pages by their size at the OCR resolution, before Tika renders them
  (``embedded.py``, which lowers the resolution or skips OCR);
- everything else by the JVM heap (``-Xmx``) and, in the extraction process, by the memory
  watchdog (``isolated.py``).

A file over a limit fails with the code ``too_complex`` and a message that says which limit.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import struct
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any

from ...conf import ai_settings
from ...constants import ErrorCode
from .base import ExtractionError

__all__ = ["ExtractionLimits", "check_container", "jvm_options", "ocr_guard_folder", "python_executable", "too_complex"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class ExtractionLimits:
    """The limits of one extraction engine, from settings (:meth:`from_settings`)."""

    #: Bytes of memory (RSS) the extraction process and its tesseract runs may hold together.
    memory: int = 1024 * MIB
    #: Bytes of address space one tesseract run may map.
    ocr_memory: int = 384 * MIB
    #: Pixels of one image (or one rendered PDF page) that tesseract may be given.
    ocr_max_pixels: int = 25_000_000
    #: Bytes that the parts of a zip container may unpack to, together.
    max_unpacked_size: int = 256 * MIB
    #: How much larger than its packed size one part may unpack to (beyond CONTAINER_GRACE_SIZE).
    max_compression_ratio: float = 100.0
    #: Seconds of CPU time one tesseract run may use.
    ocr_cpu_seconds: int = 120

    @classmethod
    def from_settings(cls) -> ExtractionLimits:
        return cls(
            memory=int(ai_settings.EXTRACTION_MEMORY_LIMIT),
            ocr_memory=int(ai_settings.OCR_MEMORY_LIMIT),
            ocr_max_pixels=int(ai_settings.OCR_MAX_IMAGE_PIXELS),
            max_unpacked_size=int(ai_settings.EXTRACTION_MAX_UNPACKED_SIZE),
            max_compression_ratio=float(ai_settings.EXTRACTION_MAX_COMPRESSION_RATIO),
            ocr_cpu_seconds=max(1, int(float(ai_settings.EXTRACTION_TIMEOUT))),
        )

    @property
    def heap(self) -> int:
        """The JVM heap (``-Xmx``): half of :attr:`memory`; the JVM's own code, classes and
        threads and the tesseract runs share the other half."""
        return max(64 * MIB, self.memory // 2)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractionLimits:
        return cls(**data)


#: Parts a zip container may hold. A Word file has a few dozen; the central directory of a
#: 20 MB upload could list 400,000, and each costs memory to read.
MAX_CONTAINER_ENTRIES = 10_000
#: Parts smaller than this unpacked are not held to the compression ratio (a page of blank XML
#: compresses 1000 to 1 and harms nobody); Apache POI draws the same line.
CONTAINER_GRACE_SIZE = 1 * MIB

_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_CENTRAL_HEADER = struct.Struct("<4s6H3L5H2L")  # 46 bytes
_EOCD_RECORD = struct.Struct("<4s4H2LH")  # 22 bytes
_ZIP64_EOCD_RECORD = struct.Struct("<4sQ2H2L4Q")  # 56 bytes
_ZIP64_LOCATOR_RECORD = struct.Struct("<4sLQL")  # 20 bytes


def too_complex(message: str) -> ExtractionError:
    return ExtractionError(message, code=ErrorCode.TOO_COMPLEX)


def _megabytes(size: float) -> str:
    return f"{size / MIB:,.0f} MB"


def check_container(handle: IO[bytes], limits: ExtractionLimits) -> None:
    """Refuse a zip container whose parts would unpack to more than the limits allow.

    Reads only the central directory (at the end of the file), one record at a time, so a
    directory of 400,000 entries costs no memory. Anything that is not a readable zip is left
    to the parser, which fails it as damaged. ``handle`` is a seekable binary file.
    """
    located = _central_directory(handle)
    if located is None:
        return
    start, size = located
    handle.seek(start)
    records = _Records(handle, size)
    entries = 0
    unpacked = 0
    while (header := records.take(_CENTRAL_HEADER.size)) is not None:
        fields = _CENTRAL_HEADER.unpack(header)
        if fields[0] != _CENTRAL:
            return  # not what a central directory holds: the parser will say it is damaged
        packed, part_size = fields[8], fields[9]
        name_length, extra_length, comment_length = fields[10], fields[11], fields[12]
        rest = records.take(name_length + extra_length + comment_length)
        if rest is None:
            return
        if 0xFFFFFFFF in (packed, part_size):
            packed, part_size = _zip64_sizes(rest[name_length : name_length + extra_length], packed, part_size)
        entries += 1
        unpacked += part_size
        if entries > MAX_CONTAINER_ENTRIES:
            raise too_complex(f"The file holds more than {MAX_CONTAINER_ENTRIES:,} parts, more than this server reads.")
        if unpacked > limits.max_unpacked_size:
            raise too_complex(
                "The file is too large to read on this server: its contents unpack to more than "
                f"{_megabytes(limits.max_unpacked_size)}."
            )
        if part_size > CONTAINER_GRACE_SIZE and part_size > max(packed, 1) * limits.max_compression_ratio:
            raise too_complex(
                f"The file is not read: a part of it unpacks to more than {limits.max_compression_ratio:g} "
                "times its packed size, as in a zip bomb."
            )


class _Records:
    """Reads the central directory in pieces of at most 256 KiB, never all of it at once."""

    def __init__(self, handle: IO[bytes], size: int) -> None:
        self.handle = handle
        self.remaining = size
        self.buffer = bytearray()

    def take(self, count: int) -> bytes | None:
        while len(self.buffer) < count and self.remaining > 0:
            chunk = self.handle.read(min(self.remaining, 256 * 1024))
            if not chunk:
                break
            self.remaining -= len(chunk)
            self.buffer += chunk
        if len(self.buffer) < count:
            return None
        taken = bytes(self.buffer[:count])
        del self.buffer[:count]
        return taken


def _central_directory(handle: IO[bytes]) -> tuple[int, int] | None:
    """Where the central directory starts and how long it is, or None for anything else.

    Counted back from the end-of-directory record, as unzip does, so data put before the zip (a
    self-extracting stub) does not matter.
    """
    handle.seek(0, 2)
    end = handle.tell()
    tail_start = max(0, end - (_EOCD_RECORD.size + 0xFFFF))
    handle.seek(tail_start)
    tail = handle.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < _EOCD_RECORD.size:
        return None
    eocd = _EOCD_RECORD.unpack_from(tail, at)
    size, offset = eocd[5], eocd[6]
    eocd_position = tail_start + at
    directory_end = eocd_position
    if 0xFFFFFFFF in (size, offset) or 0xFFFF in (eocd[3], eocd[4]):
        locator_at = at - _ZIP64_LOCATOR_RECORD.size
        if locator_at < 0 or tail[locator_at : locator_at + 4] != _ZIP64_LOCATOR:
            return None
        zip64_position = eocd_position - _ZIP64_LOCATOR_RECORD.size - _ZIP64_EOCD_RECORD.size
        if zip64_position < 0:
            return None
        handle.seek(zip64_position)
        record = handle.read(_ZIP64_EOCD_RECORD.size)
        if len(record) < _ZIP64_EOCD_RECORD.size or record[:4] != _ZIP64_EOCD:
            return None
        size = _ZIP64_EOCD_RECORD.unpack(record)[7]
        directory_end = zip64_position
    start = directory_end - size
    if start < 0 or size <= 0:
        return None
    return start, size


def _zip64_sizes(extra: bytes, packed: int, unpacked: int) -> tuple[int, int]:
    # The zip64 extra field (id 1) holds the 8-byte values of the fields that are 0xFFFFFFFF in
    # the header, unpacked size first.
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<2H", extra, at)
        body = extra[at + 4 : at + 4 + length]
        if kind == 1:
            values = [struct.unpack_from("<Q", body, i)[0] for i in range(0, len(body) - 7, 8)]
            if unpacked == 0xFFFFFFFF and values:
                unpacked = values.pop(0)
            if packed == 0xFFFFFFFF and values:
                packed = values.pop(0)
            break
        at += 4 + length
    return packed, unpacked


def jvm_options(
    limits: ExtractionLimits, extra: Sequence[str] = (), *, exit_on_out_of_memory: bool = False
) -> list[str]:
    """The JVM's options: the heap limit first, so that an ``-Xmx`` in ``TIKA_JVM_ARGS`` (which
    comes after it) wins. ``exit_on_out_of_memory`` is for the extraction process, where a JVM
    out of heap is better ended and replaced than left to go on in an unknown state."""
    options = [f"-Xmx{limits.heap // MIB}m"]
    if exit_on_out_of_memory:
        options.append("-XX:+ExitOnOutOfMemoryError")
    return [*options, *extra]


#: Folders made by this process (or by the process it was forked from): key -> (folder, pid).
_guard_folders: dict[tuple[Any, ...], tuple[str, int]] = {}
_guard_lock = threading.Lock()


def ocr_guard_folder(limits: ExtractionLimits) -> str | None:
    """A private folder (mode 0700) whose ``tesseract`` is a script that runs the installed one
    through ``_ocr_guard.py`` with these limits: Tika's ``tesseractPath``. None when tesseract is
    not installed. Made once per set of limits by this process and removed when it exits; the
    extraction process is given the folder of the process that started it."""
    tesseract = shutil.which("tesseract")
    if not tesseract:
        return None
    key = (tesseract, limits.ocr_max_pixels, limits.ocr_memory, limits.ocr_cpu_seconds)
    with _guard_lock:
        made = _guard_folders.get(key)
        if made and os.path.isfile(os.path.join(made[0], "tesseract")):
            return made[0]
        folder = tempfile.mkdtemp(prefix="django-ai-ocr-")
        guard = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ocr_guard.py")
        command = [
            python_executable(),
            "-I",
            "-S",
            guard,
            tesseract,
            str(limits.ocr_max_pixels),
            str(limits.ocr_memory),
            str(limits.ocr_cpu_seconds),
            folder,
            os.environ.get("TESSDATA_PREFIX", ""),
            "--",
        ]
        script = os.path.join(folder, "tesseract")
        with open(script, "w", encoding="utf-8") as out:
            out.write("#!/bin/sh\nexec " + " ".join(shlex.quote(part) for part in command) + ' "$@"\n')
        os.chmod(script, 0o700)
        if not _guard_folders:
            atexit.register(_remove_guard_folders)
        _guard_folders[key] = (folder, os.getpid())
        return folder


def python_executable() -> str:
    """This Python, to run the OCR guard and the extraction process with: ``sys.executable``,
    unless that is an embedding server's binary (uWSGI), then the environment's own
    ``bin/python3``, else ``python3`` from the PATH."""
    if os.path.basename(sys.executable or "").startswith("python"):
        return sys.executable
    own = os.path.join(sys.prefix, "bin", "python3")
    return own if os.path.isfile(own) else shutil.which("python3") or sys.executable


def _remove_guard_folders() -> None:
    # A forked child (a web server's worker) inherits this hook; it removes only its own folders.
    for folder, pid in _guard_folders.values():
        if pid == os.getpid():
            shutil.rmtree(folder, ignore_errors=True)
