"""The ids a log line of a turn carries (docs/observability.md, "Structured logging").

STUB (issue 17 groundwork): ``log_context`` is the contract; ``TurnContextFilter`` comes with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["log_context"]


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    yield
