"""Capture realtime events in tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.test import override_settings

from ..realtime import get_backend, reset_backend
from ..realtime.memory import CapturedEvent, MemoryBackend

MEMORY_BACKEND = "django_ai.conversations.realtime.memory.MemoryBackend"


class EventCapture:
    """What ``capture_events()`` yields: the captured events, with helpers to read them."""

    def __init__(self, backend: MemoryBackend):
        self.backend = backend

    @property
    def events(self) -> list[CapturedEvent]:
        return list(self.backend.events)

    def names(self, *, channel: str | None = None) -> list[str]:
        return [e.event for e in self.backend.filter(channel=channel)]

    def of(self, event: Any, *, channel: str | None = None) -> list[dict[str, Any]]:
        """Payloads of the events named ``event`` (optionally on one channel), in order."""
        return [e.payload for e in self.backend.filter(event=str(event), channel=channel)]

    def text(self, message_id: Any = None) -> str:
        """The streamed text (of one message, or of all), rebuilt from ``text_chunk`` events."""
        chunks = [p for p in self.of("text_chunk") if message_id is None or p["message_id"] == str(message_id)]
        return "".join(p["text"] for p in sorted(chunks, key=lambda p: (p["message_id"], p["sequence"])))

    def clear(self) -> None:
        self.backend.clear()


@contextmanager
def capture_events(**options: Any) -> Iterator[EventCapture]:
    """Use the in-memory realtime backend inside the block and yield an :class:`EventCapture`;
    ``options`` are the Memory backend's (``MAX_EVENTS``)."""
    current = dict(getattr(settings, "DJANGO_AI", {}) or {})
    if "REALTIME" in current or options:
        current["REALTIME"] = {"BACKEND": MEMORY_BACKEND, "OPTIONS": options}
    else:
        # The project uses the older keys: keep to them, so that a test which layers an older key
        # (REALTIME_BACKEND, PUSHER) over this block is not overruled by REALTIME.
        current["REALTIME_BACKEND"] = MEMORY_BACKEND
    with override_settings(DJANGO_AI=current):
        reset_backend()
        backend = get_backend()
        assert isinstance(backend, MemoryBackend), type(backend)
        yield EventCapture(backend)
    reset_backend()
