"""The documented alias of ``django_ai.conversations.turns.tasks``: turn tasks queued by an earlier
release are stored under ``django_ai.conversations.tasks.turns.answer_pending`` and still run."""

from ..turns.tasks import answer_pending

__all__ = ["answer_pending"]
