"""What telemetry costs a turn: the same turns through ``ConversationService.send_message`` with
telemetry off, with the OpenTelemetry API only, and with the SDK recording.

Modes:
- off: ``DJANGO_AI["TELEMETRY_ENABLED"] = False`` (each facade call is one boolean check);
- API only: telemetry on, no SDK configured: the API's no-op (proxy) providers, what an
  application that installs the ``otel`` extra but exports nothing pays;
- SDK: a global TracerProvider exporting every span through a ``BatchSpanProcessor`` (as a
  deployment exports) to an ``InMemorySpanExporter``, and a MeterProvider read by an
  ``InMemoryMetricReader``; both emptied after each round.

OpenTelemetry sets a global provider once per process, so the SDK rows come last: first off and
API only alternate for ``rounds`` rounds, then the SDK is set and off and SDK alternate (which
runs first changes each round). Each round gives the ratio of a mode's time to that of the off run
just beside it; the table shows the median of those ratios (and of the milliseconds added), so
drift of a loaded machine within and between the phases does not count as telemetry's cost.

Rows: the README's async echo, and an async agent that streams 5 chunks (the first-chunk metric).
The last column shows what one turn produced with the SDK (spans, metric points): the table
measured telemetry doing its work. A second table times the facade calls of one turn alone (the
spans, the log context, the records), in microseconds: the turn's own time varies by more than
telemetry costs on a loaded machine.

``./dev bench telemetry`` (SQLite file database; ``DATABASE_URL=...`` for PostgreSQL);
``--turns=N`` per round (default 50), ``--rounds=N`` (default 10); ``--quick``: 10 turns, one round.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import django

from tests.bench.options import Skipped, int_option, is_quick


def main(argv: list[str]) -> None:
    import importlib.util

    if importlib.util.find_spec("opentelemetry.sdk") is None:
        raise Skipped("the OpenTelemetry SDK is not installed (pip install opentelemetry-sdk)")
    django.setup()
    from tests.bench.db import bench_database

    quick = is_quick(argv)
    turns = int_option(argv, "turns", 10 if quick else 50)
    rounds = int_option(argv, "rounds", 1 if quick else 10)
    with bench_database() as label:
        _run(label, turns, rounds)


def _run(label: str, turns: int, rounds: int) -> None:
    import platform

    from django.test import override_settings
    from opentelemetry import metrics, trace

    from django_ai.conversations import ConversationAgent, telemetry
    from django_ai.conversations.context import ResponseStream
    from django_ai.conversations.registry import register_agent
    from django_ai.conversations.service import ConversationService

    class EchoAgent(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            return f"You said: {message}"

    class StreamingEchoAgent(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            with ResponseStream() as stream:
                for word in f"You said: {message} !".split():
                    stream.write(word + " ")
            return stream.content

    register_agent("bench/telemetry-echo", EchoAgent)
    register_agent("bench/telemetry-stream", StreamingEchoAgent)
    agents = [("async echo (README)", "bench/telemetry-echo"), ("async, 5 chunks streamed", "bench/telemetry-stream")]

    if type(trace.get_tracer_provider()).__name__ != "ProxyTracerProvider" or (
        type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider"
    ):
        raise Skipped("an OpenTelemetry SDK is already configured in this process (OTEL_PYTHON_*_PROVIDER?)")

    off = override_settings(DJANGO_AI=_django_ai_off())

    def turn_runner(path: str) -> Callable[[int], None]:
        session = ConversationService.create_session(path)

        def run(n: int) -> None:
            result = ConversationService.send_message(session.pk, f"message {n}")
            if result["status"] != "success":
                raise RuntimeError(f"benchmark turn failed: {result}")

        return run

    def measure(path: str, telemetry_off: bool) -> float:
        if telemetry_off:
            off.enable()
        telemetry.reset()
        try:
            run = turn_runner(path)
            started = time.perf_counter()
            for n in range(turns):
                run(n)
            return (time.perf_counter() - started) / turns
        finally:
            if telemetry_off:
                off.disable()
            telemetry.reset()

    def warm_up() -> None:
        for _, path in agents:
            for telemetry_off in (True, False):
                if telemetry_off:
                    off.enable()
                telemetry.reset()
                try:
                    run = turn_runner(path)
                    for n in range(5):
                        run(n)
                finally:
                    if telemetry_off:
                        off.disable()
                    telemetry.reset()

    timings: dict[tuple[str, str], list[float]] = {}

    def phase(mode: str, after_round: Callable[[], None] | None = None) -> None:
        warm_up()
        for n in range(rounds):
            for _, path in agents:
                # Off and on run back to back, in turns first, so that a change of the machine's
                # load hits both alike; each round gives one ratio.
                for telemetry_off in (True, False) if n % 2 == 0 else (False, True):
                    key = (f"off ({mode} phase)", path) if telemetry_off else (mode, path)
                    timings.setdefault(key, []).append(measure(path, telemetry_off))
                if after_round:
                    after_round()

    calls_per_mode = max(turns * rounds * 10, 1000)

    def calls_alone(telemetry_off: bool) -> float:
        if telemetry_off:
            off.enable()
        telemetry.reset()
        try:
            for _ in range(100):
                _one_turns_calls(telemetry)
            started = time.perf_counter()
            for _ in range(calls_per_mode):
                _one_turns_calls(telemetry)
            return (time.perf_counter() - started) / calls_per_mode
        finally:
            if telemetry_off:
                off.disable()
            telemetry.reset()

    phase("API only")
    alone = {"off": calls_alone(True), "API only": calls_alone(False)}

    exporter, reader = _install_sdk()
    phase("SDK", after_round=lambda: (_flush_spans(), exporter.clear(), reader.get_metrics_data()))
    alone["SDK"] = calls_alone(False)
    _flush_spans()
    exporter.clear()
    reader.get_metrics_data()

    # What one turn of each agent produces with the SDK on.
    produced: dict[str, tuple[int, int]] = {}
    telemetry.reset()
    for _, path in agents:
        _flush_spans()
        exporter.clear()
        reader.get_metrics_data()
        turn_runner(path)(0)
        _flush_spans()
        spans = len(exporter.get_finished_spans())
        produced[path] = (spans, _count_points(reader.get_metrics_data()))

    print(
        f"database: {label}; Python {platform.python_version()}; Django {django.get_version()}; "
        f"{turns} turns x {rounds} rounds per row\n"
    )
    print(
        "| agent | off | API only | ratio | added | off (SDK phase) | SDK | ratio | added | one turn with the SDK |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    for name, path in agents:
        cells = [name]
        for mode in ("API only", "SDK"):
            offs, ons = timings[(f"off ({mode} phase)", path)], timings[(mode, path)]
            ratio = statistics.median(on / off for on, off in zip(ons, offs, strict=True))
            added = statistics.median(on - off for on, off in zip(ons, offs, strict=True))
            cells += [
                f"{statistics.median(offs) * 1000:.2f}",
                f"{statistics.median(ons) * 1000:.2f}",
                f"{ratio:.2f}x",
                f"{added * 1000:+.2f}",
            ]
        spans, points = produced[path]
        cells.append(f"{spans} spans, {points} metric points")
        print("| " + " | ".join(cells) + " |")
    print(
        "\n(ms per turn, median of the rounds; ratio and added ms: the median over the rounds of the"
        " mode's time against that of the off run beside it)"
    )
    print(
        f"\nThe telemetry calls of one turn alone (two spans, the log context, two records), {calls_per_mode} times:\n"
    )
    print("| telemetry | µs per turn |\n|---|---:|")
    for mode, seconds in alone.items():
        print(f"| {mode} | {seconds * 1e6:.1f} |")


def _one_turns_calls(telemetry: Any) -> None:
    """The facade calls a turn of an agent that streams makes (turns/runner.py, turns/execution.py),
    without the turn: what telemetry itself costs, free of the database's and the threads' noise."""
    carrier = telemetry.trace_carrier()
    ids = {"conversation_id": "3f1c", "message_id": "9a2b"}
    with telemetry.log_context(**ids), telemetry.span("django_ai.turn", {"django_ai.message.id": "9a2b"}) as turn:
        turn.set(**{"django_ai.agent": "bench/echo", "django_ai.owner.kind": "anonymous"})
        with telemetry.continued_from(carrier), telemetry.log_context(**ids):
            with telemetry.span("django_ai.agent", {"django_ai.agent": "bench/echo"}):
                pass
        turn.set(**{"django_ai.turn.outcome": "completed", "django_ai.turn.total_ms": 12})
        telemetry.record_turn(agent="bench/echo", outcome="completed", duration_s=0.012, queue_wait_s=0.002)
        telemetry.record_first_chunk(agent="bench/echo", seconds=0.004)


def _django_ai_off() -> dict[str, Any]:
    from django.conf import settings

    return {**getattr(settings, "DJANGO_AI", {}), "TELEMETRY_ENABLED": False}


def _install_sdk() -> tuple[Any, Any]:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    # Delta temporality: a collection holds what the turns since the previous one recorded.
    delta = AggregationTemporality.DELTA
    reader = InMemoryMetricReader(preferred_temporality={Counter: delta, UpDownCounter: delta, Histogram: delta})
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return exporter, reader


def _flush_spans() -> None:
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()
    provider.force_flush()


def _count_points(data: Any) -> int:
    if data is None:
        return 0
    return sum(
        len(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )
