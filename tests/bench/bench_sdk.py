"""The TypeScript SDK's live querysets under bursts of changes (``./dev bench sdk``).

Runs ``frontend_client/bench/live.ts`` in Node: a demo server (runserver, temporary SQLite, Server-
Sent Events), one client writing a burst of N changes to a session, and a listener keeping the
session list current: the SDK's ``live()`` (bursts gathered into one refetch, one refetch in flight
at a time) against a naive listener that refetches on every ``model_change`` event. Both are real
HTTP clients of the same server. Options: ``--bursts=10,50`` ``--rounds=3``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "frontend_client"


def _option(argv: list[str], name: str, default: str) -> str:
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return default


def main(argv: list[str]) -> None:
    if shutil.which("node") is None or not (CLIENT / "node_modules").is_dir():
        raise SystemExit("bench sdk needs Node and frontend_client/node_modules (./dev setup installs them).")
    bursts = _option(argv, "bursts", "10,50")
    rounds = _option(argv, "rounds", "3")
    subprocess.run(["node", "scripts/build.mjs", "--tests"], cwd=CLIENT, check=True)
    env = {"PYTHON": sys.executable, **{k: v for k, v in __import__("os").environ.items() if k != "DATABASE_URL"}}
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
    for (pattern, burst, client), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], not kv[0][2].startswith("naive"))):
        queries = statistics.median(r["queries"] for r in items)
        naive = groups.get((pattern, burst, "naive: refetch per event"))
        base = statistics.median(r["queries"] for r in naive) if naive else queries
        lags = [r["lag_ms"] for r in items if r["reached"]]
        lag = f"{statistics.median(lags):.0f}" if lags else "never"
        current = sum(r["ended_current"] for r in items)
        print(f"| {pattern} | {burst} | {client} | {queries:g} | {queries / base:.2f}x | {lag} | {current}/{len(items)} |")
    print("\n(The server runs on SQLite whatever DATABASE_URL says: it is the demo server.)")
