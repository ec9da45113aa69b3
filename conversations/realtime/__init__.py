"""Realtime delivery of events: the configured backend and ``publish``."""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..conf import ai_settings
from ..constants import EventName
from ..internal.cache import on_settings_reload
from .base import BaseRealtimeBackend
from .channels import owner_channel, session_channel
from .events import build_event

__all__ = [
    "BaseRealtimeBackend",
    "build_event",
    "get_backend",
    "owner_channel",
    "publish",
    "reset_backend",
    "session_channel",
]

logger = logging.getLogger("django_ai.conversations.realtime")


_backend: BaseRealtimeBackend | None = None
_backend_lock = threading.Lock()


def get_backend() -> BaseRealtimeBackend:
    """The process-wide realtime backend, built on first use from ``DJANGO_AI['REALTIME']``
    (its ``BACKEND`` class given its ``OPTIONS``; ``conf`` maps the old keys into that shape)."""
    global _backend
    if _backend is None:
        with _backend_lock:
            if _backend is None:
                config = ai_settings.REALTIME
                _backend = config["BACKEND"](options=config["OPTIONS"])
    return _backend


@on_settings_reload
def reset_backend() -> None:
    """Close the current backend; the next ``get_backend()`` builds one from the settings."""
    global _backend
    with _backend_lock:
        old, _backend = _backend, None
    if old is not None:
        try:
            old.close()
        except Exception:
            logger.exception("Closing the realtime backend failed")


#: The failure being reported (a backend that cannot be built or refuses events), so that it is
#: logged once, not once per chunk.
_failing: str | None = None


def publish(name: EventName | str, /, *, session_id: Any, channel: str | None = None, **data: Any) -> dict[str, Any]:
    """Build an event and hand it to the backend. Never raises: failures are logged, once per
    distinct failure until sending works again."""
    global _failing
    payload = build_event(name, session_id=session_id, **data)
    target = channel or session_channel(session_id)
    try:
        get_backend().send(target, str(EventName(name)), payload)
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        if failure != _failing:
            _failing = failure
            logger.exception(
                "Could not send the %s event on %s; the same failure is not logged again until sending works.",
                name,
                target,
            )
        else:
            logger.debug("Could not send the %s event on %s: %s", name, target, failure)
    else:
        if _failing is not None:
            _failing = None
            logger.warning("Realtime events can be sent again.")
    return payload
