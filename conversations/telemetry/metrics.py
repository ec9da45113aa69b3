"""The OpenTelemetry instruments of the app. Imported only when telemetry is on.

STUB (issue 17 groundwork): the functions the facade calls, with its signatures.
"""

from __future__ import annotations

__all__ = [
    "record_extraction",
    "record_first_chunk",
    "record_realtime_flush",
    "record_tokens",
    "record_turn",
    "sse_clients_changed",
]


def record_turn(*, agent: str, outcome: str, duration_s: float | None, queue_wait_s: float | None) -> None:
    pass


def record_first_chunk(*, agent: str, seconds: float) -> None:
    pass


def record_tokens(*, agent: str, model: str, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
    pass


def record_extraction(*, extractor: str, content_type: str, seconds: float, outcome: str) -> None:
    pass


def record_realtime_flush(*, backend: str, events: int, requests: int, seconds: float) -> None:
    pass


def sse_clients_changed(delta: int) -> None:
    pass
