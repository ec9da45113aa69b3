"""Process-wide components built lazily from settings, and their reset for setting changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_resetters: list[Callable[[], Any]] = []


def on_settings_reload(func: Callable[[], Any]) -> Callable[[], Any]:
    """Register ``func`` to run when DJANGO_AI settings change (e.g. ``cache_clear``)."""
    _resetters.append(func)
    return func


def clear_component_caches() -> None:
    for func in _resetters:
        func()
