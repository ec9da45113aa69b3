"""The OpenTelemetry SDK as the tests' application configures it: a TracerProvider exporting to an
InMemorySpanExporter and a MeterProvider read by an InMemoryMetricReader, set once per process as
the global providers (OpenTelemetry allows one global provider per process), emptied per test.

A test module takes them through a fixture of its own::

    @pytest.fixture
    def telemetry():
        with recording() as recorded:
            yield recorded

    def test_x(telemetry):
        ...
        assert telemetry.span("django_ai.turn").attributes[...]
        assert telemetry.metric("django_ai.turns")

The worker tests use :func:`configure_file_export` from a settings module (a real application
configures the SDK in its settings or its wsgi module in the same way): spans are written as JSON
lines to the file the ``DJANGO_AI_TEST_SPAN_FILE`` environment variable names.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SPAN_FILE_ENV = "DJANGO_AI_TEST_SPAN_FILE"

_lock = threading.Lock()
_installed: tuple[InMemorySpanExporter, InMemoryMetricReader] | None = None


# In a forked child the SDK's providers detect the process's resource again, on a thread pool.
# The test process forks after starting Tika's JVM (tests/test_files_extraction.py), and there
# that detection hangs the child for good (an isinstance check reaches JPype's classes, whose JVM
# did not survive the fork, while holding the GIL). The test providers keep their resource in a
# child; their locks are made anew, as the SDK's own fork handlers do.
class _TracerProvider(TracerProvider):
    def _handle_fork(self) -> None:
        self._tracers_lock = threading.Lock()


class _MeterProvider(MeterProvider):
    def _handle_fork(self) -> None:
        self._lock = threading.Lock()
        self._meter_lock = threading.Lock()
        type(self)._all_metric_readers_lock = threading.Lock()


def install() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    """Set the global providers (once per process) and answer their exporter and reader."""
    global _installed
    with _lock:
        if _installed is None:
            exporter = InMemorySpanExporter()
            tracer_provider = _TracerProvider()
            tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(tracer_provider)
            # Delta temporality: each collection holds what was recorded since the previous one, so a
            # test starts from nothing by collecting once and dropping the result.
            reader = InMemoryMetricReader(
                preferred_temporality={
                    Counter: AggregationTemporality.DELTA,
                    UpDownCounter: AggregationTemporality.DELTA,
                    Histogram: AggregationTemporality.DELTA,
                }
            )
            metrics.set_meter_provider(_MeterProvider(metric_readers=[reader]))
            _installed = (exporter, reader)
        return _installed


@dataclass
class MetricPoint:
    name: str
    attributes: dict[str, Any]
    value: float | None  # a sum's value (counters)
    count: int | None  # a histogram's count
    total: float | None  # a histogram's sum
    unit: str


@dataclass
class Recorded:
    """What the SDK received during one test."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    _points: list[MetricPoint] = field(default_factory=list)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, in the order they ended; only those named ``name`` when given."""
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The one finished span named ``name`` (AssertionError when none or several)."""
        found = self.spans(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in self.spans()]}"
        return found[0]

    def metrics(self) -> list[MetricPoint]:
        """Every metric data point recorded since the test began."""
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        is_histogram = hasattr(point, "bucket_counts")
                        self._points.append(
                            MetricPoint(
                                name=metric.name,
                                attributes=dict(point.attributes or {}),
                                value=None if is_histogram else point.value,
                                count=point.count if is_histogram else None,
                                total=point.sum if is_histogram else None,
                                unit=metric.unit or "",
                            )
                        )
        return list(self._points)

    def metric(self, name: str) -> list[MetricPoint]:
        """The data points of the instrument ``name`` recorded since the test began."""
        return [p for p in self.metrics() if p.name == name]

    def clear(self) -> None:
        self.exporter.clear()
        self.reader.get_metrics_data()
        self._points.clear()


@contextmanager
def recording() -> Iterator[Recorded]:
    """The global SDK providers, emptied, with the facade deciding ``enabled()`` afresh (the
    settings of the test apply); emptied again after."""
    from django_ai.conversations import telemetry

    exporter, reader = install()
    recorded = Recorded(exporter, reader)
    recorded.clear()
    telemetry.reset()
    try:
        yield recorded
    finally:
        recorded.clear()
        telemetry.reset()


def all_attribute_values(spans: Sequence[ReadableSpan]) -> list[str]:
    """Every attribute value of every span (and of its events), as strings, for tests that search
    them for what must never be there."""
    values: list[str] = []
    for s in spans:
        sources = [s.attributes or {}] + [e.attributes or {} for e in s.events]
        for attributes in sources:
            for value in attributes.values():
                if isinstance(value, (list, tuple)):
                    values.extend(str(v) for v in value)
                else:
                    values.append(str(value))
        if s.status.description:
            values.append(s.status.description)
    return values


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span to a file as one JSON line (name, trace and span ids in hex,
    parent span id, attributes): the worker tests read the spans of another process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for s in spans:
            context = s.get_span_context()
            assert context is not None
            lines.append(
                json.dumps(
                    {
                        "name": s.name,
                        "trace_id": format(context.trace_id, "032x"),
                        "span_id": format(context.span_id, "016x"),
                        "parent_span_id": format(s.parent.span_id, "016x") if s.parent else None,
                        "attributes": {k: _jsonable(v) for k, v in (s.attributes or {}).items()},
                        "status": s.status.status_code.name,
                    }
                )
            )
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def configure_file_export(path: str) -> None:
    """Set a global TracerProvider that writes every finished span to ``path`` (JSON lines)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    trace.set_tracer_provider(provider)


def read_span_file(path: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
