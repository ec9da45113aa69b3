"""Runs tesseract for Tika within limits: the image's pixel count, address space and CPU time.

Tika starts ``<tesseractPath>/tesseract``; embedded.py points ``tesseractPath`` at a folder whose
``tesseract`` is a two-line shell script that runs this file::

    python -I -S _ocr_guard.py <tesseract> <max pixels> <address space> <cpu seconds>
        <folder> <tessdata> -- <tesseract's arguments>

Every OCR goes through it: uploaded images, images inside documents, PDF pages Tika renders.
It reads the image's size from its header (PNG, JPEG, GIF, BMP, TIFF, WebP, JPEG 2000, PNM) and
refuses one over the pixel limit with exit status 65 and a line ``django-ai-ocr-guard:
too-large <width>x<height>`` on stderr, which Tika puts in its exception and embedded.py turns
into the ``too_complex`` failure. Otherwise it sets RLIMIT_AS, RLIMIT_CPU and RLIMIT_FSIZE and
replaces itself with tesseract (exec), so the limits hold for tesseract alone and cost one
short Python start (about 20 ms) per OCR. A tesseract over its limits dies (status 128 +
signal, or an allocation failure) and Tika reports its bad exit value.

It runs as a script in an isolated interpreter (``-I -S``: the standard library only, no site
packages), so nothing here may import the project.
"""

from __future__ import annotations

import os
import resource
import struct
import sys
from collections.abc import Iterator
from typing import BinaryIO

#: Exit status when the image is over the pixel limit (EX_DATAERR).
REFUSED = 65
MARKER = "django-ai-ocr-guard:"
#: Pages of a TIFF looked at, at most (each is OCR'd on its own, so the largest one counts), and
#: directory entries read in all (IFDs may overlap: without it a small file could keep this busy).
MAX_TIFF_PAGES = 10_000
MAX_TIFF_ENTRIES = 200_000
#: Bytes of tesseract's output file (text, hOCR) at most.
MAX_OUTPUT_BYTES = 64 * 1024 * 1024


def image_sizes(path: str) -> list[tuple[int, int]] | None:
    """(width, height) of each image (page, frame) in the file, or None when the format is not
    one this reads; the header only, never the pixels."""
    with open(path, "rb") as handle:
        head = handle.read(64)
        handle.seek(0)
        for matches, reader in _READERS:
            if matches(head):
                sizes: list[tuple[int, int]] = []
                try:
                    sizes.extend(reader(handle))
                except (struct.error, ValueError, IndexError, OSError):
                    pass  # a damaged header: what was read before it still counts
                return sizes or None
    return None


def _png(handle: BinaryIO) -> Iterator[tuple[int, int]]:
    handle.seek(16)
    yield struct.unpack(">II", handle.read(8))


def _gif(handle: BinaryIO) -> Iterator[tuple[int, int]]:
    # The logical screen, then each frame's own box: leptonica reads the first frame.
    handle.seek(6)
    yield struct.unpack("<HH", handle.read(4))
    flags = handle.read(3)[0]
    if flags & 0x80:
        handle.seek(3 * (2 << (flags & 7)), 1)
    while block := handle.read(1):
        if block == b",":
            _left, _top, width, height, _local = struct.unpack("<4HB", handle.read(9))
            yield width, height
            return
        if block == b"!":
            handle.read(1)
            while size := handle.read(1)[0]:
                handle.seek(size, 1)
        else:
            return


def _jpeg(handle: BinaryIO) -> Iterator[tuple[int, int]]:
    handle.seek(2)
    while True:
        marker = handle.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            raise ValueError("not a JPEG marker")
        kind = marker[1]
        if kind == 0xFF:
            handle.seek(-1, 1)  # fill byte
            continue
        if kind in (0x01, *range(0xD0, 0xD8)):
            continue  # markers without a length
        (length,) = struct.unpack(">H", handle.read(2))
        if length < 2:
            raise ValueError("bad segment length")
        if kind in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            _precision, height, width = struct.unpack(">BHH", handle.read(5))
            yield width, height
            return
        if kind == 0xDA:  # start of scan before any frame header
            raise ValueError("no frame header")
        handle.seek(length - 2, 1)


def _bmp(handle: BinaryIO) -> Iterator[tuple[int, int]]:
    handle.seek(14)
    (header_size,) = struct.unpack("<I", handle.read(4))
    if header_size == 12:
        yield struct.unpack("<HH", handle.read(4))
    else:
        width, height = struct.unpack("<ii", handle.read(8))
        yield abs(width), abs(height)


def _webp(handle: BinaryIO) -> Iterator[tuple[int, int]]:
    handle.seek(12)
    chunk = handle.read(4)
    handle.seek(20)
    data = handle.read(10)
    if chunk == b"VP8X":
        yield 1 + int.from_bytes(data[4:7], "little"), 1 + int.from_bytes(data[7:10], "little")
    elif chunk == b"VP8L":
        bits = int.from_bytes(data[1:5], "little")
        yield 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[6:10])
        yield width & 0x3FFF, height & 0x3FFF
    else:
        raise ValueError("unknown WebP chunk")


def _tiff(handle: BinaryIO) -> Iterator[tuple[int, int]]:
    order = "<" if handle.read(2) == b"II" else ">"
    (version,) = struct.unpack(order + "H", handle.read(2))
    big = version == 43
    if big:
        handle.read(4)
        (offset,) = struct.unpack(order + "Q", handle.read(8))
    else:
        (offset,) = struct.unpack(order + "I", handle.read(4))
    seen: set[int] = set()
    budget = MAX_TIFF_ENTRIES
    while offset and offset not in seen and len(seen) < MAX_TIFF_PAGES and budget > 0:
        seen.add(offset)
        handle.seek(offset)
        (count,) = struct.unpack(order + ("Q" if big else "H"), handle.read(8 if big else 2))
        entry = struct.Struct(order + ("HHQ8s" if big else "HHI4s"))
        width = height = 0
        for _ in range(min(count, 4096, budget)):
            budget -= 1
            tag, kind, _number, value = entry.unpack(handle.read(entry.size))
            if tag in (256, 257):
                number = struct.unpack_from(order + ("H" if kind == 3 else "I"), value)[0]
                if tag == 256:
                    width = number
                else:
                    height = number
        yield width, height
        handle.seek(offset + (8 if big else 2) + count * entry.size)
        (offset,) = struct.unpack(order + ("Q" if big else "I"), handle.read(8 if big else 4))


def _jp2(handle: BinaryIO) -> Iterator[tuple[int, int]]:
    data = handle.read(4096)
    at = data.find(b"ihdr")
    if at >= 0:
        height, width = struct.unpack_from(">II", data, at + 4)
        yield width, height
        return
    at = data.find(b"\xff\x4f\xff\x51")  # a raw codestream: SIZ follows SOC
    if at < 0:
        raise ValueError("no image header")
    width, height, left, top = struct.unpack_from(">IIII", data, at + 8)
    yield width - left, height - top


def _pnm(handle: BinaryIO) -> Iterator[tuple[int, int]]:
    numbers: list[int] = []
    text = handle.read(1024)[2:]
    for line in text.split(b"\n"):
        for word in line.split(b"#", 1)[0].split():
            numbers.append(int(word))
            if len(numbers) == 2:
                yield numbers[0], numbers[1]
                return
    raise ValueError("no size")


_READERS = (
    (lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    (lambda head: head[:6] in (b"GIF87a", b"GIF89a"), _gif),
    (lambda head: head.startswith(b"\xff\xd8"), _jpeg),
    (lambda head: head.startswith(b"BM"), _bmp),
    (lambda head: head.startswith(b"RIFF") and head[8:12] == b"WEBP", _webp),
    (lambda head: head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    (lambda head: head[4:8] == b"jP  " or head.startswith(b"\xff\x4f\xff\x51"), _jp2),
    (lambda head: head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace(), _pnm),
)


def main(argv: list[str]) -> int:
    tesseract, max_pixels, address_space, cpu_seconds, folder, tessdata = argv[:6]
    arguments = argv[7:] if argv[6:7] == ["--"] else argv[6:]
    # Tika sets TESSDATA_PREFIX to "<tesseractPath>tessdata" when it has no tessdataPath: that is
    # this guard's folder, not tesseract's. Put back what the process had.
    if os.environ.get("TESSDATA_PREFIX", "").startswith(folder):
        if tessdata:
            os.environ["TESSDATA_PREFIX"] = tessdata
        else:
            os.environ.pop("TESSDATA_PREFIX", None)
    # One thread: the extraction process already runs parses side by side, and each OpenMP
    # thread adds its own memory.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    image = arguments[0] if arguments and not arguments[0].startswith("-") else None
    if image and os.path.isfile(image):
        sizes = image_sizes(image) or []
        largest = max(sizes, key=lambda size: size[0] * size[1], default=None)
        if largest and largest[0] * largest[1] > int(max_pixels):
            sys.stderr.write(f"{MARKER} too-large {largest[0]}x{largest[1]}\n")
            return REFUSED
    limits = (
        (resource.RLIMIT_AS, int(address_space), int(address_space)),
        (resource.RLIMIT_CPU, int(cpu_seconds), int(cpu_seconds) + 5),
        (resource.RLIMIT_FSIZE, MAX_OUTPUT_BYTES, MAX_OUTPUT_BYTES),
    )
    for kind, soft, hard in limits:
        _current_soft, current_hard = resource.getrlimit(kind)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
            soft = min(soft, hard)
        resource.setrlimit(kind, (soft, hard))
    try:
        os.execv(tesseract, [tesseract, *arguments])
    except OSError as exc:
        sys.stderr.write(f"{MARKER} cannot run {tesseract}: {exc}\n")
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
