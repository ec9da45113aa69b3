"""Telemetry: OpenTelemetry traces and metrics of turns, tools, model calls, extraction and the
realtime flush, the cost of a turn, and the ids every log line of a turn carries
(docs/observability.md).

The rest of the app calls only this facade. Without the ``otel`` extra (``opentelemetry-api``),
or with ``DJANGO_AI["TELEMETRY_ENABLED"] = False``, every function here is a no-op: the check
(:func:`enabled`) is made once, and nothing of OpenTelemetry is imported.

The signatures below are the contract; ``tracing.py`` (spans, propagation), ``metrics.py``
(instruments), ``logs.py`` (ids on log records) and ``cost.py`` (prices) implement them.
(Issue 17 groundwork: the implementation modules start as stubs.)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from ..conf import ai_settings
from . import logs
from .base import SpanHandle

__all__ = [
    "SpanHandle",
    "continued_from",
    "enabled",
    "log_context",
    "record_extraction",
    "record_first_chunk",
    "record_realtime_flush",
    "record_tokens",
    "record_turn",
    "reset",
    "span",
    "sse_clients_changed",
    "trace_carrier",
]


_NOOP = SpanHandle()
# Telemetry off, span() and continued_from() hand out these (reusable: they hold no state) rather
# than make a context manager per call.
_NO_SPAN = nullcontext(_NOOP)
_NO_CONTEXT = nullcontext()
_enabled: bool | None = None


def enabled() -> bool:
    """Whether OpenTelemetry is installed and telemetry is on (decided once per process;
    :func:`reset` decides again, for tests that change the setting)."""
    global _enabled
    if _enabled is None:
        _enabled = bool(ai_settings.TELEMETRY_ENABLED) and _installed()
        if _enabled:
            # Loaded with the decision, not by the first span, which may be on a path that must
            # not wait (the realtime sender's first delivery).
            _implementation()
    return _enabled


def _installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry") is not None
    except (ImportError, ValueError):  # an import hook that refuses it, a broken install: absent
        return False


def reset() -> None:
    """Decide :func:`enabled` again at the next call (tests)."""
    global _enabled
    _enabled = None


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[SpanHandle]:
    """A span named ``name`` (``django_ai.turn``, ``django_ai.agent``, ``chat <model>``,
    ``execute_tool <name>``, ``django_ai.file_wait``, ``django_ai.extraction``,
    ``django_ai.realtime.flush``), child of the current one."""
    if not enabled():
        return _NO_SPAN
    return _tracing().span(name, attributes)


def trace_carrier() -> dict[str, str]:
    """The current trace context as W3C ``traceparent``/``tracestate`` strings, to pass with the
    task that answers a message so it continues the trace; {} when telemetry is off."""
    return _tracing().trace_carrier() if enabled() else {}


def continued_from(carrier: Mapping[str, str] | None) -> AbstractContextManager[None]:
    """Make the trace context stored in ``carrier`` the current one within the block."""
    if not enabled() or not carrier:
        return _NO_CONTEXT
    return _tracing().continued_from(carrier)


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Within the block every log record carries these ids (``conversation_id``, ``message_id``,
    ``file_id``) as attributes (``telemetry.logs.TurnContextFilter``). Works without
    OpenTelemetry: logging is the standard library's."""
    with logs.log_context(**ids):
        yield


def record_turn(*, agent: str, outcome: str, duration_s: float | None, queue_wait_s: float | None) -> None:
    """A turn ended (outcome: completed, failed, cancelled, awaiting_approval)."""
    if enabled():
        _metrics().record_turn(agent=agent, outcome=outcome, duration_s=duration_s, queue_wait_s=queue_wait_s)


def record_first_chunk(*, agent: str, seconds: float) -> None:
    """The time from a turn's start to its first streamed chunk."""
    if enabled():
        _metrics().record_first_chunk(agent=agent, seconds=seconds)


def record_tokens(*, agent: str, model: str, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
    """Tokens (and cost, in USD, when known) of one turn for one model."""
    if enabled():
        _metrics().record_tokens(
            agent=agent, model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost=cost
        )


def record_extraction(*, extractor: str, content_type: str, seconds: float, outcome: str) -> None:
    """A file's text extraction ended."""
    if enabled():
        _metrics().record_extraction(extractor=extractor, content_type=content_type, seconds=seconds, outcome=outcome)


def record_realtime_flush(*, backend: str, events: int, requests: int, seconds: float) -> None:
    """A realtime flush sent ``events`` in ``requests`` requests."""
    if enabled():
        _metrics().record_realtime_flush(backend=backend, events=events, requests=requests, seconds=seconds)


def sse_clients_changed(delta: int) -> None:
    """An SSE client connected (+1) or left (-1)."""
    if enabled():
        _metrics().sse_clients_changed(delta)


def _tracing() -> Any:
    return _implementation()[0]


def _metrics() -> Any:
    return _implementation()[1]


def _implementation() -> tuple[Any, Any]:
    # Imported only once telemetry is on: both modules import opentelemetry (an optional extra).
    from . import metrics, tracing

    return tracing, metrics
