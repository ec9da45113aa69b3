"""The documented alias of ``django_ai.conversations.turns.scheduling`` (docs/turns.md names
``django_ai.conversations.dispatch.schedule_session``); it only re-exports.

``enqueue_task`` (``turns.enqueue``) is re-exported until file extraction imports it from there.
"""

from .turns.enqueue import enqueue_task
from .turns.scheduling import schedule_session

__all__ = ["enqueue_task", "schedule_session"]
