"""The OpenTelemetry instruments of the app (docs/observability.md, "Metrics"). Imported only when
telemetry is on: the facade (``telemetry/__init__.py``) calls the ``record_*`` functions here.

The instruments are created once, at the first record, from the application's global
MeterProvider (``opentelemetry.metrics.get_meter``, scope ``django_ai.conversations``); the app
never configures an SDK. Before the application sets its provider, ``get_meter`` answers the
API's proxy meter, whose instruments start recording into the real provider once one is set: an
instrument created early is not lost.

Every attribute set is bounded, so that each instrument has a small, fixed number of series:
the agent's registered path, the model's name, an outcome from a fixed list, the extractor, the
family of a file's content type (``pdf``, ``image`` ...: never the type as sniffed, which has
hundreds of values), the realtime backend. Never an id, a text, a file name or an error message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import metadata as _package_metadata

from opentelemetry import metrics as otel_metrics

__all__ = [
    "SCOPE",
    "content_type_family",
    "record_extraction",
    "record_first_chunk",
    "record_realtime_flush",
    "record_tokens",
    "record_turn",
    "sse_clients_changed",
]

#: The instrumentation scope of every instrument (and span) of the app.
SCOPE = "django_ai.conversations"

# Bucket boundaries (seconds), given as advice to the SDK (the application's views may override
# them). A turn spans milliseconds (an echo) to minutes (a model that calls tools); queue waits
# and first chunks are usually short; an extraction may run for the whole EXTRACTION_TIMEOUT.
_TURN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
_SHORT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_EXTRACTION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# Tokens: the boundaries of the GenAI semantic conventions for gen_ai.client.token.usage.
_TOKEN_BUCKETS = tuple(float(4**n) for n in range(14))  # 1, 4, 16 ... 67108864

_MAX_LABEL = 128


@dataclass(frozen=True)
class _Instruments:
    turns: otel_metrics.Counter
    turn_duration: otel_metrics.Histogram
    queue_wait: otel_metrics.Histogram
    first_chunk: otel_metrics.Histogram
    token_usage: otel_metrics.Histogram
    cost: otel_metrics.Counter
    extraction_duration: otel_metrics.Histogram
    realtime_events: otel_metrics.Counter
    realtime_requests: otel_metrics.Counter
    realtime_flush_duration: otel_metrics.Histogram
    sse_clients: otel_metrics.UpDownCounter


_lock = threading.Lock()
_instruments: _Instruments | None = None


def _version() -> str:
    try:
        return _package_metadata.version("django-ai-first")
    except _package_metadata.PackageNotFoundError:
        return ""


def _histogram(
    meter: otel_metrics.Meter, name: str, *, unit: str, description: str, buckets: tuple[float, ...]
) -> otel_metrics.Histogram:
    try:
        return meter.create_histogram(name, unit, description, explicit_bucket_boundaries_advisory=buckets)
    except TypeError:  # an API older than the advice (or a meter of an SDK without it): its defaults
        return meter.create_histogram(name, unit, description)


def _create() -> _Instruments:
    meter = otel_metrics.get_meter(SCOPE, _version())
    return _Instruments(
        turns=meter.create_counter(
            "django_ai.turns", unit="{turn}", description="Turns that ended, by agent and outcome."
        ),
        turn_duration=_histogram(
            meter,
            "django_ai.turn.duration",
            unit="s",
            description="Time a turn's agent took, from the turn's start to the end of get_response.",
            buckets=_TURN_BUCKETS,
        ),
        queue_wait=_histogram(
            meter,
            "django_ai.turn.queue_wait",
            unit="s",
            description="Time a user message waited, from its save to the start of its turn.",
            buckets=_TURN_BUCKETS,
        ),
        first_chunk=_histogram(
            meter,
            "django_ai.turn.time_to_first_chunk",
            unit="s",
            description="Time from a turn's start to the first chunk of its streamed reply.",
            buckets=_SHORT_BUCKETS,
        ),
        token_usage=_histogram(
            meter,
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens a turn used, per model and token type (input, output).",
            buckets=_TOKEN_BUCKETS,
        ),
        cost=meter.create_counter(
            "django_ai.cost", unit="USD", description="What the turns cost, by agent and model, when known."
        ),
        extraction_duration=_histogram(
            meter,
            "django_ai.extraction.duration",
            unit="s",
            description="Time a file's text extraction took, by extractor, content type family and outcome.",
            buckets=_EXTRACTION_BUCKETS,
        ),
        realtime_events=meter.create_counter(
            "django_ai.realtime.events", unit="{event}", description="Realtime events sent, by backend."
        ),
        realtime_requests=meter.create_counter(
            "django_ai.realtime.requests",
            unit="{request}",
            description="Requests (or publishes) that sent the realtime events, by backend.",
        ),
        realtime_flush_duration=_histogram(
            meter,
            "django_ai.realtime.flush.duration",
            unit="s",
            description="Time one flush of the realtime sender took, by backend.",
            buckets=_FLUSH_BUCKETS,
        ),
        sse_clients=meter.create_up_down_counter(
            "django_ai.sse.clients", unit="{client}", description="SSE clients connected to this process."
        ),
    )


def _get() -> _Instruments:
    global _instruments
    instruments = _instruments
    if instruments is None:
        with _lock:
            if _instruments is None:
                _instruments = _create()
            instruments = _instruments
    return instruments


def _label(value: object) -> str:
    text = str(value) if value is not None else ""
    return text[:_MAX_LABEL] if text else "unknown"


_FAMILY_BY_TYPE = {
    "application/pdf": "pdf",
    "application/json": "text",
    "application/xml": "text",
    "application/rtf": "document",
    "application/msword": "document",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "document",
    "application/vnd.oasis.opendocument.text": "document",
    "application/vnd.ms-excel": "spreadsheet",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "spreadsheet",
    "application/vnd.oasis.opendocument.spreadsheet": "spreadsheet",
    "application/vnd.ms-powerpoint": "presentation",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "presentation",
    "application/vnd.oasis.opendocument.presentation": "presentation",
}
_FAMILY_BY_MAJOR = {"text": "text", "image": "image", "audio": "audio", "video": "video"}


def content_type_family(content_type: str) -> str:
    """The family of a MIME type, the ``django_ai.file.content_type`` of the extraction metric:
    ``text``, ``pdf``, ``document``, ``spreadsheet``, ``presentation``, ``image``, ``audio``,
    ``video`` or ``other``."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    family = _FAMILY_BY_TYPE.get(mime)
    if family is None:
        family = _FAMILY_BY_MAJOR.get(mime.split("/", 1)[0], "other")
    return family


def record_turn(*, agent: str, outcome: str, duration_s: float | None, queue_wait_s: float | None) -> None:
    instruments = _get()
    attributes = {"django_ai.agent": _label(agent), "django_ai.turn.outcome": _label(outcome)}
    instruments.turns.add(1, attributes)
    if duration_s is not None and duration_s >= 0:
        instruments.turn_duration.record(duration_s, attributes)
    if queue_wait_s is not None:
        # Clocks of two hosts (the web process that saved the message, the worker) may disagree.
        instruments.queue_wait.record(max(queue_wait_s, 0.0), {"django_ai.agent": attributes["django_ai.agent"]})


def record_first_chunk(*, agent: str, seconds: float) -> None:
    _get().first_chunk.record(max(seconds, 0.0), {"django_ai.agent": _label(agent)})


def record_tokens(*, agent: str, model: str, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
    instruments = _get()
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": _label(model), "django_ai.agent": _label(agent)}
    if prompt_tokens > 0:
        instruments.token_usage.record(prompt_tokens, {**base, "gen_ai.token.type": "input"})
    if completion_tokens > 0:
        instruments.token_usage.record(completion_tokens, {**base, "gen_ai.token.type": "output"})
    if cost is not None and cost > 0:
        instruments.cost.add(
            cost, {"django_ai.agent": base["django_ai.agent"], "gen_ai.request.model": base["gen_ai.request.model"]}
        )


def record_extraction(*, extractor: str, content_type: str, seconds: float, outcome: str) -> None:
    _get().extraction_duration.record(
        max(seconds, 0.0),
        {
            "django_ai.extractor": _label(extractor),
            "django_ai.file.content_type": content_type_family(content_type),
            "django_ai.extraction.outcome": _label(outcome),
        },
    )


def record_realtime_flush(*, backend: str, events: int, requests: int, seconds: float) -> None:
    instruments = _get()
    attributes = {"django_ai.realtime.backend": _label(backend)}
    if events > 0:
        instruments.realtime_events.add(events, attributes)
    if requests > 0:
        instruments.realtime_requests.add(requests, attributes)
    instruments.realtime_flush_duration.record(max(seconds, 0.0), attributes)


def sse_clients_changed(delta: int) -> None:
    _get().sse_clients.add(delta)
