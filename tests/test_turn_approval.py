"""A turn suspended until the user approves a tool call, and resumed by a new task.

Real parts: the database (SQLite here, PostgreSQL with DATABASE_URL), the bridge over Django's test
client (CSRF, throttles, permission classes), turns in the background threads of the in-process
task runner (as in the demo), and, for the restart, a real ``db_worker`` process. The agent is
``turns_support.ApprovalAgent``: it does by hand what the declared loop (conversations/llm) does
(creates the step rows, raises TurnSuspended, and on resume runs or reports them), so that these
tests pin the turn machinery on its own; the declared loop's own tests use it end to end.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from django_ai.conversations.constants import ApprovalStatus, EventName, MessageType, ProcessingStatus, SessionStatus
from django_ai.conversations.exceptions import (
    ApprovalAlreadyAnswered,
    NotAToolStep,
    NotAwaitingApproval,
    ObjectNotFound,
    TurnInProgress,
)
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.owners import get_owner
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.signals import turn_finished
from django_ai.conversations.testing import isolated_registry, task_worker, wait_for_turns, wait_until
from django_ai.conversations.testing.factories import UserFactory
from django_ai.conversations.turns.approval import answer_approval, expire_approvals
from django_ai.conversations.turns.runner import next_pending
from django_ai.conversations.turns.sweeps import recover_now

from .bridge_support import Api, anonymous_api, error_codes, error_fields, user_api
from .turns_support import (
    AGENT_PATHS,
    AGENTS,
    IMMEDIATE,
    LLM_REQUESTS,
    ApprovalAgent,
    Background,
    ai_settings,
    make_step,
    post,
    reply_to,
    status_of,
)

pytestmark = pytest.mark.django_db(transaction=True)


class RejectingApprovalAgent(ApprovalAgent):
    concurrency = "reject"


class InterruptingApprovalAgent(ApprovalAgent):
    concurrency = "interrupt"


@pytest.fixture(autouse=True)
def _setup():
    with (
        isolated_registry(
            {**AGENTS, "approval-reject": RejectingApprovalAgent, "approval-interrupt": InterruptingApprovalAgent}
        ),
        override_settings(TASKS=IMMEDIATE),
        ai_settings(IN_PROCESS_TURN_THREADS=2),
    ):
        yield
        wait_for_turns(20)


def steps_of(message: ConversationMessage) -> list[ConversationMessage]:
    return list(
        ConversationMessage.objects.filter(reply_to=message, message_type=MessageType.TOOL).order_by(
            "component_data__index"
        )
    )


def suspended(text: str = "refund 50", *, path: str = "approval", user=None, anonymous_id=None, session=None):
    """A conversation whose turn for ``text`` is suspended, waiting for its steps' approval."""
    if session is None:
        session = ConversationService.create_session(path, user=user, anonymous_id=anonymous_id)
    message = post(session, text)
    wait_until(lambda: status_of(message) == ProcessingStatus.AWAITING_APPROVAL, 15)
    wait_for_turns(10)
    return session, message


def approve_url(step: ConversationMessage) -> str:
    return f"models/message/{step.pk}/approve/"


# The suspension.


def test_a_suspended_turn_records_the_reply_so_far_and_holds_no_worker(events):
    finished = []

    def on_finished(sender, user_message, agent_message, status, **kwargs):
        finished.append((str(user_message.pk), str(agent_message.pk), str(status)))

    turn_finished.connect(on_finished)
    try:
        session, message = suspended()
    finally:
        turn_finished.disconnect(on_finished)
    message.refresh_from_db()
    assert message.finished_at is None and message.attempts == 1
    answer = reply_to(message)
    assert (answer.processing_status, answer.content) == (ProcessingStatus.AWAITING_APPROVAL, "Checking. ")
    [step] = steps_of(message)
    assert step.processing_status == ProcessingStatus.AWAITING_APPROVAL
    assert step.component_data["approval"]["status"] == ApprovalStatus.PENDING
    # Nobody holds the conversation: no lease, no thread (wait_for_turns returned above).
    session.refresh_from_db()
    assert (session.turn_token, session.active_turn) == ("", None)
    assert finished == [(str(message.pk), str(answer.pk), "awaiting_approval")]
    statuses = [(p["message_id"], p["status"]) for p in events.of(EventName.MESSAGE_STATUS)]
    assert (str(message.pk), "awaiting_approval") in statuses
    assert (str(answer.pk), "awaiting_approval") in statuses
    # A waiting turn is not lost work: recovery leaves it alone.
    assert recover_now(stale_after=0) == []
    assert status_of(message) == ProcessingStatus.AWAITING_APPROVAL


def test_approved_the_tool_runs_with_the_current_context_and_the_same_reply_continues(events):
    user = UserFactory()
    session, message = suspended("refund 50", user=user)
    answer = reply_to(message)
    [step] = steps_of(message)
    # The Context changes while the turn waits: the tool sees the new one.
    ConversationSession.objects.filter(pk=session.pk).update(context={"limit": 30, "refunded": 0})
    response = user_api(user).post(approve_url(step), {"approved": True})
    assert response.status_code == 200, response.json()
    row = response.json()["included"]["message"][str(step.pk)]
    assert row["processing_status"] == "pending"
    assert row["component_data"]["approval"]["status"] == "approved"
    assert row["component_data"]["approval"]["answered_by"] == user.pk
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    wait_for_turns(10)
    message.refresh_from_db()
    assert message.attempts == 2 and message.finished_at is not None
    [same] = ConversationMessage.objects.filter(reply_to=message, message_type=MessageType.AGENT)
    assert same.pk == answer.pk
    assert (same.processing_status, same.content) == (ProcessingStatus.COMPLETED, "Checking. Refunded 30. ")
    assert same.metrics["resumed"] is True
    step.refresh_from_db()
    assert (step.processing_status, step.content) == (ProcessingStatus.COMPLETED, "30")
    session.refresh_from_db()
    assert session.context == {"limit": 30, "refunded": 30}
    # The resumed text continues the reply's stream where it stopped.
    chunks = [p for p in events.of(EventName.TEXT_CHUNK) if p["message_id"] == str(answer.pk)]
    assert [c["text"] for c in chunks] == ["Checking. ", "Refunded 30. "]
    assert [c["sequence"] for c in chunks] == [1, 2]
    answer_statuses = [p["status"] for p in events.of(EventName.MESSAGE_STATUS) if p["message_id"] == str(answer.pk)]
    assert answer_statuses == ["awaiting_approval", "streaming", "completed"]


def test_rejected_the_model_reads_the_refusal_with_the_reason(events):
    user = UserFactory()
    session, message = suspended("refund 50", user=user)
    [step] = steps_of(message)
    events.clear()
    response = user_api(user).post(approve_url(step), {"approved": False, "reason": "too much"})
    assert response.status_code == 200, response.json()
    step.refresh_from_db()
    refusal = {"error": {"code": "tool_rejected", "message": "The user refused this call: too much"}}
    assert step.processing_status == ProcessingStatus.FAILED
    assert json.loads(step.content) == refusal
    assert step.component_data["error"] == refusal["error"]
    assert step.component_data["approval"]["status"] == "rejected"
    assert step.component_data["approval"]["reason"] == "too much"
    assert step.finished_at is not None
    [result] = events.of(EventName.TOOL_CALL_RESULT)
    assert result["message_id"] == str(step.pk) and result["status"] == "failed"
    # The row was saved with save(): live querysets of the conversation hear of it.
    changed = [(p["operation"], p["pks"]) for p in events.of(EventName.MODEL_CHANGE) if p["model"] == "message"]
    assert ("update", [str(step.pk)]) in changed
    assert result["reply_to"] == str(message.pk) and result["name"] == "refund"
    assert result["error"] == refusal["error"] and result["approval"]["status"] == "rejected"
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    assert reply_to(message).content == f"Checking. Not run: {step.content} "
    session.refresh_from_db()
    assert session.context["refunded"] == 0


def test_the_turn_resumes_once_every_waiting_step_is_answered():
    user = UserFactory()
    api = user_api(user)
    _, message = suspended("refund 10 and 20", user=user)
    first, second = steps_of(message)
    assert api.post(approve_url(first), {"approved": True}).status_code == 200
    assert status_of(message) == ProcessingStatus.AWAITING_APPROVAL  # the other one still waits
    assert api.post(approve_url(second), {"approved": False}).status_code == 200
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    assert reply_to(message).content == (
        'Checking. Refunded 10. Not run: {"error": {"code": "tool_rejected", "message": '
        '"The user refused this call."}} '
    )


def test_an_answer_that_comes_before_the_suspension_is_recorded_resumes_the_turn_at_once():
    """The agent approves its own step before it raises TurnSuspended: the runner finds nothing
    waiting when it records the suspension, and the turn goes on in the same task."""
    session = ConversationService.create_session("approval")
    message = post(session, "answer first")
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    assert reply_to(message).content == "Checking. Refunded 1. "


def test_suspending_with_nothing_to_wait_for_fails_the_turn():
    session = ConversationService.create_session("approval")
    message = post(session, "suspend for nothing")
    wait_until(lambda: status_of(message) == ProcessingStatus.FAILED, 15)
    assert reply_to(message, MessageType.SYSTEM).metadata["code"] == "agent_error"


# Answers the endpoint refuses.


def test_answered_twice_is_a_409_and_the_first_answer_stands():
    user = UserFactory()
    api = user_api(user)
    _, message = suspended(user=user)
    [step] = steps_of(message)
    assert api.post(approve_url(step), {"approved": False, "reason": "no"}).status_code == 200
    again = api.post(approve_url(step), {"approved": True})
    assert again.status_code == 409 and error_codes(again) == ["approval_already_answered"]
    step.refresh_from_db()
    assert step.component_data["approval"]["status"] == "rejected"


def test_answers_at_the_same_moment_record_exactly_one():
    user = UserFactory()
    _, message = suspended(user=user)
    [step] = steps_of(message)
    barrier = threading.Barrier(6)

    def answer(approved):
        def run():
            barrier.wait(10)
            return user_api(user).post(approve_url(step), {"approved": approved}).status_code

        return run

    answers = [Background(answer(i % 2 == 0), name=f"answer-{i}") for i in range(6)]
    for thread in answers:
        thread.start()
    codes = sorted(thread.outcome(30) for thread in answers)
    assert codes == [200, 409, 409, 409, 409, 409]
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)


def test_a_step_of_a_conversation_no_longer_active_cannot_be_answered():
    """As a new message would be refused: an archived conversation resumes no turn (409
    session_not_active); the step keeps waiting and its approval stays unanswered."""
    owner = UserFactory()
    session, message = suspended(user=owner)
    [step] = steps_of(message)
    ConversationSession.objects.filter(pk=session.pk).update(status=SessionStatus.ARCHIVED)
    response = user_api(owner).post(approve_url(step), {"approved": True})
    assert response.status_code == 409 and error_codes(response) == ["session_not_active"]
    step.refresh_from_db()
    assert (step.processing_status, step.component_data["approval"]["status"]) == ("awaiting_approval", "pending")
    assert status_of(message) == ProcessingStatus.AWAITING_APPROVAL


def test_another_users_step_is_not_found_and_stays_waiting():
    owner = UserFactory()
    _, message = suspended(user=owner)
    [step] = steps_of(message)
    response = user_api(UserFactory()).post(approve_url(step), {"approved": True})
    assert response.status_code == 404 and error_codes(response) == ["not_found"]
    visitor = anonymous_api().post(approve_url(step), {"approved": True})
    assert visitor.status_code == 404
    assert status_of(step) == ProcessingStatus.AWAITING_APPROVAL
    with pytest.raises(ObjectNotFound):
        answer_approval(step.pk, approved=True, owner=get_owner(user=UserFactory()))
    assert answer_approval(step.pk, approved=True, owner=get_owner(user=owner)).processing_status == "pending"
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)


def test_an_anonymous_owner_answers_by_their_id_and_others_cannot():
    visitor = anonymous_api()
    anonymous_id = visitor.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"]
    _, message = suspended(anonymous_id=anonymous_id)
    [step] = steps_of(message)
    assert anonymous_api().post(approve_url(step), {"approved": True}).status_code == 404
    response = visitor.post(approve_url(step), {"approved": True})
    assert response.status_code == 200, response.json()
    assert response.json()["included"]["message"][str(step.pk)]["component_data"]["approval"]["answered_by"] is None
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)


def test_a_cookie_visitor_needs_the_csrf_token_to_answer():
    client = Client(enforce_csrf_checks=True)
    api = Api(client)
    started = api.post("start/", {"agent_path": "approval"})
    assert started.status_code == 201
    session = ConversationSession.objects.get(pk=started.json()["session_id"])
    _, message = suspended(session=session)
    [step] = steps_of(message)
    forged = api.post(approve_url(step), {"approved": True})
    assert forged.status_code == 403 and "CSRF" in forged.json()["errors"][0]["message"]
    assert status_of(step) == ProcessingStatus.AWAITING_APPROVAL
    token = client.cookies["csrftoken"].value
    assert api.post(approve_url(step), {"approved": True}, HTTP_X_CSRFTOKEN=token).status_code == 200


def test_only_a_tool_step_waiting_for_approval_can_be_answered():
    user = UserFactory()
    api = user_api(user)
    _, message = suspended(user=user)
    not_a_step = api.post(approve_url(message), {"approved": True})
    assert not_a_step.status_code == 400 and error_codes(not_a_step) == ["not_a_tool_step"]
    ran = make_step(message, name="lookup", needs_approval=False)
    never_asked = api.post(approve_url(ran), {"approved": True})
    assert never_asked.status_code == 409 and error_codes(never_asked) == ["not_awaiting_approval"]
    with pytest.raises(NotAToolStep):
        answer_approval(message.pk, approved=True)
    with pytest.raises(NotAwaitingApproval):
        answer_approval(ran.pk, approved=True)
    assert status_of(message) == ProcessingStatus.AWAITING_APPROVAL


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "required", "approved"),
        ({"approved": "yes"}, "invalid", "approved"),
        ({"approved": 1}, "invalid", "approved"),
        ({"approved": None}, "invalid", "approved"),
        ({"approved": True, "reason": 12}, "invalid", "reason"),
        ({"approved": True, "reason": "x" * 2001}, "invalid", "reason"),
        ({"approved": True, "note": "hi"}, "unknown_key", "note"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field_and_changes_nothing(body, code, field):
    user = UserFactory()
    _, message = suspended(user=user)
    [step] = steps_of(message)
    response = user_api(user).post(approve_url(step), body)
    assert response.status_code == 400, response.json()
    assert (error_codes(response), error_fields(response)) == ([code], [field])
    step.refresh_from_db()
    assert step.processing_status == ProcessingStatus.AWAITING_APPROVAL
    assert step.component_data["approval"]["status"] == "pending"


def test_a_reason_of_2000_characters_is_kept():
    user = UserFactory()
    _, message = suspended(user=user)
    [step] = steps_of(message)
    reason = "é" * 2000
    assert user_api(user).post(approve_url(step), {"approved": False, "reason": reason}).status_code == 200
    step.refresh_from_db()
    assert step.component_data["approval"]["reason"] == reason


def test_answer_approval_called_directly_stores_a_reason_with_nul_as_text():
    """The Python API takes what the endpoint refuses (a NUL, which PostgreSQL cannot store in
    text): it is replaced, as the runner replaces it in replies, and the answer is recorded."""
    _, message = suspended()
    [step] = steps_of(message)
    answer_approval(step.pk, approved=False, reason="no\x00way")
    step.refresh_from_db()
    assert step.component_data["approval"]["reason"] == "no\ufffdway"
    assert "\x00" not in step.content and step.processing_status == ProcessingStatus.FAILED


def test_the_approve_endpoint_has_its_own_rate():
    user = UserFactory()
    api = user_api(user)
    _, message = suspended(user=user)
    [step] = steps_of(message)
    with ai_settings(THROTTLE_RATES={"row_action": "2/min"}):
        assert api.post(approve_url(step), {"approved": "bad"}).status_code == 400
        assert api.post(approve_url(step), {"approved": "bad"}).status_code == 400
        throttled = api.post(approve_url(step), {"approved": True})
        assert throttled.status_code == 429
        # Messages have their own rate.
        assert api.create("message", {"session": str(message.session_id), "content": "hi"}).status_code == 201
    assert status_of(step) == ProcessingStatus.AWAITING_APPROVAL


# Expiry.


def test_an_unanswered_approval_expires_as_rejected_and_the_turn_goes_on(events):
    _, message = suspended("refund 10 and 20")
    first, second = steps_of(message)
    ConversationMessage.objects.filter(pk=first.pk).update(started_at=timezone.now() - timedelta(seconds=120))
    scheduled = []
    assert [s.pk for s in expire_approvals(schedule=scheduled.append, timeout=60)] == [first.pk]
    assert scheduled == []  # the turn still waits for the other step
    first.refresh_from_db()
    assert first.processing_status == ProcessingStatus.FAILED
    assert first.component_data["approval"]["status"] == "expired"
    assert json.loads(first.content)["error"]["code"] == "approval_expired"
    # The other step was not waiting that long: the turn still waits for it.
    assert status_of(second) == ProcessingStatus.AWAITING_APPROVAL
    assert status_of(message) == ProcessingStatus.AWAITING_APPROVAL
    # The stale-turn sweep expires what waited longer than APPROVAL_TIMEOUT (a day by default).
    ConversationMessage.objects.filter(pk=second.pk).update(started_at=timezone.now() - timedelta(days=1, minutes=1))
    recovered = recover_now()
    assert [(r.message_id, r.action) for r in recovered] == [(second.pk, "expired")]
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    assert reply_to(message).content.count("approval_expired") == 2
    expired_events = [p for p in events.of(EventName.TOOL_CALL_RESULT) if p["approval"]["status"] == "expired"]
    assert sorted(p["message_id"] for p in expired_events) == sorted([str(first.pk), str(second.pk)])
    with pytest.raises(ApprovalAlreadyAnswered):
        answer_approval(first.pk, approved=True)


def test_an_approval_past_its_time_is_refused_before_the_sweep_expires_it():
    """The sweep runs when turns run (TURN_RECOVERY_INTERVAL): a quiet site may not have expired a
    step yet when its owner answers it days later; the answer is refused as for an expired one."""
    user = UserFactory()
    _, message = suspended("refund 50", user=user)
    [step] = steps_of(message)
    ConversationMessage.objects.filter(pk=step.pk).update(started_at=timezone.now() - timedelta(days=1, minutes=1))
    response = user_api(user).post(approve_url(step), {"approved": True})
    assert response.status_code == 409, response.json()
    assert error_codes(response) == ["approval_already_answered"]
    assert "expired" in response.json()["errors"][0]["message"]
    # Nothing was recorded: the step still waits, for the sweep to expire it and resume the turn.
    assert status_of(step) == ProcessingStatus.AWAITING_APPROVAL
    assert status_of(message) == ProcessingStatus.AWAITING_APPROVAL
    assert [r.action for r in recover_now()] == ["expired"]
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    assert "approval_expired" in reply_to(message).content


def test_the_expiry_sweep_reads_the_waiting_steps_through_the_partial_index():
    if connection.vendor != "postgresql":
        pytest.skip("the query plan is PostgreSQL's")
    _, message = suspended()
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            queryset = ConversationMessage.objects.filter(
                processing_status=ProcessingStatus.AWAITING_APPROVAL,
                message_type=MessageType.TOOL,
                started_at__lt=timezone.now(),
            )
            plan = queryset.explain()
        finally:
            cursor.execute("SET enable_seqscan = on")
    assert "convmsg_unfinished" in plan


def test_approval_timeout_must_be_a_positive_number():
    for value in (0, -5, "a day", None):
        with ai_settings(APPROVAL_TIMEOUT=value):
            found = [m for m in run_checks() if m.id == "django_ai.E003" and "APPROVAL_TIMEOUT" in m.msg]
            assert found, value
    with ai_settings(APPROVAL_TIMEOUT=3600):
        assert not [m for m in run_checks() if "APPROVAL_TIMEOUT" in m.msg]


# Cancel and the concurrency policies while a turn waits.


def test_cancel_ends_the_wait(events):
    user = UserFactory()
    session, message = suspended("refund 10 and 20", user=user)
    first, second = steps_of(message)
    assert user_api(user).post(approve_url(first), {"approved": True}).status_code == 200
    result = ConversationService.cancel_turn(session.pk, user=user)
    assert result == {"status": "cancelling", "cancelled": [str(message.pk)]}
    message.refresh_from_db()
    assert message.processing_status == ProcessingStatus.CANCELLED and message.finished_at is not None
    assert reply_to(message).processing_status == ProcessingStatus.CANCELLED
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.processing_status, first.component_data["approval"]["status"]) == ("cancelled", "approved")
    assert (second.processing_status, second.component_data["approval"]["status"]) == ("cancelled", "cancelled")
    results = {p["message_id"]: p["status"] for p in events.of(EventName.TOOL_CALL_RESULT)}
    assert results == {str(first.pk): "cancelled", str(second.pk): "cancelled"}
    late = user_api(user).post(approve_url(second), {"approved": True})
    assert late.status_code == 409 and error_codes(late) == ["approval_already_answered"]
    assert ConversationService.cancel_turn(session.pk, user=user) == {"status": "idle", "cancelled": []}


def test_enqueue_a_new_message_waits_until_the_suspended_turn_ends():
    user = UserFactory()
    session, message = suspended("refund 5", user=user)
    newer = post(session, "refund 7")
    assert next_pending(session.pk) is None
    wait_for_turns(10)
    assert status_of(newer) == ProcessingStatus.PENDING  # picked up by no one: it waits
    [step] = steps_of(message)
    assert user_api(user).post(approve_url(step), {"approved": True}).status_code == 200
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    # Then the newer message's turn runs (and suspends for its own step).
    wait_until(lambda: status_of(newer) == ProcessingStatus.AWAITING_APPROVAL, 15)
    message.refresh_from_db()
    newer.refresh_from_db()
    assert message.finished_at <= newer.started_at


def test_reject_refuses_a_new_message_while_a_turn_waits():
    user = UserFactory()
    session, message = suspended(path="approval-reject", user=user)
    with pytest.raises(TurnInProgress):
        ConversationService.send_message(session.pk, "hello?", user=user)
    refused = user_api(user).create("message", {"session": str(session.pk), "content": "hello?"})
    assert refused.status_code == 409 and error_codes(refused) == ["turn_in_progress"]
    assert ConversationMessage.objects.filter(session=session, message_type=MessageType.USER).count() == 1
    assert status_of(message) == ProcessingStatus.AWAITING_APPROVAL


def test_interrupt_cancels_the_waiting_turn_and_answers_the_new_message():
    user = UserFactory()
    session, message = suspended(path="approval-interrupt", user=user)
    [step] = steps_of(message)
    created = user_api(user).create("message", {"session": str(session.pk), "content": "refund 3"})
    assert created.status_code == 201
    assert status_of(message) == ProcessingStatus.CANCELLED
    assert status_of(step) == ProcessingStatus.CANCELLED
    newer = ConversationMessage.objects.get(pk=created.json()["data"])
    wait_until(lambda: status_of(newer) == ProcessingStatus.AWAITING_APPROVAL, 15)


def test_send_message_returns_when_its_turn_suspends():
    """send_message answers inline: it returns the reply so far once the turn is suspended (no
    caller waits for the user's answer)."""
    register_agent("under-test", ApprovalAgent)
    session = ConversationService.create_session("under-test")
    result = ConversationService.send_message(session.pk, "refund 4")
    message = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert status_of(message) == ProcessingStatus.AWAITING_APPROVAL
    assert result["status"] == "awaiting_approval"
    assert result["response"] == "Checking. "
    assert result["message_id"] == str(reply_to(message).pk)
    assert result["pending_approvals"] == [str(step.pk) for step in steps_of(message)] != []


def test_send_message_whose_steps_were_answered_before_the_suspension_says_queued():
    """Every step was answered while the turn still ran (before it recorded its suspension): nothing
    waits for the user, a task resumes the turn; send_message says "queued", not "awaiting_approval"
    with no step to answer."""
    register_agent("under-test", ApprovalAgent)
    session = ConversationService.create_session("under-test")
    result = ConversationService.send_message(session.pk, "answer first")
    message = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert result["status"] == "queued"
    assert "pending_approvals" not in result
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    assert reply_to(message).content == "Checking. Refunded 1. "


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("django_tasks_db") is None, reason="the 'worker' extra (django-tasks-db) is not installed"
)
def test_approved_after_a_restart_a_fresh_worker_process_resumes_the_turn(events):
    """The turn is suspended in this process; the approval arrives over HTTP after a "deploy":
    turns now go to a task queue, and a worker process that never saw the turn resumes it from
    the rows alone."""
    user = UserFactory()
    session, message = suspended("refund 50", user=user)
    [step] = steps_of(message)
    answer = reply_to(message)
    with (
        override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}),
        ai_settings(AGENTS=AGENT_PATHS),
        task_worker() as start,
    ):
        worker = start()
        response = user_api(user).post(approve_url(step), {"approved": True})
        assert response.status_code == 200, response.json()
        wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 30, message=worker.output())
    answer.refresh_from_db()
    assert (answer.processing_status, answer.content) == (ProcessingStatus.COMPLETED, "Checking. Refunded 50. ")
    assert status_of(step) == ProcessingStatus.COMPLETED
    session.refresh_from_db()
    assert session.context["refunded"] == 50 and session.turn_token == ""


# End to end: the declared loop (LLMAgent) with a scripted model (turns_support.refund_brain).


def llm_suspended(text: str = "refund 50", *, path: str = "llm-refund", **owner):
    session, message = suspended(text, path=path, **owner)
    assert reply_to(message).content == "Let me see. "
    return session, message


def tool_messages_sent_last() -> list[dict]:
    """The tool results of the last request the scripted model received."""
    return [m for m in LLM_REQUESTS[-1].messages if m.get("role") == "tool"]


def test_llm_approved_the_tool_runs_with_the_current_context_in_the_same_reply():
    user = UserFactory()
    session, message = llm_suspended(user=user)
    answer = reply_to(message)
    [step] = steps_of(message)
    ConversationSession.objects.filter(pk=session.pk).update(context={"limit": 30, "refunded": 0})
    assert user_api(user).post(approve_url(step), {"approved": True}).status_code == 200
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    wait_for_turns(10)
    answer.refresh_from_db()
    assert answer.content == "Let me see. The refund tool answered: Refunded 30."
    assert ConversationMessage.objects.filter(reply_to=message, message_type=MessageType.AGENT).count() == 1
    step.refresh_from_db()
    assert (step.processing_status, step.content) == (ProcessingStatus.COMPLETED, "Refunded 30.")
    session.refresh_from_db()
    assert session.context == {"limit": 30, "refunded": 30}


def test_llm_rejected_the_model_is_told_the_reason_and_goes_on():
    user = UserFactory()
    session, message = llm_suspended(user=user)
    [step] = steps_of(message)
    assert user_api(user).post(approve_url(step), {"approved": False, "reason": "not today"}).status_code == 200
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    [told] = tool_messages_sent_last()
    assert json.loads(told["content"]) == {
        "error": {"code": "tool_rejected", "message": "The user refused this call: not today"}
    }
    assert "The user refused this call: not today" in reply_to(message).content
    session.refresh_from_db()
    assert session.context["refunded"] == 0


def test_llm_an_expired_approval_is_told_to_the_model():
    _, message = llm_suspended()
    [step] = steps_of(message)
    ConversationMessage.objects.filter(pk=step.pk).update(started_at=timezone.now() - timedelta(days=2))
    assert [r.action for r in recover_now()] == ["expired"]
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    [told] = tool_messages_sent_last()
    assert json.loads(told["content"])["error"]["code"] == "approval_expired"
    assert status_of(step) == ProcessingStatus.FAILED


def test_llm_answers_by_others_twice_and_by_an_anonymous_owner():
    visitor = anonymous_api()
    _, message = llm_suspended("refund 5 and 6", anonymous_id=visitor.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"])
    first, second = steps_of(message)
    assert user_api(UserFactory()).post(approve_url(first), {"approved": True}).status_code == 404
    assert anonymous_api().post(approve_url(first), {"approved": True}).status_code == 404
    assert visitor.post(approve_url(first), {"approved": True}).status_code == 200
    twice = visitor.post(approve_url(first), {"approved": False})
    assert twice.status_code == 409 and error_codes(twice) == ["approval_already_answered"]
    assert status_of(message) == ProcessingStatus.AWAITING_APPROVAL
    assert visitor.post(approve_url(second), {"approved": True}).status_code == 200
    wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 15)
    assert reply_to(message).content == "Let me see. The refund tool answered: Refunded 5. | Refunded 6."


def test_llm_cancel_while_waiting_and_the_policies():
    user = UserFactory()
    api = user_api(user)
    # cancel
    session, message = llm_suspended(user=user)
    [step] = steps_of(message)
    assert api.post("cancel/", {"session_id": str(session.pk)}).json()["cancelled"] == [str(message.pk)]
    assert [status_of(message), status_of(reply_to(message)), status_of(step)] == ["cancelled"] * 3
    # enqueue: the new message waits for the suspended turn
    session, message = llm_suspended("refund 2", user=user)
    created = api.create("message", {"session": str(session.pk), "content": "refund 3"})
    newer = ConversationMessage.objects.get(pk=created.json()["data"])
    wait_for_turns(10)
    assert status_of(newer) == ProcessingStatus.PENDING
    assert api.post(approve_url(steps_of(message)[0]), {"approved": True}).status_code == 200
    wait_until(lambda: status_of(newer) == ProcessingStatus.AWAITING_APPROVAL, 15)
    assert status_of(message) == ProcessingStatus.COMPLETED
    # reject
    session, message = llm_suspended(path="llm-refund-reject", user=user)
    refused = api.create("message", {"session": str(session.pk), "content": "refund 3"})
    assert refused.status_code == 409 and error_codes(refused) == ["turn_in_progress"]
    # interrupt
    session, message = llm_suspended(path="llm-refund-interrupt", user=user)
    created = api.create("message", {"session": str(session.pk), "content": "refund 4"})
    assert created.status_code == 201 and status_of(message) == ProcessingStatus.CANCELLED
    newer = ConversationMessage.objects.get(pk=created.json()["data"])
    wait_until(lambda: status_of(newer) == ProcessingStatus.AWAITING_APPROVAL, 15)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("django_tasks_db") is None, reason="the 'worker' extra (django-tasks-db) is not installed"
)
def test_llm_approved_after_a_restart_a_fresh_worker_process_continues_the_reply():
    user = UserFactory()
    session, message = llm_suspended("refund 40", user=user)
    [step] = steps_of(message)
    with (
        override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}),
        ai_settings(AGENTS=AGENT_PATHS),
        task_worker() as start,
    ):
        worker = start()
        assert user_api(user).post(approve_url(step), {"approved": True}).status_code == 200
        wait_until(lambda: status_of(message) == ProcessingStatus.COMPLETED, 30, message=worker.output())
    assert reply_to(message).content == "Let me see. The refund tool answered: Refunded 40."
    session.refresh_from_db()
    assert session.context["refunded"] == 40


def test_send_message_behind_a_suspended_turn_returns_without_waiting_for_it():
    """The enqueue policy keeps the message, answered by a task after the suspended turn; the
    inline answer of send_message does not wait hours for the user's approval."""
    user = UserFactory()
    session, message = suspended("refund 5", user=user)
    result = ConversationService.send_message(session.pk, "refund 6", user=user)
    newer = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert status_of(newer) == ProcessingStatus.PENDING
    assert (result["status"], result["response"], result["message_id"]) == ("queued", "", None)
    [step] = steps_of(message)
    assert user_api(user).post(approve_url(step), {"approved": True}).status_code == 200
    wait_until(lambda: status_of(newer) == ProcessingStatus.AWAITING_APPROVAL, 15)


def test_cancel_after_the_last_answer_before_the_turn_resumes(held_tasks):
    """Answered, but the task that resumes the turn has not run yet (it is held): cancel ends the
    user message, its suspended reply and the approved step that never ran."""
    user = UserFactory()
    session = ConversationService.create_session("approval", user=user)
    message = post(session, "refund 8")
    [first] = held_tasks.results
    first.task.call(*first.args)  # the turn runs here and suspends
    assert status_of(message) == ProcessingStatus.AWAITING_APPROVAL
    [step] = steps_of(message)
    assert user_api(user).post(approve_url(step), {"approved": True}).status_code == 200
    assert status_of(message) == ProcessingStatus.PENDING and len(held_tasks.results) == 2
    assert ConversationService.cancel_turn(session.pk)["cancelled"] == [str(message.pk)]
    assert status_of(message) == ProcessingStatus.CANCELLED
    assert status_of(reply_to(message)) == ProcessingStatus.CANCELLED
    step.refresh_from_db()
    assert (step.processing_status, step.component_data["approval"]["status"]) == ("cancelled", "approved")
    result = held_tasks.results[1]
    result.task.call(*result.args)  # the held task runs now: nothing to answer
    assert status_of(message) == ProcessingStatus.CANCELLED
    assert reply_to(message).content == "Checking. "
