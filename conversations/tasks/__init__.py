"""Turns in the background: the turn task, the enqueue-on-commit hook and crash recovery.

See docs/turns.md. ``setup()`` is called from the app's ``ready()``.
"""

from __future__ import annotations

__all__ = ["setup"]


def setup() -> None:
    """Connect the enqueue-on-commit hook, register the checks and, in task worker processes,
    start the stale-turn sweep."""
    from . import checks  # noqa: F401  (registers the system checks)
    from .hooks import connect
    from .recovery import autostart

    connect()
    autostart()
