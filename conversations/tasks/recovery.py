"""Crash recovery: turns whose worker died, messages whose task got lost, and re-running failed
messages.

A running turn renews its conversation's lease every ``TURN_HEARTBEAT_INTERVAL`` seconds. A lease
not renewed for ``STALE_TURN_TIMEOUT`` seconds belongs to a worker that died (killed, out of
memory, machine gone): :func:`recover_stale_turns` takes the lease over and, per
``STALE_TURN_ACTION``, answers the message again (``"retry"``, at most ``MAX_TURN_ATTEMPTS``
starts in all) or marks it ``failed`` with a notice (``"fail"``). It also enqueues again the
``pending`` messages of idle conversations whose task never ran (e.g. the process died between
the commit and the enqueue).

It runs: in task worker processes, at start and every ``TURN_RECOVERY_INTERVAL`` seconds
(:func:`autostart`, from the app's ``ready()``); in a web process whose turns run in-process (a
task backend that runs tasks in the caller), from its first request on, at the same pace
(:func:`recover_from_web_process`, a ``request_started`` receiver), so turns a restart cut off are
recovered without waiting for a new message; in any process that runs turn tasks, at most once
per ``TURN_RECOVERY_INTERVAL`` (:func:`maybe_recover`); and on demand with ``manage.py
recover_turns``. Running it in several processes at once is safe: every step is a
compare-and-set on the lease or on the message's status.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from ..conf import ai_settings
from ..constants import MessageType, ProcessingStatus
from ..exceptions import TurnInterrupted
from ..models import ConversationMessage, ConversationSession

__all__ = [
    "RecoveredTurn",
    "recover_stale_turns",
    "rerun_messages",
    "maybe_recover",
    "start_recovery_loop",
    "autostart",
    "recover_from_web_process",
    "WORKER_COMMANDS",
]

logger = logging.getLogger("django_ai.conversations.turns")

#: Management commands that run task workers: the recovery loop starts with them.
WORKER_COMMANDS = frozenset({"db_worker", "rqworker", "rqworker-pool", "rqworker_pool"})

RETRIED, FAILED, CANCELLED, RESCHEDULED = "retried", "failed", "cancelled", "rescheduled"


@dataclass(frozen=True)
class RecoveredTurn:
    """One thing recovery did: ``action`` is ``retried``, ``failed``, ``cancelled`` (the user had
    asked to stop it) or ``rescheduled`` (a waiting message whose task was lost)."""

    session_id: Any
    message_id: Any
    action: str


def recover_stale_turns(*, stale_after: float | None = None, action: str | None = None, limit: int = 500) -> list[RecoveredTurn]:
    """Recover the turns of dead workers and the waiting messages whose task was lost."""
    stale_after = float(ai_settings.STALE_TURN_TIMEOUT if stale_after is None else stale_after)
    action = action or ai_settings.STALE_TURN_ACTION
    if action not in ("fail", "retry"):
        raise ValueError(f"action must be 'fail' or 'retry', not {action!r}.")
    now = timezone.now()
    cutoff = now - timedelta(seconds=stale_after)
    done: list[RecoveredTurn] = []
    reschedule: set[Any] = set()

    from ..runner import stale_before

    stale_leases = (
        ConversationSession.objects.exclude(turn_token="")
        .filter(Q(turn_heartbeat_at__lt=stale_before(stale_after)) | Q(turn_heartbeat_at__isnull=True))
        .values_list("pk", "turn_token", "active_turn")[:limit]
    )
    for session_id, old_token, message_id in stale_leases:
        token = uuid.uuid4().hex
        taken = ConversationSession.objects.filter(pk=session_id, turn_token=old_token).update(
            turn_token=token, turn_heartbeat_at=Now()
        )
        if not taken:
            continue  # the turn finished, or another process recovered it
        try:
            if message_id is not None:
                result = _recover_message(message_id, action)
                if result is not None:
                    done.append(result)
        finally:
            from ..runner import release_lease

            release_lease(session_id, token)
        reschedule.add(session_id)

    # A message left `processing` with no lease pointing at it (not the active turn of anyone).
    orphans = (
        ConversationMessage.objects.filter(
            message_type=MessageType.USER,
            processing_status=ProcessingStatus.PROCESSING,
            started_at__lt=cutoff,
        )
        .exclude(session__active_turn=F("pk"))
        .values_list("pk", "session_id")[:limit]
    )
    for message_id, session_id in orphans:
        result = _recover_message(message_id, action)
        if result is not None:
            done.append(result)
            reschedule.add(session_id)

    # Waiting messages of idle conversations whose task never ran. Touching updated_at keeps the
    # next sweeps from enqueueing them again while a backlogged queue works its way to them.
    lost = list(
        ConversationMessage.objects.filter(
            message_type=MessageType.USER,
            processing_status=ProcessingStatus.PENDING,
            timestamp__lt=cutoff,
            updated_at__lt=cutoff,
            session__turn_token="",
        ).values_list("pk", "session_id")[:limit]
    )
    if lost:
        ConversationMessage.objects.filter(pk__in=[pk for pk, _ in lost]).update(updated_at=timezone.now())
        for message_id, session_id in lost:
            if session_id not in reschedule:
                done.append(RecoveredTurn(session_id, message_id, RESCHEDULED))
            reschedule.add(session_id)

    from ..dispatch import schedule_session

    for session_id in reschedule:
        try:
            schedule_session(session_id)
        except Exception:  # noqa: BLE001 - the next sweep tries again
            logger.exception("Recovery could not enqueue the turn of conversation %s", session_id)
    for item in done:
        logger.warning("Recovered the turn of message %s (conversation %s): %s", item.message_id, item.session_id, item.action)
    return done


def _recover_message(message_id: Any, action: str) -> RecoveredTurn | None:
    from ..runner import generic_error_text, publish_status, send_turn_signal
    from ..signals import turn_failed, turn_finished

    now = timezone.now()
    with transaction.atomic():
        message = (
            ConversationMessage.objects.select_for_update()
            .filter(pk=message_id, message_type=MessageType.USER, processing_status=ProcessingStatus.PROCESSING)
            .select_related("session")
            .first()
        )
        if message is None:
            return None  # it finished after all, or never started (then it is still pending)
        partial = list(
            ConversationMessage.objects.select_for_update().filter(
                reply_to=message, message_type=MessageType.AGENT, processing_status=ProcessingStatus.STREAMING
            )
        )
        for agent_message in partial:
            agent_message.processing_status = ProcessingStatus.FAILED
            agent_message.metadata = {**(agent_message.metadata or {}), "interrupted": True}
            agent_message.save(update_fields=["processing_status", "metadata", "updated_at"])
        notice = None
        if message.cancel_requested_at is not None:
            outcome, message.processing_status = CANCELLED, ProcessingStatus.CANCELLED
        elif action == "retry" and message.attempts < int(ai_settings.MAX_TURN_ATTEMPTS):
            outcome, message.processing_status = RETRIED, ProcessingStatus.PENDING
        else:
            outcome, message.processing_status = FAILED, ProcessingStatus.FAILED
            notice = ConversationMessage.objects.create(
                session=message.session,
                message_type=MessageType.SYSTEM,
                content=generic_error_text(),
                reply_to=message,
                metadata={"code": TurnInterrupted.default_code, "attempts": message.attempts},
            )
        message.finished_at = None if outcome == RETRIED else now
        message.save(update_fields=["processing_status", "finished_at", "updated_at"])
    publish_status(message, reason="interrupted")
    for agent_message in partial:
        publish_status(agent_message, reason="interrupted")
    if outcome != RETRIED:
        sender = _agent_class(message.session.agent_path)
        status = ProcessingStatus(message.processing_status)
        if notice is not None:
            send_turn_signal(
                turn_failed, sender, session=message.session, user_message=message,
                exception=TurnInterrupted(f"No heartbeat from the worker answering message {message.pk}."),
            )
        send_turn_signal(
            turn_finished, sender, session=message.session, user_message=message,
            agent_message=partial[-1] if partial else None, status=status, metrics={"stopped": "interrupted"},
        )
    return RecoveredTurn(message.session_id, message.pk, outcome)


def _agent_class(path: str) -> Any:
    from ..agent import ConversationAgent
    from ..exceptions import AgentNotFound
    from ..registry import registry

    try:
        return registry.get(path)
    except AgentNotFound:
        return ConversationAgent


def rerun_messages(messages: Iterable[ConversationMessage]) -> list[ConversationMessage]:
    """Answer failed user messages again: they go back to ``pending`` and their conversations are
    scheduled when the transaction commits. Agent and system messages stand for the user message
    they answer. Messages that did not fail are left alone. Returns the user messages re-queued."""
    from ..dispatch import schedule_session_on_commit

    ids: set[Any] = set()
    for message in messages:
        if message.message_type == MessageType.USER:
            ids.add(message.pk)
        elif message.reply_to_id is not None:
            ids.add(message.reply_to_id)
    requeued: list[ConversationMessage] = []
    with transaction.atomic():
        rows = ConversationMessage.objects.select_for_update().filter(
            pk__in=ids, message_type=MessageType.USER, processing_status=ProcessingStatus.FAILED
        )
        for message in rows:
            message.processing_status = ProcessingStatus.PENDING
            message.started_at = None
            message.finished_at = None
            message.cancel_requested_at = None
            message.save(update_fields=["processing_status", "started_at", "finished_at", "cancel_requested_at", "updated_at"])
            requeued.append(message)
        for session_id in {m.session_id for m in requeued}:
            schedule_session_on_commit(session_id)
    from ..runner import publish_status

    for message in requeued:
        publish_status(message, reason="rerun")
    return requeued


_last_sweep = 0.0
_sweep_lock = threading.Lock()


def maybe_recover() -> None:
    """Sweep for stale turns if this process has not done so for ``TURN_RECOVERY_INTERVAL`` s."""
    global _last_sweep
    interval = float(ai_settings.TURN_RECOVERY_INTERVAL)
    if interval <= 0:
        return
    now = time.monotonic()
    with _sweep_lock:
        if _last_sweep and now - _last_sweep < interval:
            return
        _last_sweep = now
    try:
        recover_stale_turns()
    except Exception:  # noqa: BLE001 - recovery must never stop the turn that triggered it
        logger.exception("Looking for stale turns failed")


_loop_thread: threading.Thread | None = None
_loop_lock = threading.Lock()


def start_recovery_loop(interval: float | None = None) -> threading.Thread | None:
    """Start (once per process) a daemon thread that sweeps at once and then every ``interval``
    seconds (``TURN_RECOVERY_INTERVAL``). Call it from a custom worker's entry point; workers
    started with one of :data:`WORKER_COMMANDS` get it automatically."""
    return _start_loop(interval, lambda: True)


def _start_loop(interval: float | None, should_sweep: Any) -> threading.Thread:
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None and _loop_thread.is_alive():
            return _loop_thread

        def loop() -> None:
            from django.apps import apps

            while not apps.ready:  # started from ready(): wait until every app is loaded
                time.sleep(0.05)
            while True:
                period = float(ai_settings.TURN_RECOVERY_INTERVAL if interval is None else interval)
                try:
                    if should_sweep():
                        recover_stale_turns()
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
    from ..dispatch import turns_run_in_process

    return float(ai_settings.TURN_RECOVERY_INTERVAL) > 0 and turns_run_in_process()


def recover_from_web_process(sender: Any, **kwargs: Any) -> None:
    """``request_started`` receiver (connected by ``tasks.setup()``): on a process's first request,
    when its turns run in-process, start the recovery loop, then disconnect.

    Started on a request, not in ``ready()``: ``migrate`` and the other management commands load
    the apps too and must not start threads; a process that serves requests is the one that runs
    in-process turns (the demo, ``runserver``, a WSGI/ASGI server without task workers).
    """
    from django.core.signals import request_started

    if getattr(sender, "__module__", "").startswith("django.test"):
        # Django's test client: tests decide when recovery runs, a sweep thread would race the
        # stale rows they build. (A server, live_server included, does start it.)
        return
    request_started.disconnect(dispatch_uid=WEB_RECOVERY_UID)
    try:
        if not _sweeps_in_web_process():
            return
    except Exception:  # noqa: BLE001 - a bad task setting is reported by the system checks
        logger.exception("Could not tell whether turns run in this process; not sweeping for stale turns")
        return
    _start_loop(None, _sweeps_in_web_process)


#: dispatch_uid of :func:`recover_from_web_process` on ``request_started``.
WEB_RECOVERY_UID = "django_ai_recover_from_web_process"


def connect() -> None:
    from django.core.signals import request_started

    request_started.connect(recover_from_web_process, dispatch_uid=WEB_RECOVERY_UID)


def is_worker_process(argv: list[str] | None = None) -> bool:
    argv = sys.argv if argv is None else argv
    return len(argv) > 1 and argv[1] in WORKER_COMMANDS


def autostart() -> None:
    """From the app's ``ready()``: task worker processes sweep for stale turns at start and then
    every ``TURN_RECOVERY_INTERVAL`` seconds."""
    if is_worker_process() and float(ai_settings.TURN_RECOVERY_INTERVAL) > 0:
        start_recovery_loop()
