"""Tool steps of the declared tool loop (``LLMAgent``, issue 13) through the AI SDK endpoint: the
real loop with a scripted model (``turns_support.LLMRefundAgent``: a ``refund`` tool that needs
the user's approval), the Local broker, the database. The stream shows the call and asks for the
approval, then ends (``finish`` ``tool-calls``); once it is approved through the bridge, a resume
request attaches to the resumed turn: the step's output, then the rest of the reply.

Turns are held (a DummyBackend) and run by the test in a thread of its own, so the resume request
is made while the approved turn waits: no race with a background thread.
"""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connections
from django.test import Client

from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.registry import register_agent

from .test_ai_sdk_endpoint import API, CHAT, Reader, body, fast, local, post, text_of, types, wait_until  # noqa: F401
from .turns_support import LLMRefundAgent

pytestmark = pytest.mark.django_db(transaction=True)


def run_held(held_tasks) -> threading.Thread:
    """Run the turn tasks held so far, in a thread (as a worker would)."""
    results = list(held_tasks.results)
    held_tasks.clear()
    assert results, "no turn was scheduled"

    def work() -> None:
        try:
            for result in results:
                result.task.call(*result.args, **result.kwargs)
        finally:
            connections.close_all()  # this thread's: a worker's would end with it

    thread = threading.Thread(target=work, name="test-held-turns")
    thread.start()
    return thread


def test_a_tool_needing_approval_then_its_resumed_turn(local, held_tasks):
    register_agent("refund", LLMRefundAgent)
    client = Client()
    started = client.post(API + "start/", {"agent_path": "refund"}, content_type="application/json")
    session_id = started.json()["session_id"]

    reader = Reader(post(client, body(session_id, "refund 5")))
    turn = run_held(held_tasks)
    first = reader.all()
    turn.join(30)
    step = ConversationMessage.objects.get(session_id=session_id, message_type=MessageType.TOOL)
    assert step.processing_status == ProcessingStatus.AWAITING_APPROVAL
    named = [c for c in first if isinstance(c, dict) and c["type"].startswith("tool-")]
    assert [c["type"] for c in named][-2:] == ["tool-input-available", "tool-approval-request"]
    assert named[-2]["toolName"] == "refund"
    assert named[-2]["input"] == {"amount": 5}
    assert named[-1] == {"type": "tool-approval-request", "approvalId": str(step.pk), "toolCallId": "call_0"}
    assert text_of(first) == "Let me see. "
    assert types(first)[-2:] == ["finish", "[DONE]"]
    assert first[-2]["finishReason"] == "tool-calls"
    # Nothing streams while the turn waits for the answer.
    assert client.get(f"{CHAT}{session_id}/stream/").status_code == 204

    answered = client.post(
        f"{API}models/message/{step.pk}/approve/", json.dumps({"approved": True}), content_type="application/json"
    )
    assert answered.status_code == 200, answered.content
    resumed = Reader(client.get(f"{CHAT}{session_id}/stream/"))
    assert resumed.response.status_code == 200
    turn = run_held(held_tasks)
    chunks = resumed.all()
    turn.join(30)
    agent = ConversationMessage.objects.get(session_id=session_id, message_type=MessageType.AGENT)
    assert agent.processing_status == ProcessingStatus.COMPLETED
    # Replayed from the start (the saved text and the approved step), then live.
    assert chunks[0] == {
        "type": "start",
        "messageId": str(agent.pk),
        "messageMetadata": {"session_id": session_id, "reply_to": str(agent.reply_to_id)},
    }
    assert text_of(chunks) == agent.content
    assert agent.content.startswith("Let me see. ")
    assert "Refunded 5." in agent.content
    outputs = [c for c in chunks if isinstance(c, dict) and c["type"] == "tool-output-available"]
    assert outputs == [{"type": "tool-output-available", "toolCallId": "call_0", "output": "Refunded 5."}]
    order = [c["type"] for c in chunks if isinstance(c, dict) and c["type"] in ("tool-input-available", "text-start")]
    assert order[:2] == ["text-start", "tool-input-available"], "the step sits after the text before it"
    assert types(chunks)[-2:] == ["finish", "[DONE]"]
    assert chunks[-2]["finishReason"] == "stop"


def suspended_refund(client, held_tasks) -> tuple[str, ConversationMessage, list]:
    register_agent("refund", LLMRefundAgent)
    started = client.post(API + "start/", {"agent_path": "refund"}, content_type="application/json")
    session_id = started.json()["session_id"]
    reader = Reader(post(client, body(session_id, "refund 5")))
    turn = run_held(held_tasks)
    chunks = reader.all()
    turn.join(30)
    step = ConversationMessage.objects.get(session_id=session_id, message_type=MessageType.TOOL)
    return session_id, step, chunks


def answered(session_id: str, chunks: list, step: ConversationMessage, **approval) -> dict:
    """The request useChat sends after addToolApprovalResponse (sendAutomaticallyWhen): the
    assistant message last, its tool part answered, ``messageId`` naming it."""
    message_id = chunks[0]["messageId"]
    assistant = {
        "id": message_id,
        "role": "assistant",
        "parts": [
            {"type": "text", "text": "Let me see. ", "state": "done"},
            {
                "type": "tool-refund",
                "toolCallId": "call_0",
                "state": "approval-responded",
                "input": {"amount": 5},
                "approval": {"id": str(step.pk), **approval},
            },
        ],
    }
    user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "refund 5"}]}
    return {"id": session_id, "messages": [user, assistant], "trigger": "submit-message", "messageId": message_id}


@pytest.mark.parametrize("approved", [True, False])
def test_use_chats_approval_answer_records_it_and_streams_the_rest_of_the_reply(local, held_tasks, approved):
    client = Client()
    session_id, step, first = suspended_refund(client, held_tasks)
    approval = {"approved": approved} if approved else {"approved": False, "reason": "Too much."}
    reader = Reader(post(client, answered(session_id, first, step, **approval)))
    assert reader.response.status_code == 200
    step.refresh_from_db()
    assert step.component_data["approval"]["status"] == ("approved" if approved else "rejected")
    turn = run_held(held_tasks)
    chunks = reader.all()
    turn.join(30)
    agent = ConversationMessage.objects.get(session_id=session_id, message_type=MessageType.AGENT)
    assert agent.processing_status == ProcessingStatus.COMPLETED
    # Only what the client does not have yet: the step's end, then the new text.
    assert "start" not in types(chunks)
    assert text_of(first) + text_of(chunks) == agent.content
    ending = "tool-output-available" if approved else "tool-output-denied"
    assert collapse_tools(types(chunks)) == [ending, "text-start", "text-delta", "text-end", "finish", "[DONE]"]
    if approved:
        assert "Refunded 5." in text_of(chunks)


def test_an_approval_of_another_conversation_or_answered_twice_is_refused(local, held_tasks):
    client = Client()
    session_id, step, first = suspended_refund(client, held_tasks)
    other = client.post(API + "start/", {"agent_path": "refund"}, content_type="application/json").json()
    wrong = answered(other["session_id"], first, step, approved=True)
    assert post(client, wrong).status_code == 404
    reader = Reader(post(client, answered(session_id, first, step, approved=True)))
    again = post(client, answered(session_id, first, step, approved=False))
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "approval_already_answered"
    turn = run_held(held_tasks)
    reader.all()
    turn.join(30)


def test_a_stop_after_the_approval_before_the_turn_resumes_cancels_the_whole_reply(local, fast, held_tasks):
    """The client leaves (useChat's stop) after answering, while the resumed turn still waits for
    a worker: the grace period's cancel ends the user message, and with it the suspended reply and
    its approved step, as cancel/ does; none is left waiting for ever."""
    client = Client()
    session_id, step, first = suspended_refund(client, held_tasks)
    reader = Reader(post(client, answered(session_id, first, step, approved=True)))
    assert reader.response.status_code == 200
    step.refresh_from_db()
    assert step.processing_status == ProcessingStatus.PENDING  # approved, to run when the turn resumes
    reader.close()
    user = ConversationMessage.objects.get(session_id=session_id, message_type=MessageType.USER)
    wait_until(lambda: ConversationMessage.objects.get(pk=user.pk).processing_status == ProcessingStatus.CANCELLED)
    agent = ConversationMessage.objects.get(session_id=session_id, message_type=MessageType.AGENT)
    step.refresh_from_db()
    assert agent.processing_status == ProcessingStatus.CANCELLED
    assert step.processing_status == ProcessingStatus.CANCELLED
    # The turn's task, when a worker runs it, finds nothing to do.
    run_held(held_tasks).join(30)
    agent.refresh_from_db()
    assert agent.processing_status == ProcessingStatus.CANCELLED
    assert ConversationMessage.objects.get(pk=user.pk).processing_status == ProcessingStatus.CANCELLED


def collapse_tools(names: list[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        if not (name == "text-delta" and out and out[-1] == "text-delta"):
            out.append(name)
    return out
