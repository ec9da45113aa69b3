"""The turn task: answer the waiting messages of one conversation.

Its dotted path is stored in the task backend's queue. It was
``django_ai.conversations.tasks.turns.answer_pending`` before the turn moved into this package;
that module still re-exports it, so tasks queued by an older release still run.
"""

from __future__ import annotations

from typing import Any

from .. import telemetry
from ..conf import ai_settings
from ..internal.tasks_compat import task
from .enqueue import enqueue_session
from .recovery import maybe_recover
from .runner import process_pending

__all__ = ["answer_pending"]


# Django validates a task against its backend and queue when it is declared, so it is declared on
# the configured ones (a backend limited to QUEUES=["turns"] would refuse the "default" queue).
# Every enqueue targets the settings of the moment again (turns.enqueue).
@task(backend=ai_settings.TASK_BACKEND, queue_name=ai_settings.TASK_QUEUE)
def answer_pending(session_id: str, drain: bool = False, trace: dict[str, str] | None = None) -> dict[str, Any]:
    """Answer the oldest waiting user message of conversation ``session_id`` (all of them, in
    arrival order, when ``drain``), under the conversation's lease.

    Without ``drain`` the task enqueues itself again when more messages wait, so a worker goes
    back to its queue between turns and busy conversations do not hold it. Returns at once when
    another turn holds the conversation: that turn takes the new messages up when it ends.

    ``trace`` is the trace context of the request that scheduled the task (W3C
    ``traceparent``/``tracestate``): its turns continue that trace. Tasks queued without it (by an
    older release, or with telemetry off) start their own. The next task it enqueues does not
    carry it: the messages still waiting came with requests of their own.
    """
    if not ai_settings.TURN_RECOVERY_LOOP:  # a worker with the loop (turns.sweeps) sweeps on that thread
        maybe_recover(schedule=_schedule)
    with telemetry.continued_from(trace):
        processed = process_pending(session_id, max_turns=None if drain else 1)
    if processed.still_waiting:
        _schedule(session_id)
    return {
        "session_id": str(session_id),
        "turns": [{"message_id": str(o.user_message.pk), "status": str(o.status)} for o in processed.outcomes],
    }


def _schedule(session_id: Any) -> Any:
    return enqueue_session(answer_pending, session_id)
