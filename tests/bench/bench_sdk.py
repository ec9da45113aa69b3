"""The TypeScript SDK's live querysets under bursts of changes (``./dev bench sdk``).

Runs ``frontend_client/bench/live.ts`` in Node: a demo server (runserver, temporary SQLite, Server-
Sent Events), one client writing a burst of N changes to a session, and a listener keeping the
session list current: the SDK's ``live()`` (bursts gathered into one refetch, one refetch in flight
at a time) against a naive listener that refetches on every ``model_change`` event. Both are real
HTTP clients of the same server. Options: ``--bursts=10,50`` ``--rounds=3``; ``--quick``: bursts of 3,
one round.

Then ``frontend_client/bench/render.ts``: renders of a React component while a reply of N chunks
streams (the real React 19 in a DOM in Node, a 60 Hz animation frame, a real conversation of a demo
server whose chunks the benchmark delivers itself), through the React binding's ``useConversation``
against a naive component that sets ``useState`` on every change. Options: ``--chunks=2000``
(``--quick``: 100), ``--rounds``.

The TypeScript is compiled (``node scripts/build.mjs --tests``) only when a source is newer than the
compiled benchmarks: after ``./dev test`` (which compiles them too) the run starts at once.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tests.bench.options import Skipped, is_quick, option

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "frontend_client"
COMPILED = CLIENT / ".test-build" / "bench" / "live.js"
COMPILED_RENDER = CLIENT / ".test-build" / "bench" / "render.js"
SOURCES = ("src", "test", "e2e", "bench")


def _compiled_is_current() -> bool:
    if not COMPILED.exists() or not COMPILED_RENDER.exists():
        return False
    built = min(COMPILED.stat().st_mtime, COMPILED_RENDER.stat().st_mtime)
    inputs = [p for folder in SOURCES for p in (CLIENT / folder).rglob("*.ts")]
    inputs += [*list(CLIENT.glob("tsconfig*.json")), CLIENT / "package-lock.json"]
    return all(p.stat().st_mtime <= built for p in inputs if p.exists())


def main(argv: list[str]) -> None:
    if shutil.which("node") is None:
        raise Skipped("node is not installed (Node.js 20 or newer)")
    if not (CLIENT / "node_modules").is_dir():
        raise Skipped("frontend_client/node_modules is missing (./dev setup installs it)")
    quick = is_quick(argv)
    bursts = option(argv, "bursts", "3" if quick else "10,50")
    rounds = option(argv, "rounds", "1" if quick else "3")
    if not _compiled_is_current():
        subprocess.run(["node", "scripts/build.mjs", "--tests"], cwd=CLIENT, check=True)
    env = {"PYTHON": sys.executable, **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}}
    done = subprocess.run(
        ["node", ".test-build/bench/live.js", bursts, rounds],
        cwd=CLIENT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(f"The SDK benchmark failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    groups: dict[tuple[str, int, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["pattern"], row["burst"], row["client"])].append(row)

    print("Listener keeping a session list current while another client writes N changes to it.")
    print(f"Median of {rounds} rounds; queries = `models/session/query/` requests made by the listener.\n")
    print("| writes | N | listener | queries | ratio | lag after last write (ms) | ended current |")
    # "ended current": rounds whose listener showed the final title 0.5 s after it appeared (or 5 s).
    print("|---|---:|---|---:|---:|---:|---:|")
    for (pattern, burst, client), items in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], not kv[0][2].startswith("naive"))
    ):
        queries = statistics.median(r["queries"] for r in items)
        naive = groups.get((pattern, burst, "naive: refetch per event"))
        base = statistics.median(r["queries"] for r in naive) if naive else queries
        lags = [r["lag_ms"] for r in items if r["reached"]]
        lag = f"{statistics.median(lags):.0f}" if lags else "never"
        current = sum(r["ended_current"] for r in items)
        print(
            f"| {pattern} | {burst} | {client} | {queries:g} | {queries / base:.2f}x | {lag} | {current}/{len(items)} |"
        )
    print("\n(The server runs on SQLite whatever DATABASE_URL says: it is the demo server.)")
    _render(option(argv, "chunks", "100" if quick else "2000"), rounds, env)


def _render(chunks: str, rounds: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["node", ".test-build/bench/render.js", chunks, rounds],
        cwd=CLIENT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"The render benchmark failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["pattern"], row["component"])].append(row)

    print(f"\nA React component showing a reply of {chunks} chunks as they arrive (60 Hz animation frames).")
    print("flood: each chunk in its own task, as fast as the event loop takes them; paced: one per millisecond.")
    print(f"Median of {rounds} rounds; time = first chunk to the whole reply on screen.\n")
    print("| stream | component | renders | renders/s | ratio (renders) | time (ms) |")
    print("|---|---|---:|---:|---:|---:|")
    for pattern in ("flood", "paced"):
        base = groups.get((pattern, "naive"))
        base_renders = statistics.median(r["renders"] for r in base) if base else None
        for component in ("naive", "useConversation"):
            items = groups.get((pattern, component))
            if not items:
                continue
            renders = statistics.median(r["renders"] for r in items)
            per_second = statistics.median(r["renders_per_s"] for r in items)
            ms = statistics.median(r["ms"] for r in items)
            ratio = f"{renders / base_renders:.3f}x" if base_renders else "-"
            label = "naive: useState per change" if component == "naive" else "`useConversation`"
            print(f"| {pattern} | {label} | {renders:g} | {per_second:.0f} | {ratio} | {ms:.0f} |")
