"""Turns in the background: the turn task, the enqueue-on-commit hook and crash recovery.

See docs/turns.md. ``setup()`` is called from the app's ``ready()``.
"""

from __future__ import annotations

__all__ = ["setup"]


def setup() -> None:
    """Connect the enqueue-on-commit hook, register the checks and, in task worker processes,
    start the stale-turn sweep (in a web process whose turns run in-process it starts with the
    first request)."""
    from . import checks  # noqa: F401  (registers the system checks)
    from . import recovery
    from .hooks import connect

    connect()
    recovery.connect()
    recovery.autostart()
