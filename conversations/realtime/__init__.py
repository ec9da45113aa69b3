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
from .events import TEXT_CHUNK, build_event

__all__ = [
    "BaseRealtimeBackend",
    "build_event",
    "get_backend",
    "owner_channel",
    "publish",
    "publish_text",
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
    payload = build_event(name, session_id=session_id, **data)
    target = channel or session_channel(session_id)
    try:
        get_backend().send(target, str(EventName(name)), payload)
    except Exception as exc:  # noqa: BLE001 - logged by _report_failure
        _report_failure(str(name), target, exc)
    else:
        if _failing is not None:
            _report_recovery()
    return payload


def publish_text(channel: str, template: dict[str, Any], sequence: int, text: str) -> None:
    """Hand one streamed write to the backend (``BaseRealtimeBackend.send_text``): what
    ``ResponseStream.write()`` calls for every chunk. ``template`` is the stream's fixed part of
    the payload (``session_id``, ``message_id``), built once per stream. Never raises, as
    :func:`publish`."""
    try:
        (_backend or get_backend()).send_text(channel, template, sequence, text)
    except Exception as exc:  # noqa: BLE001 - logged by _report_failure
        _report_failure(TEXT_CHUNK, channel, exc)
    else:
        if _failing is not None:
            _report_recovery()


def _report_failure(name: str, target: str, exc: Exception) -> None:
    global _failing
    failure = f"{type(exc).__name__}: {exc}"
    if failure != _failing:
        _failing = failure
        logger.error(
            "Could not send the %s event on %s; the same failure is not logged again until sending works.",
            name,
            target,
            exc_info=exc,
        )
    else:
        logger.debug("Could not send the %s event on %s: %s", name, target, failure)


def _report_recovery() -> None:
    global _failing
    _failing = None
    logger.warning("Realtime events can be sent again.")
