"""Public helpers for testing agents and apps built on Django AI Conversations.

- factories: factory-boy factories for the four models (``SessionFactory``...);
- ``capture_events()``: swap in the in-memory realtime backend and read what was sent;
- ``FakeModel``: a scripted model that streams given text, for agent tests without network.
"""

from .events import EventCapture, capture_events

__all__ = ["EventCapture", "capture_events"]
