"""The agent of the AI SDK endpoint's tests (tests/test_ai_sdk_*.py, the Node test in
tests/ai_sdk_client/ and frontend_client/e2e/ai-sdk.test.ts), registered as ``ai-sdk-test`` by
the test settings (``tests.settings``), never by the demo.

It answers what the message asks for:

- ``slow <n>``: ``n`` words, one write every 40 ms (long enough to stop or reload mid-reply);
- ``widget``: text, a ``poll`` widget, an update of it, more text;
- ``touch <widget id>``: text, an update of that widget (one an earlier reply showed), more text;
- ``tool``: text, then one tool step announced with the three ``tool_call_*`` events exactly as
  docs/tools.md describes them (the declared tool loop of issue 13 sends the same; this agent
  sends them itself so the endpoint's mapping is tested without a model), then more text;
- ``plain <text>``: returns ``<text>`` without streaming;
- ``fail``: streams a little, then raises (the turn fails with the generic notice);
- anything else: ``You said: <message>``, streamed word by word.

``ai-sdk-refund`` (``AISDKRefundAgent``) is the declared tool loop (``LLMAgent``) with a scripted
model: ``refund <amount>`` makes it call ``refund``, a tool that needs the user's approval; once the
call is answered, the model says what the tool answered.
"""

from __future__ import annotations

import asyncio

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import EventName, ProcessingStatus
from django_ai.conversations.context import ResponseStream, display_widget, update_widget
from django_ai.conversations.llm import LLMAgent
from django_ai.conversations.realtime import publish
from django_ai.conversations.testing import FakeModel, FakeReply, FakeToolCall
from django_ai.conversations.tools import requires_approval

#: Seconds between two words of ``slow``.
SLOW_PAUSE = 0.04


class AISDKTestAgent(ConversationAgent):
    """See the module docstring."""

    display_name = "AI SDK test"

    async def get_response(self, message, request=None, **kwargs):
        command, _, argument = message.strip().partition(" ")
        if command == "plain":
            return argument
        with ResponseStream() as stream:
            if command == "slow":
                for n in range(int(argument or 50)):
                    stream.write(f"w{n} ")
                    await asyncio.sleep(SLOW_PAUSE)
            elif command == "widget":
                stream.write("Here is a poll. ")
                widget = display_widget("poll", {"question": "Tea or coffee?"})
                update_widget(widget.pk, display_data={"answered": True})
                stream.write("Vote above.")
            elif command == "touch":
                stream.write("Updating it. ")
                update_widget(argument, display_data={"touched": True})
                stream.write("Done.")
            elif command == "tool":
                stream.write("Let me look. ")
                self._tool_step()
                stream.write("Found 2 items.")
            elif command == "fail":
                stream.write("Partial ")
                await asyncio.sleep(0.05)
                raise RuntimeError("ai-sdk-test was asked to fail")
            else:
                for word in f"You said: {message}".split(" "):
                    stream.write(word + " ")
        return None

    def _tool_step(self) -> None:
        session_id, reply_to = self.session.pk, self.message.pk
        common = {"session_id": session_id, "reply_to": reply_to, "call_id": "call_1", "name": "search_products"}
        publish(EventName.TOOL_CALL_START, **common, round=0, index=0)
        publish(
            EventName.TOOL_CALL_ARGUMENTS,
            **common,
            message_id="step-1",
            arguments={"query": "tea"},
            status=ProcessingStatus.PROCESSING,
        )
        publish(
            EventName.TOOL_CALL_RESULT,
            **common,
            message_id="step-1",
            status=ProcessingStatus.COMPLETED,
            result={"count": 2},
            duration_ms=1,
        )


def refund_model(request):
    """The scripted model: tool results are answered in words; a user message asks for a refund."""
    results = []
    for message in reversed(request.messages):
        if message.get("role") != "tool":
            break
        results.insert(0, message["content"])
    if results:
        return "The tool answered: " + " | ".join(results)
    amounts = [int(word) for word in (request.last_user_message or "").split() if word.isdigit()] or [1]
    return FakeReply(text="Let me see. ", tool_calls=[FakeToolCall("refund", {"amount": amounts[0]}, id="call_0")])


class AISDKRefundAgent(LLMAgent):
    """See the module docstring."""

    display_name = "AI SDK refund test"
    system_prompt = "You refund customers."
    tools = ["refund"]

    def get_model(self):
        return FakeModel(replies=[refund_model] * 4)

    @requires_approval
    def refund(self, amount: int) -> str:
        """Refund an amount to the customer."""
        return f"Refunded {amount}."
