"""Documented aliases of modules that moved into ``django_ai.conversations.turns``; they only
re-export.

- ``tasks.turns.answer_pending``: the dotted path of the turn task in the queues of deployments
  that ran an earlier release (``turns.tasks.answer_pending``);
- ``tasks.recovery.start_recovery_loop`` (docs/deployment.md): ``turns.sweeps.start_recovery_loop``.
"""
