"""Public helpers for testing agents and apps built on Django AI Conversations.

- factories: factory-boy factories for the four models (``SessionFactory``...);
- ``isolated_registry()``: register agents for one test and restore the registry afterwards;
- ``capture_events()``: swap in the in-memory realtime backend and read what was sent;
- ``FakeModel``: a scripted model that streams given text, for agent tests without network;
- ``wait_for_turns()``, ``wait_until()``: wait for background turns; ``task_worker()``: run real
  ``db_worker`` processes against the test database.
"""

from typing import Any

from .agents import isolated_registry
from .events import EventCapture, capture_events
from .fake_model import (
    FakeModel,
    FakeModelError,
    FakeReply,
    FakeRequest,
    FakeStream,
    FakeToolCall,
)
from .turns import TaskWorker, task_worker, wait_for_turns, wait_until

__all__ = [
    "EventCapture",
    "FakeModel",
    "FakeModelError",
    "FakeReply",
    "FakeRequest",
    "FakeStream",
    "FakeToolCall",
    "FileFactory",
    "MessageFactory",
    "SessionFactory",
    "TaskWorker",
    "UserFactory",
    "WidgetFactory",
    "capture_events",
    "isolated_registry",
    "task_worker",
    "wait_for_turns",
    "wait_until",
]

_FACTORIES = {"UserFactory", "SessionFactory", "MessageFactory", "WidgetFactory", "FileFactory"}


def __getattr__(name: str) -> Any:
    # Factories import the models and factory-boy: loaded on first use, not with this package.
    if name in _FACTORIES:
        from . import factories

        return getattr(factories, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
