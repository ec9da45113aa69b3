"""Spans and trace propagation through OpenTelemetry's API. Imported only when telemetry is on.

STUB (issue 17 groundwork): ``span``, ``trace_carrier``, ``continued_from`` as the facade calls them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .base import SpanHandle

__all__ = ["continued_from", "span", "trace_carrier"]


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    yield SpanHandle()


def trace_carrier() -> dict[str, str]:
    return {}


@contextmanager
def continued_from(carrier: Mapping[str, str]) -> Iterator[None]:
    yield
