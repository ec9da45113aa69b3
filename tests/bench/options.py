"""What every benchmark shares: its command-line options and the way it says it cannot run here.

``--quick`` (``./dev bench --quick``, run by CI) asks each benchmark for its smallest sizes: every
code path once, in seconds, so that a benchmark that no longer runs is noticed the day it breaks.
Its figures mean nothing; nothing is stored or reused.
"""

from __future__ import annotations

__all__ = ["Skipped", "int_option", "is_quick", "option"]


class Skipped(Exception):
    """Raised by a benchmark that cannot run on this machine (no PostgreSQL, Node, Java...); the
    message says what is missing. The runner prints it and goes on with the next benchmark."""


def is_quick(argv: list[str]) -> bool:
    return "--quick" in argv


def option(argv: list[str], name: str, default: str) -> str:
    """The value of ``--name=value`` in ``argv``, or ``default``."""
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return default


def int_option(argv: list[str], name: str, default: int) -> int:
    return int(option(argv, name, str(default)))
