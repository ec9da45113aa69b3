"""Telemetry: OpenTelemetry traces and metrics of turns, tools, model calls, extraction and the
realtime flush, the cost of a turn, and the ids every log line of a turn carries
(docs/observability.md).

The rest of the app calls only this facade. Without the ``otel`` extra (``opentelemetry-api``),
or with ``DJANGO_AI["TELEMETRY_ENABLED"] = False``, every function here is a no-op: the check
(:func:`enabled`) is made once, and nothing of OpenTelemetry is imported.

STUB (issue 17 groundwork): the signatures below are the contract; ``tracing.py``, ``metrics.py``,
``cost.py`` and ``logs.py`` implement them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

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
    "span",
    "sse_clients_changed",
    "trace_carrier",
]


class SpanHandle:
    """What ``with span(...) as handle`` gives: set attributes, record an error, set the outcome.
    The no-op handle accepts everything and does nothing."""

    def set(self, **attributes: Any) -> None:
        """Set attributes (None values are skipped)."""

    def error(self, exc: BaseException, *, code: str | None = None) -> None:
        """Mark the span failed with ``exc`` (its type and ``code``, never the message of an
        exception the agent raised: it may carry user data)."""


def enabled() -> bool:
    """Whether OpenTelemetry is installed and telemetry is on (decided once)."""
    return False


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[SpanHandle]:
    """A span named ``name`` (``django_ai.turn``, ``django_ai.agent``, ``gen_ai.chat <model>``,
    ``django_ai.tool <name>``, ``django_ai.file_wait``, ``django_ai.extraction``,
    ``django_ai.realtime.flush``), child of the current one."""
    yield SpanHandle()


def trace_carrier() -> dict[str, str]:
    """The current trace context as W3C ``traceparent``/``tracestate`` strings, to store with a
    message so the task that answers it continues the trace; {} when telemetry is off."""
    return {}


@contextmanager
def continued_from(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Make the trace context stored in ``carrier`` the current one within the block."""
    yield


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Within the block every log record carries these ids (``conversation_id``, ``message_id``)
    as attributes, for ``telemetry.logs.TurnContextFilter`` and formatters."""
    yield


def record_turn(*, agent: str, outcome: str, duration_s: float | None, queue_wait_s: float | None) -> None:
    """A turn ended (outcome: completed, failed, cancelled, awaiting_approval)."""


def record_first_chunk(*, agent: str, seconds: float) -> None:
    """The time from a turn's start to its first streamed chunk."""


def record_tokens(*, agent: str, model: str, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
    """Tokens (and cost, in USD, when known) of one turn for one model."""


def record_extraction(*, extractor: str, content_type: str, seconds: float, outcome: str) -> None:
    """A file's text extraction ended."""


def record_realtime_flush(*, backend: str, events: int, requests: int, seconds: float) -> None:
    """A realtime flush sent ``events`` in ``requests`` requests."""


def sse_clients_changed(delta: int) -> None:
    """An SSE client connected (+1) or left (-1)."""
