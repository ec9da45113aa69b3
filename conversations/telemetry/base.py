"""What the facade and the implementation modules share."""

from __future__ import annotations

from typing import Any

__all__ = ["SpanHandle"]


class SpanHandle:
    """What ``with span(...) as handle`` gives: set attributes, record an error. This one (telemetry
    off) accepts everything and does nothing; ``tracing.py`` has the real one."""

    def set(self, **attributes: Any) -> None:
        """Set attributes (None values are skipped)."""

    def error(self, exc: BaseException, *, code: str | None = None) -> None:
        """Mark the span failed with ``exc`` (its type and ``code``, never the message of an
        exception the agent raised: it may carry user data)."""
