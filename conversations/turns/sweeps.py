"""When the stale-turn sweep (``turns.recovery``) runs, and in which processes.

- A process configured to (``DJANGO_AI["TURN_RECOVERY_LOOP"] = True``, meant for the settings of
  task worker processes) sweeps at start and then every ``TURN_RECOVERY_INTERVAL`` seconds in a
  daemon thread (:func:`autostart`, from the app's ``ready()``); a custom worker can call
  :func:`start_recovery_loop` from its entry point instead.
- A web process whose turns run in-process (a task backend that runs tasks in the caller) starts
  the same loop at its first request (:func:`recover_from_web_process`, a ``request_started``
  receiver), so turns a restart cut off are recovered without waiting for a new message, unless
  ``DJANGO_AI["TURN_RECOVERY_IN_WEB"]`` is False (test settings: tests decide when recovery runs).
  Started on a request, not in ``ready()``: ``migrate`` and the other management commands load the
  apps too and must not start threads.
- The turn task sweeps at its start, at most once per ``TURN_RECOVERY_INTERVAL`` per process
  (``recovery.maybe_recover``), unless the process is configured to run the loop above
  (``TURN_RECOVERY_LOOP``: a sweep would only delay the turn it starts), and
  ``manage.py recover_turns`` on demand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.apps import apps
from django.core.signals import request_started
from django.db import connections

from ..conf import ai_settings
from .notify import logger
from .recovery import RecoveredTurn, recover_stale_turns
from .scheduling import schedule_session, turns_run_in_process

__all__ = ["WEB_RECOVERY_UID", "autostart", "connect", "recover_from_web_process", "recover_now", "start_recovery_loop"]

#: dispatch_uid of :func:`recover_from_web_process` on ``request_started``.
WEB_RECOVERY_UID = "django_ai_recover_from_web_process"


def recover_now(*, stale_after: float | None = None, action: str | None = None) -> list[RecoveredTurn]:
    """One sweep, scheduling the conversations it leaves with messages to answer."""
    return recover_stale_turns(schedule=schedule_session, stale_after=stale_after, action=action)


_loop_thread: threading.Thread | None = None
_loop_lock = threading.Lock()


def start_recovery_loop(interval: float | None = None) -> threading.Thread | None:
    """Start (once per process) a daemon thread that sweeps at once and then every ``interval``
    seconds (``TURN_RECOVERY_INTERVAL``). Call it from a custom worker's entry point, or set
    ``DJANGO_AI["TURN_RECOVERY_LOOP"]`` in the workers' settings."""
    return _start_loop(interval, lambda: True)


def _start_loop(interval: float | None, should_sweep: Callable[[], bool]) -> threading.Thread:
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None and _loop_thread.is_alive():
            return _loop_thread

        def loop() -> None:
            while not apps.ready:  # started from ready(): wait until every app is loaded
                time.sleep(0.05)
            while True:
                period = float(ai_settings.TURN_RECOVERY_INTERVAL if interval is None else interval)
                try:
                    if should_sweep():
                        recover_now()
                except Exception:  # noqa: BLE001 - e.g. the database is briefly away; try again later
                    logger.exception("Looking for stale turns failed")
                finally:
                    connections.close_all()
                time.sleep(period if period > 0 else 60)

        _loop_thread = threading.Thread(target=loop, name="django-ai-turn-recovery", daemon=True)
        _loop_thread.start()
        return _loop_thread


def _sweeps_in_web_process() -> bool:
    # Checked before every sweep: a process switched to a worker backend leaves it to the workers.
    return float(ai_settings.TURN_RECOVERY_INTERVAL) > 0 and turns_run_in_process()


def recover_from_web_process(sender: Any, **kwargs: Any) -> None:
    """``request_started`` receiver (see :func:`connect`): on a process's first request, when its
    turns run in-process and ``TURN_RECOVERY_IN_WEB`` is on, start the recovery loop; then
    disconnect (decided once)."""
    request_started.disconnect(dispatch_uid=WEB_RECOVERY_UID)
    if not ai_settings.TURN_RECOVERY_IN_WEB:
        return
    try:
        if not _sweeps_in_web_process():
            return
    except Exception:  # noqa: BLE001 - a bad task setting is reported by the system checks
        logger.exception("Could not tell whether turns run in this process; not sweeping for stale turns")
        return
    _start_loop(None, _sweeps_in_web_process)


def connect() -> None:
    """From the app's ``ready()``: a web process's first request may start the loop."""
    request_started.connect(recover_from_web_process, dispatch_uid=WEB_RECOVERY_UID)


def autostart() -> None:
    """From the app's ``ready()``: a process with ``TURN_RECOVERY_LOOP`` (a task worker) sweeps for
    stale turns at start and then every ``TURN_RECOVERY_INTERVAL`` seconds."""
    if ai_settings.TURN_RECOVERY_LOOP and float(ai_settings.TURN_RECOVERY_INTERVAL) > 0:
        start_recovery_loop()
