"""The documented alias of ``django_ai.conversations.turns.scheduling`` (docs/turns.md names
``django_ai.conversations.dispatch.schedule_session``); it only re-exports."""

from .turns.scheduling import schedule_session

__all__ = ["schedule_session"]
