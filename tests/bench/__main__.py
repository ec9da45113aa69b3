"""Run the benchmarks: ``./dev bench [--quick] [name ...]`` (``python -m tests.bench``).

Every module ``tests/bench/bench_<name>.py`` defines ``main(argv: list[str]) -> None`` which sets
up what it measures, runs the measured code and the baseline side by side, and prints a table.
Options (``--quick``, ``--turns=50`` ...) are passed to every benchmark named.

A benchmark that crashes does not stop the others: its traceback is printed, and the exit status
is 1 at the end. One that cannot run here raises :class:`~tests.bench.options.Skipped`, which is
printed with its reason and is not a failure.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from tests.bench.options import Skipped


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.bench.settings")
    here = Path(__file__).parent
    names = sorted(m.name[len("bench_") :] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = [a for a in argv if not a.startswith("-")] or names
    options = [a for a in argv if a.startswith("-")]
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    outcomes: list[tuple[str, str, float]] = []
    for name in wanted:
        print(f"\n## {name}\n", flush=True)
        started = time.monotonic()
        try:
            importlib.import_module(f"tests.bench.bench_{name}").main(options)
            outcome = "ok"
        except Skipped as exc:
            print(f"skipped: {exc}", flush=True)
            outcome = f"skipped ({exc})"
        except SystemExit as exc:  # a benchmark that stops with a message (or a status)
            if exc.code in (None, 0):
                outcome = "ok"
            else:
                print(f"{name} stopped: {exc.code}", file=sys.stderr, flush=True)
                outcome = "FAILED"
        except Exception:  # noqa: BLE001 - reported, and the next benchmark still runs
            traceback.print_exc()
            sys.stderr.flush()
            outcome = "FAILED"
        seconds = time.monotonic() - started
        print(f"\n({name}: {seconds:.1f} s)", flush=True)
        outcomes.append((name, outcome, seconds))
    if len(outcomes) > 1:
        print("\n## summary\n")
        for name, outcome, seconds in outcomes:
            print(f"- {name}: {outcome}, {seconds:.1f} s")
    failed = [name for name, outcome, _ in outcomes if outcome == "FAILED"]
    if failed:
        print(f"\nbenchmark(s) that failed: {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
