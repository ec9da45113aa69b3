"""The turn task: answer the waiting messages of one conversation."""

from __future__ import annotations

from typing import Any

from ..internal.tasks_compat import task

__all__ = ["answer_pending"]


def _configured_target() -> dict[str, str]:
    from ..conf import ai_settings

    return {"backend": ai_settings.TASK_BACKEND, "queue_name": ai_settings.TASK_QUEUE}


# Django validates a task against its backend and queue when it is declared, so it is declared on
# the configured ones (a backend limited to QUEUES=["turns"] would refuse the "default" queue).
# Every enqueue targets the settings of the moment again (dispatch.enqueue_task).
@task(**_configured_target())
def answer_pending(session_id: str, drain: bool = False) -> dict[str, Any]:
    """Answer the oldest waiting user message of conversation ``session_id`` (all of them, in
    arrival order, when ``drain``), under the conversation's lease.

    Without ``drain`` the task enqueues itself again when more messages wait, so a worker goes
    back to its queue between turns and busy conversations do not hold it. Returns at once when
    another turn holds the conversation: that turn takes the new messages up when it ends.
    """
    from ..runner import process_pending
    from .recovery import maybe_recover

    maybe_recover()
    outcomes = process_pending(session_id, max_turns=None if drain else 1)
    return {
        "session_id": str(session_id),
        "turns": [{"message_id": str(o.user_message.pk), "status": str(o.status)} for o in outcomes],
    }
