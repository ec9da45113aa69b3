"""A saved user message enqueues its turn on commit, through Django's Tasks API.

Real parts: the database (SQLite file / PostgreSQL), Django's ImmediateBackend and DummyBackend
(a real backend of django.tasks that records what is enqueued), the admin through the test client.
"""

from __future__ import annotations

import threading

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.test import override_settings

from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.internal.tasks_compat import task_backends
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import isolated_registry, wait_for_turns, wait_until
from django_ai.conversations.turns.scheduling import schedule_session

from . import turns_support as support
from .turns_support import AGENTS, DUMMY, IMMEDIATE, ai_settings, post, reply_to, status_of, waiting_message


@pytest.fixture(autouse=True)
def _agents():
    with isolated_registry(AGENTS):
        yield
    wait_for_turns(15)


@pytest.fixture
def recorder():
    """Turn tasks go to a DummyBackend, which records them instead of running them."""
    with override_settings(TASKS=DUMMY), ai_settings(TASK_BACKEND="recorder", TASK_QUEUE="turns"):
        backend = task_backends["recorder"]
        backend.clear()
        yield backend


def _session(path="quick-echo"):
    return ConversationService.create_session(path)


@pytest.mark.django_db(transaction=True)
def test_orm_message_is_enqueued_once_on_commit_with_configured_backend_and_queue(recorder):
    session = _session()
    with transaction.atomic():
        message = post(session, "hi")
        assert recorder.results == []  # nothing before the commit
    assert len(recorder.results) == 1
    result = recorder.results[0]
    assert result.task.module_path == "django_ai.conversations.turns.tasks.answer_pending"
    assert result.args == [str(session.pk)] or result.args == (str(session.pk),)
    assert result.kwargs == {"drain": False}
    assert result.task.queue_name == "turns"
    assert result.backend == "recorder"
    assert status_of(message) == ProcessingStatus.PENDING


@pytest.mark.django_db(transaction=True)
def test_rolled_back_message_enqueues_nothing(recorder):
    session = _session()

    def post_and_fail() -> None:
        with transaction.atomic():
            post(session, "hi")
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        post_and_fail()
    assert recorder.results == []
    assert not ConversationMessage.objects.filter(session=session).exists()


@pytest.mark.django_db(transaction=True)
def test_only_new_pending_user_messages_not_answered_inline_are_enqueued(recorder):
    session = _session()
    ConversationMessage.objects.create(session=session, message_type=MessageType.USER, content="done already")
    ConversationMessage.objects.create(
        session=session, message_type=MessageType.AGENT, content="x", processing_status=ProcessingStatus.PENDING
    )
    waiting_message(session, "inline")  # saved inside answered_by_caller()
    message = post(session, "queued")
    message.content = "edited"
    message.save()  # an update is not a new message
    assert len(recorder.results) == 1


@pytest.mark.django_db(transaction=True)
def test_send_message_answers_inline_without_a_task(recorder):
    session = _session()
    result = ConversationService.send_message(session.pk, "hello")
    assert result["status"] == "success" and result["response"] == "echo: hello"
    assert recorder.results == []


@pytest.mark.django_db(transaction=True)
def test_in_process_default_answers_in_background_and_the_save_returns_first():
    """ImmediateBackend with background threads: saving returns while the agent still works (the
    agent waits for GATE, which only this test opens after the save returned)."""
    support.GATE.clear()
    with override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=2):
        session = _session("counter")
        message = post(session, "hold")
        wait_until(lambda: status_of(message) == ProcessingStatus.PROCESSING, 10)
        support.GATE.set()
        wait_for_turns(30)
    assert status_of(message) == ProcessingStatus.COMPLETED
    assert reply_to(message).content == "held"


@pytest.mark.django_db(transaction=True)
def test_in_process_without_threads_answers_after_commit_in_the_saving_thread():
    """IN_PROCESS_TURN_THREADS = 0: the turn runs in the thread that saved the message, once its
    transaction has committed (the agent, in its own connection, can read the message row)."""
    seen = {}

    class Probe(AGENTS["quick-echo"]):
        def get_response(self, message, request=None, **kwargs):
            seen["thread"] = threading.current_thread().name
            seen["visible"] = ConversationMessage.objects.filter(pk=self.message.pk).exists()
            return "probed"

    from django_ai.conversations.registry import register_agent

    register_agent("probe", Probe)
    with override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=0):
        session = _session("probe")
        caller = threading.current_thread().name
        with transaction.atomic():
            message = post(session, "hi")
            assert "thread" not in seen  # not inside the transaction
        assert status_of(message) == ProcessingStatus.COMPLETED  # answered before save returned
    assert seen["visible"] is True
    assert seen["thread"] != caller  # the sync agent ran in a helper thread


@pytest.mark.django_db
def test_on_commit_inside_an_open_transaction_runs_inline(django_capture_on_commit_callbacks):
    """A test that runs on_commit callbacks inside its transaction: the turn runs right there
    (a background thread's connection could not see the rows)."""
    with override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=4):
        session = _session()
        with django_capture_on_commit_callbacks(execute=True):
            message = post(session, "hi")
        assert connection.in_atomic_block
    assert status_of(message) == ProcessingStatus.COMPLETED
    assert reply_to(message).content == "echo: hi"


@pytest.mark.django_db(transaction=True)
def test_busy_conversation_queue_drains_in_arrival_order_in_background():
    with override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=3):
        session = _session("counter")
        messages = [post(session, f"m{i}") for i in range(6)]
        wait_for_turns(15)
    session.refresh_from_db()
    assert session.context["seen"] == [f"m{i}" for i in range(6)]
    assert session.context["count"] == 6
    assert [reply_to(m).content for m in messages] == [f"#{i}" for i in range(1, 7)]
    assert session.turn_token == "" and session.active_turn is None


@pytest.mark.django_db(transaction=True)
def test_enqueue_failure_is_logged_and_the_message_is_kept(caplog):
    with override_settings(TASKS=IMMEDIATE), ai_settings(TASK_BACKEND="missing"):
        session = _session()
        message = post(session, "hi")
    assert status_of(message) == ProcessingStatus.PENDING
    assert "Could not enqueue the turn of conversation" in caplog.text
    assert "TASK_BACKEND" in caplog.text


@pytest.mark.django_db
def test_bad_backend_or_queue_is_a_clear_error_and_a_system_check():
    with ai_settings(TASK_BACKEND="missing"):
        with pytest.raises(ImproperlyConfigured, match=r"DJANGO_AI\['TASK_BACKEND'\] is 'missing'"):
            schedule_session("00000000-0000-0000-0000-000000000000")
        ids = {m.id for m in checks.run_checks(tags=["django_ai"])}
        assert "django_ai.E040" in ids
    with override_settings(TASKS=DUMMY), ai_settings(TASK_BACKEND="recorder", TASK_QUEUE="nope"):
        with pytest.raises(ImproperlyConfigured, match=r"TASK_QUEUE"):
            schedule_session("00000000-0000-0000-0000-000000000000")
        ids = {m.id for m in checks.run_checks(tags=["django_ai"])}
        assert "django_ai.E041" in ids
    with ai_settings(STALE_TURN_TIMEOUT=2, TURN_HEARTBEAT_INTERVAL=1):
        assert "django_ai.W040" in {m.id for m in checks.run_checks(tags=["django_ai"])}


@pytest.mark.django_db(transaction=True)
def test_message_added_in_the_admin_is_enqueued(recorder, admin_client):
    session = _session()
    page = admin_client.get("/admin/django_ai_conversations/conversationmessage/add/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert form.initial["message_type"] == "user" and form.initial["processing_status"] == "pending"
    response = admin_client.post(
        "/admin/django_ai_conversations/conversationmessage/add/",
        {
            "session": str(session.pk),
            "message_type": "user",
            "content": "from the admin",
            "component_type": "",
            "component_data": "{}",
            "processing_status": "pending",
            "stream_sequence": "0",
            "metrics": "{}",
            "metadata": "{}",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert ConversationMessage.objects.filter(session=session, content="from the admin").exists()
    assert len(recorder.results) == 1
    assert recorder.results[0].args[0] == str(session.pk)


@pytest.mark.django_db(transaction=True)
def test_schedule_session_twice_answers_once():
    with override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=0):
        session = _session("counter")
        message = post(session, "one")
        schedule_session(session.pk)
        schedule_session(session.pk)
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED)
    session.refresh_from_db()
    assert session.context["count"] == 1
    assert ConversationMessage.objects.filter(session=session, message_type=MessageType.AGENT).count() == 1


def test_the_documented_old_paths_still_import():
    """Tasks queued by an earlier release name ``tasks.turns.answer_pending``; docs name
    ``dispatch.schedule_session`` and ``tasks.recovery.start_recovery_loop``."""
    from django.utils.module_loading import import_string

    from django_ai.conversations.turns import sweeps, tasks

    assert import_string("django_ai.conversations.tasks.turns.answer_pending") is tasks.answer_pending
    assert import_string("django_ai.conversations.dispatch.schedule_session") is schedule_session
    assert import_string("django_ai.conversations.tasks.recovery.start_recovery_loop") is sweeps.start_recovery_loop
