"""Run the benchmarks: ``./dev bench [name ...]`` (``python -m tests.bench``).

Every module ``tests/bench/bench_<name>.py`` defines ``main(argv: list[str]) -> None`` which sets
up what it measures, runs the measured code and the baseline side by side, and prints a table.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.bench.settings")
    here = Path(__file__).parent
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = [a for a in argv if not a.startswith("-")] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    for name in wanted:
        module = importlib.import_module(f"tests.bench.bench_{name}")
        print(f"\n## {name}\n", flush=True)
        started = time.monotonic()
        module.main([a for a in argv if a.startswith("-")])
        print(f"\n({name}: {time.monotonic() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
