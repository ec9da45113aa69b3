"""Spans and trace propagation through OpenTelemetry's API. Imported only when telemetry is on.

Spans come from the application's global TracerProvider (instrumentation scope
``django_ai.conversations``); without an SDK configured they are the API's non-recording spans and
cost little. Propagation is W3C TraceContext through the API's global propagator, so a carrier is
the ``traceparent``/``tracestate`` pair any other service understands.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from .base import SpanHandle

__all__ = ["continued_from", "span", "trace_carrier"]

SCOPE = "django_ai.conversations"


class _Handle(SpanHandle):
    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self.failed = False

    def set(self, **attributes: Any) -> None:
        self._span.set_attributes(_safe(attributes))

    def error(self, exc: BaseException, *, code: str | None = None) -> None:
        # The type only: an exception's message may carry what the user or the agent wrote.
        self.failed = True
        attributes = {"error.type": _type_name(exc)}
        if code:
            attributes["django_ai.error.code"] = code
        self._span.set_attributes(attributes)
        self._span.set_status(Status(StatusCode.ERROR))


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[SpanHandle]:
    tracer = trace.get_tracer(SCOPE)
    # record_exception / set_status_on_exception off: the SDK would store the exception's message.
    with tracer.start_as_current_span(
        name, attributes=_safe(attributes or {}), record_exception=False, set_status_on_exception=False
    ) as current:
        handle = _Handle(current)
        try:
            yield handle
        except BaseException as exc:
            if not handle.failed:
                handle.error(exc)
            raise


def trace_carrier() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def continued_from(carrier: Mapping[str, str]) -> Iterator[None]:
    token = otel_context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        otel_context.detach(token)


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _safe(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes OpenTelemetry accepts: None skipped; str, bool, int, float kept; a sequence of
    them becomes a tuple of one type (strings when mixed); anything else its str()."""
    safe: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, (str, bool, int, float)):
            safe[key] = value
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = [v for v in value if v is not None]
            kinds = {type(v) for v in items}
            if len(kinds) == 1 and kinds <= {str, bool, int, float}:
                safe[key] = tuple(items)
            else:
                safe[key] = tuple(str(v) for v in items)
        else:
            safe[key] = str(value)
    return safe
