"""Crash recovery and re-running failed messages (the sweep, the commands, the admin action).

A dead worker is reproduced by the rows it leaves behind (a lease nobody renews, a message left
``processing``, a half-streamed answer); tests/test_turn_workers.py kills a real worker process.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from django_ai.conversations.constants import EventName, MessageType, ProcessingStatus
from django_ai.conversations.exceptions import TurnInterrupted
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from django_ai.conversations.signals import turn_failed, turn_finished
from django_ai.conversations.testing import isolated_registry
from django_ai.conversations.turns import recovery, sweeps
from django_ai.conversations.turns.recovery import RecoveredTurn
from django_ai.conversations.turns.scheduling import rerun_messages, schedule_session
from django_ai.conversations.turns.sweeps import recover_now

from .turns_support import AGENTS, DUMMY, IMMEDIATE, ai_settings, post, reply_to, status_of, waiting_message


@pytest.fixture(autouse=True)
def _setup():
    with isolated_registry(AGENTS), override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=0):
        yield


def _crashed_turn(path="slow", *, attempts=1, heartbeat_age=120, partial=True, **fields):
    """The rows a worker leaves when it dies mid-turn."""
    session = ConversationService.create_session(path)
    long_ago = timezone.now() - timedelta(seconds=heartbeat_age + 5)
    message = waiting_message(
        session,
        "slow 0",
        processing_status=ProcessingStatus.PROCESSING,
        attempts=attempts,
        started_at=long_ago,
        **fields,
    )
    if partial:
        ConversationMessage.objects.create(
            session=session,
            message_type=MessageType.AGENT,
            reply_to=message,
            content="work",
            processing_status=ProcessingStatus.STREAMING,
            stream_sequence=1,
        )
    ConversationSession.objects.filter(pk=session.pk).update(
        turn_token="dead-worker",
        active_turn=message.pk,
        turn_heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age),
    )
    return session, message


@pytest.mark.django_db(transaction=True)
def test_stale_turn_is_failed_with_a_notice_signals_and_events(events):
    session, message = _crashed_turn()
    received = []
    handlers = [
        (turn_failed, lambda sender, exception, **kw: received.append(("failed", type(exception)))),
        (turn_finished, lambda sender, status, **kw: received.append(("finished", str(status)))),
    ]
    for signal, handler in handlers:
        signal.connect(handler)
    try:
        done = recover_now()
    finally:
        for signal, handler in handlers:
            signal.disconnect(handler)
    assert done == [RecoveredTurn(session.pk, message.pk, "failed")]
    assert status_of(message) == ProcessingStatus.FAILED
    partial = reply_to(message)
    assert partial.processing_status == ProcessingStatus.FAILED
    assert partial.content == "work" and partial.metadata["interrupted"] is True
    notice = reply_to(message, MessageType.SYSTEM)
    assert notice.metadata == {"code": "turn_interrupted", "attempts": 1, "error_id": notice.metadata["error_id"]}
    session.refresh_from_db()
    assert (session.turn_token, session.active_turn) == ("", None)
    assert received == [("failed", TurnInterrupted), ("finished", "failed")]
    statuses = {(p["message_id"], p["status"]) for p in events.of(EventName.MESSAGE_STATUS)}
    assert {(str(message.pk), "failed"), (str(partial.pk), "failed")} <= statuses


@pytest.mark.django_db(transaction=True)
def test_stale_turn_is_retried_and_answered_again():
    session, message = _crashed_turn()
    with ai_settings(STALE_TURN_ACTION="retry", IN_PROCESS_TURN_THREADS=0):
        done = recover_now()
    assert done == [RecoveredTurn(session.pk, message.pk, "retried")]
    assert status_of(message) == ProcessingStatus.COMPLETED
    answers = ConversationMessage.objects.filter(reply_to=message, message_type=MessageType.AGENT).order_by("timestamp")
    assert [(a.processing_status, a.content) for a in answers] == [
        (ProcessingStatus.FAILED, "work"),
        (ProcessingStatus.COMPLETED, "answered on attempt 2"),
    ]
    assert answers[1].metrics["attempt"] == 2


@pytest.mark.django_db(transaction=True)
def test_retry_stops_after_max_attempts():
    session, message = _crashed_turn(attempts=2)
    with ai_settings(STALE_TURN_ACTION="retry", MAX_TURN_ATTEMPTS=2):
        [done] = recover_now()
    assert done.action == "failed"
    assert reply_to(message, MessageType.SYSTEM).metadata["code"] == "turn_interrupted"


@pytest.mark.django_db(transaction=True)
def test_a_stale_turn_the_user_wanted_stopped_ends_cancelled():
    session, message = _crashed_turn(cancel_requested_at=timezone.now())
    with ai_settings(STALE_TURN_ACTION="retry"):
        [done] = recover_now()
    assert done.action == "cancelled"
    assert status_of(message) == ProcessingStatus.CANCELLED
    assert reply_to(message, MessageType.SYSTEM) is None


@pytest.mark.django_db(transaction=True)
def test_a_live_turn_is_left_alone():
    session, message = _crashed_turn(heartbeat_age=0)
    assert recover_now() == []
    assert status_of(message) == ProcessingStatus.PROCESSING
    assert ConversationSession.objects.get(pk=session.pk).turn_token == "dead-worker"


@pytest.mark.django_db(transaction=True)
def test_a_processing_message_without_a_lease_is_recovered():
    session, message = _crashed_turn(partial=False)
    ConversationSession.objects.filter(pk=session.pk).update(turn_token="", active_turn=None, turn_heartbeat_at=None)
    assert recover_now() == [RecoveredTurn(session.pk, message.pk, "failed")]


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_recover_each_turn_once():
    crashed = [_crashed_turn() for _ in range(3)]
    results: list[list[RecoveredTurn]] = []

    def sweep():
        from django.db import connections

        try:
            results.append(recover_now())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    recovered = sorted(str(item.message_id) for batch in results for item in batch)
    assert recovered == sorted(str(m.pk) for _, m in crashed)
    assert ConversationMessage.objects.filter(message_type=MessageType.SYSTEM).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_waiting_message_whose_task_was_lost_is_enqueued_again_once():
    with override_settings(TASKS=DUMMY), ai_settings(TASK_BACKEND="recorder"):
        from django_ai.conversations.internal.tasks_compat import task_backends

        recorder = task_backends["recorder"]
        session = ConversationService.create_session("quick-echo")
        message = post(session, "hello")
        old = timezone.now() - timedelta(seconds=600)
        ConversationMessage.objects.filter(pk=message.pk).update(timestamp=old, updated_at=old)
        recorder.clear()
        assert recover_now() == [RecoveredTurn(session.pk, message.pk, "rescheduled")]
        assert [r.args[0] for r in recorder.results] == [str(session.pk)]
        assert recover_now() == []  # not again while the queue works its way to it
        assert len(recorder.results) == 1


@pytest.mark.django_db(transaction=True)
def test_recover_turns_command():
    session, message = _crashed_turn()
    out = StringIO()
    call_command("recover_turns", "--action", "retry", stdout=out)
    assert f"retried: message {message.pk}" in out.getvalue()
    assert status_of(message) == ProcessingStatus.COMPLETED
    out = StringIO()
    call_command("recover_turns", stdout=out)
    assert "No stale turns." in out.getvalue()
    fresh_session, fresh = _crashed_turn(heartbeat_age=5)
    call_command("recover_turns", "--stale-after", "1", stdout=StringIO())
    assert status_of(fresh) == ProcessingStatus.FAILED
    with pytest.raises(CommandError):
        call_command("recover_turns", "--stale-after", "-1")


def _failed_message(path="quick-echo"):
    session = ConversationService.create_session(path)
    result = ConversationService.send_message(session.pk, "hello")
    message = ConversationMessage.objects.get(pk=result["user_message_id"])
    ConversationMessage.objects.filter(pk=message.pk).update(processing_status=ProcessingStatus.FAILED)
    message.refresh_from_db()
    return session, message


@pytest.mark.django_db(transaction=True)
def test_rerun_messages_command():
    session, failed = _failed_message()
    ok_session = ConversationService.create_session("quick-echo")
    ok = ConversationMessage.objects.get(pk=ConversationService.send_message(ok_session.pk, "fine")["user_message_id"])
    out = StringIO()
    call_command("rerun_messages", "--failed", "--dry-run", stdout=out)
    assert f"would re-run: message {failed.pk}" in out.getvalue()
    assert status_of(failed) == ProcessingStatus.FAILED
    out = StringIO()
    call_command("rerun_messages", str(failed.pk), str(ok.pk), stdout=out)
    assert f"re-queued: message {failed.pk}" in out.getvalue()
    assert status_of(failed) == ProcessingStatus.COMPLETED
    assert ConversationMessage.objects.filter(reply_to=failed, message_type=MessageType.AGENT).count() == 2
    assert ConversationMessage.objects.filter(reply_to=ok, message_type=MessageType.AGENT).count() == 1
    with pytest.raises(CommandError, match="Name message ids"):
        call_command("rerun_messages")
    with pytest.raises(CommandError, match="not a valid id"):
        call_command("rerun_messages", "nope")
    with pytest.raises(CommandError, match="No message with id"):
        call_command("rerun_messages", "00000000-0000-0000-0000-000000000000")


@pytest.mark.django_db(transaction=True)
def test_rerun_through_an_agent_message_and_only_failed_ones():
    session, failed = _failed_message()
    requeued = rerun_messages([reply_to(failed)])
    assert [m.pk for m in requeued] == [failed.pk]
    assert rerun_messages([failed]) == []  # answered again: no longer failed


@pytest.mark.django_db(transaction=True)
def test_admin_action_reruns_failed_messages(admin_client):
    session, failed = _failed_message()
    response = admin_client.post(
        "/admin/django_ai_conversations/conversationmessage/",
        {"action": "rerun_failed", "_selected_action": [str(failed.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "1 message(s) queued to be answered again." in response.content.decode()
    assert status_of(failed) == ProcessingStatus.COMPLETED
    response = admin_client.post(
        "/admin/django_ai_conversations/conversationmessage/",
        {"action": "rerun_failed", "_selected_action": [str(failed.pk)]},
        follow=True,
    )
    assert "nothing to re-run" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_maybe_recover_sweeps_at_most_once_per_interval(monkeypatch):
    monkeypatch.setattr(recovery, "_last_sweep", 0.0)
    with ai_settings(TURN_RECOVERY_INTERVAL=3600):
        recovery.maybe_recover(schedule=schedule_session)
        session, message = _crashed_turn()
        recovery.maybe_recover(schedule=schedule_session)
        assert status_of(message) == ProcessingStatus.PROCESSING
        monkeypatch.setattr(recovery, "_last_sweep", 0.0)
        recovery.maybe_recover(schedule=schedule_session)
    assert status_of(message) == ProcessingStatus.FAILED


def test_processes_configured_with_turn_recovery_loop_sweep_from_the_start(monkeypatch):
    started = []
    monkeypatch.setattr(sweeps, "start_recovery_loop", lambda: started.append(True))
    sweeps.autostart()  # the test settings: not a worker
    with ai_settings(TURN_RECOVERY_LOOP=True, TURN_RECOVERY_INTERVAL=0):
        sweeps.autostart()  # the sweep is off
    assert started == []
    with ai_settings(TURN_RECOVERY_LOOP=True):
        sweeps.autostart()
    assert started == [True]
    with pytest.raises(ValueError, match="'fail' or 'retry'"):
        recover_now(action="ignore")
