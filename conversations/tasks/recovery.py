"""The documented alias of ``django_ai.conversations.turns.sweeps.start_recovery_loop``
(docs/deployment.md); it only re-exports."""

from ..turns.sweeps import start_recovery_loop

__all__ = ["start_recovery_loop"]
