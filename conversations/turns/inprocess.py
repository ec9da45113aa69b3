"""Background threads of the web process, for a task backend that runs tasks in the caller.

Django's ``ImmediateBackend`` (the default ``TASKS``) runs a task inside ``enqueue()``. Called from
a request, that means the request waits for the agent's whole answer (and, under ASGI, a sync
view's thread is shared by many requests). So with such a backend, turns are enqueued from a few
daemon threads here instead (``IN_PROCESS_TURN_THREADS``): the request returns once the message is
saved and the answer streams over the realtime channel, as it would with a real worker.

The threads are daemons: a process that exits does not wait for its agents. The turns it was
running keep a lease nobody renews, and crash recovery picks them up after ``STALE_TURN_TIMEOUT``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections, connections

__all__ = ["InProcessRunner", "in_process_runner"]

logger = logging.getLogger("django_ai.conversations.tasks")


class InProcessRunner:
    """A small pool of daemon threads running submitted callables in order of submission."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0
        self._busy = 0

    def submit(self, func: Callable[[], Any], *, threads: int) -> None:
        """Run ``func`` on one of at most ``threads`` threads (started on demand)."""
        with self._lock:
            self._unfinished += 1
            self._threads = [t for t in self._threads if t.is_alive()]
            if len(self._threads) < threads and self._busy + self._queue.qsize() >= len(self._threads):
                thread = threading.Thread(
                    target=self._work, name=f"django-ai-tasks-{len(self._threads) + 1}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._queue.put(func)

    def _work(self) -> None:
        while True:
            func = self._queue.get()
            if func is _STOP:
                connections.close_all()
                return
            with self._lock:
                self._busy += 1
            try:
                func()
            except Exception:
                logger.exception("A background task of this process failed")
            finally:
                # As after a request: connections past CONN_MAX_AGE (or broken) are closed.
                close_old_connections()
                with self._lock:
                    self._busy -= 1
                    self._unfinished -= 1
                    if self._unfinished == 0:
                        self._idle.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has finished (True) or ``timeout`` passed (False)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Let the queued jobs finish, then end the threads and close their database connections
        (with ``CONN_MAX_AGE`` they stay open between jobs). Later submissions start new threads."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            thread.join(timeout)

    @property
    def unfinished(self) -> int:
        return self._unfinished


def _STOP() -> None:  # a marker: the thread that takes it exits
    pass


_runner = InProcessRunner()


def in_process_runner() -> InProcessRunner:
    """The process-wide runner."""
    return _runner
