"""An in-memory realtime backend that records events, for tests."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .base import BaseRealtimeBackend


@dataclass(frozen=True)
class CapturedEvent:
    channel: str
    event: str
    payload: dict[str, Any] = field(default_factory=dict)


class MemoryBackend(BaseRealtimeBackend):
    """Keeps the last ``MAX_EVENTS`` events (option, default 100 000) in a list-like buffer.

    Use it with ``override_settings(DJANGO_AI={"REALTIME": {"BACKEND": ...MemoryBackend}})`` or
    the ``capture_events`` helper of :mod:`django_ai.conversations.testing`.
    """

    name = "memory"
    default_options: ClassVar[dict[str, Any]] = {"MAX_EVENTS": 100_000}

    def __init__(self, *, options: dict[str, Any] | None = None):
        super().__init__(options=options)
        self._lock = threading.Lock()
        self.events: deque[CapturedEvent] = deque(maxlen=int(self.options["MAX_EVENTS"]))

    def send(self, channel: str, event: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(CapturedEvent(channel, str(event), payload))

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    def filter(self, *, event: str | None = None, channel: str | None = None) -> list[CapturedEvent]:
        with self._lock:
            items = list(self.events)
        return [
            e for e in items if (event is None or e.event == str(event)) and (channel is None or e.channel == channel)
        ]
