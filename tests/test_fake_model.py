"""The scripted FakeModel: litellm-shaped responses and streams, recorded requests, usage."""

import asyncio
import itertools
import json
import sys
import time
import types

import pytest
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream, report_usage
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FakeModel, FakeModelError, FakeReply, FakeStream, FakeToolCall
from django_ai.conversations.testing.fake_model import count_tokens
from django_ai.conversations.tools import ToolCallCollector

USER = [{"role": "user", "content": "Hello, model"}]


def test_streams_text_word_by_word_in_litellm_chunk_shape():
    model = FakeModel(replies=["The answer is 42."])
    stream = model.completion(model="gpt-4", messages=USER, stream=True)
    assert isinstance(stream, FakeStream)
    chunks = list(stream)
    contents = [c.choices[0].delta.content for c in chunks]
    assert contents == ["The ", "answer ", "is ", "42.", None]
    assert "".join(c or "" for c in contents) == "The answer is 42."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, None, None, "stop"]
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {"gpt-4"}
    assert len({c.id for c in chunks}) == 1
    # Usage rides on the last chunk only.
    assert [c.usage is None for c in chunks] == [True, True, True, True, False]


def test_usage_is_a_deterministic_token_estimate():
    model = FakeModel(replies=["The answer is 42.", "Yes."])
    last = list(model.completion(messages=USER, stream=True))[-1]
    # "Hello , model" -> 3 tokens; "The answer is 42 ." -> 5 tokens.
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (3, 5, 8)
    assert count_tokens("Hello, model") == 3
    response = model.completion(messages=[*USER, {"role": "assistant", "content": "The answer is 42."}])
    assert response.usage.model_dump() == {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}
    assert model.usage.model_dump() == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_scripted_usage_and_finish_reason_override_the_estimate():
    model = FakeModel(
        replies=[FakeReply(text="cut", usage={"prompt_tokens": 100, "completion_tokens": 1}, finish_reason="length")]
    )
    response = model.completion(messages=USER)
    assert response.usage.total_tokens == 101
    assert response.choices[0].finish_reason == "length"


def test_chunk_size_and_explicit_chunks():
    model = FakeModel(replies=["abcdefg", ["Hel", "lo", " there"]], chunk_size=3)
    assert [c.choices[0].delta.content for c in model.completion(messages=USER, stream=True)][:-1] == [
        "abc",
        "def",
        "g",
    ]
    assert [c.choices[0].delta.content for c in model.completion(messages=USER, stream=True)][:-1] == [
        "Hel",
        "lo",
        " there",
    ]
    with pytest.raises(ValueError, match="chunk_size"):
        FakeModel(chunk_size=0)


def test_non_streamed_response_shape():
    model = FakeModel(replies=["Hi there."])
    response = model.completion(model="gpt-4", messages=USER)
    assert response.object == "chat.completion"
    assert response.choices[0].message.content == "Hi there."
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.tool_calls is None
    assert response.choices[0].finish_reason == "stop"
    assert response["choices"][0]["message"]["content"] == "Hi there."
    assert response.choices[0].message.model_dump() == {"role": "assistant", "content": "Hi there."}


def get_weather(city: str, unit: str = "C") -> str:
    """The weather in a city."""
    return f"{city}: 20{unit}"


def test_tool_call_replies_non_streamed_and_streamed():
    model = FakeModel(
        replies=[
            FakeToolCall("get_weather", {"city": "Oslo"}, id="call_a"),
            FakeReply(text="Let me look. ", tool_calls=[FakeToolCall("get_weather", {"city": "Rome", "unit": "F"})]),
        ],
        chunk_size=4,
    )
    response = model.completion(messages=USER, tools=[get_weather])
    message = response.choices[0].message
    assert message.content is None
    assert response.choices[0].finish_reason == "tool_calls"
    [call] = message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_a", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert message.model_dump()["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    ]

    chunks = list(model.completion(messages=USER, tools=[get_weather], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Let me look. "
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert deltas[0][0].id == "call_2_0" and deltas[0][0].function.name == "get_weather"
    assert all(d[0].id is None and d[0].function.name is None for d in deltas[1:])
    assert len(deltas) > 2  # the arguments arrive in pieces
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    collector = ToolCallCollector()
    for c in chunks:
        collector.add(c.choices[0].delta)
    assert json.loads(collector.calls[0]["function"]["arguments"]) == {"city": "Rome", "unit": "F"}


def test_requests_are_recorded_as_sent():
    model = FakeModel(replies=["one", "two"])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "first"}]
    model.completion(model="gpt-4", messages=messages, tools=[get_weather], temperature=0.2)
    messages.append({"role": "user", "content": "second"})  # later changes do not rewrite history
    model.completion(model="gpt-4o", messages=messages, stream=True, tool_choice="none")

    first, second = model.requests
    assert first.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "first"}]
    assert (first.model, first.stream, first.kwargs) == ("gpt-4", False, {"temperature": 0.2})
    assert first.tool_names == ["get_weather"]
    assert first.tools[0]["function"]["parameters"]["required"] == ["city"]
    assert first.last_user_message == "first"
    assert (second.model, second.stream, second.tools, second.kwargs) == ("gpt-4o", True, None, {"tool_choice": "none"})
    assert second.last_user_message == "second"
    assert model.last_request is second
    assert model.remaining == 0


def test_script_mistakes_fail_loudly():
    model = FakeModel(replies=[FakeToolCall("delete_all")])
    with pytest.raises(FakeModelError, match="offered no tools"):
        model.completion(messages=USER)
    with pytest.raises(
        FakeModelError, match=r"ran out of replies: request 2 arrived but the script has 1.*'Hello, model'"
    ):
        model.completion(messages=USER)
    with pytest.raises(FakeModelError, match="no request"):
        _ = FakeModel().last_request
    with pytest.raises(ValueError, match="needs messages"):
        FakeModel(replies=["x"]).completion(model="m", messages=[])
    with pytest.raises(ValueError, match="tool definition"):
        FakeModel(replies=["x"]).completion(messages=USER, tools=[{"name": "bare"}])
    with pytest.raises(FakeModelError, match="scripted reply must be"):
        FakeModel(replies=[42]).completion(messages=USER)


def test_exception_and_callable_replies():
    class RateLimited(Exception):
        pass

    model = FakeModel(replies=[RateLimited("slow down"), lambda request: f"You said: {request.last_user_message}"])
    with pytest.raises(RateLimited, match="slow down"):
        model.completion(messages=USER)
    assert model.completion(messages=USER).choices[0].message.content == "You said: Hello, model"
    model.add_replies("more")
    assert model.remaining == 1


def test_async_completion_and_async_iteration():
    model = FakeModel(replies=["async words here", "plain"])

    async def main():
        stream = await model.acompletion(model="m", messages=USER, stream=True)
        parts = [c.choices[0].delta.content async for c in stream]
        response = await model.acompletion(model="m", messages=USER)
        return parts, response.choices[0].message.content

    parts, content = asyncio.run(main())
    assert parts == ["async ", "words ", "here", None]
    assert content == "plain"


def test_chunk_delay_spaces_the_chunks():
    model = FakeModel(replies=["a b c d"], chunk_delay=0.02)
    stamps = [time.monotonic() for _ in model.completion(messages=USER, stream=True)]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.015


def test_stream_options_include_usage_adds_a_final_chunk_without_choices():
    model = FakeModel(replies=["ok"])
    chunks = list(model.completion(messages=USER, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 1


def test_patch_replaces_completion_and_acompletion_of_a_module(monkeypatch):
    module = types.ModuleType("fake_llm_sdk")

    def completion(**kwargs):
        raise AssertionError("the real client must not be called")

    module.completion = completion
    module.acompletion = completion
    monkeypatch.setitem(sys.modules, "fake_llm_sdk", module)
    model = FakeModel(replies=["patched", "async patched"])
    with model.patch("fake_llm_sdk"):
        assert module.completion(model="m", messages=USER).choices[0].message.content == "patched"
        assert asyncio.run(module.acompletion(model="m", messages=USER)).choices[0].message.content == "async patched"
    assert module.completion is completion
    with pytest.raises(AttributeError, match="neither completion nor acompletion"):
        with model.patch("json"):
            pass


# --- in a real turn ---------------------------------------------------------------------------------


class StreamingAgent(ConversationAgent):
    """Streams the model's reply and reports its token usage."""

    class Context(BaseModel):
        turns: int = 0

    model = None

    async def get_response(self, message, request=None, **kwargs):
        self.context.turns += 1
        history = [{"role": "user", "content": message}]
        with ResponseStream() as stream:
            async for chunk in await self.model.acompletion(model="gpt-4", messages=history, stream=True):
                stream.write(chunk.choices[0].delta.content or "")
                if chunk.usage:
                    report_usage(
                        prompt_tokens=chunk.usage.prompt_tokens, completion_tokens=chunk.usage.completion_tokens
                    )
        return stream.content


@pytest.mark.django_db
def test_fake_model_drives_a_streaming_agent_turn(events):
    StreamingAgent.model = model = FakeModel(replies=["Sure, here is the plan.", "Done again."])
    register_agent("fake/streaming", StreamingAgent)
    session = ConversationService.create_session("fake/streaming")

    first = ConversationService.send_message(session_id=session.id, message="Plan my day")
    second = ConversationService.send_message(session_id=session.id, message="Again")

    assert (first["response"], second["response"]) == ("Sure, here is the plan.", "Done again.")
    chunks = events.of("text_chunk")
    assert [c["text"] for c in chunks if c["message_id"] == first["message_id"]] == [
        "Sure, ",
        "here ",
        "is ",
        "the ",
        "plan.",
    ]
    assert events.text(first["message_id"]) == "Sure, here is the plan."
    assert [r.last_user_message for r in model.requests] == ["Plan my day", "Again"]
    row = ConversationMessage.objects.get(pk=first["message_id"])
    # "Plan my day" = 3 prompt tokens; "Sure , here is the plan ." = 7 completion tokens.
    assert (row.metrics["prompt_tokens"], row.metrics["completion_tokens"]) == (3, 7)
    session.refresh_from_db()
    assert session.context == {"turns": 2}


@pytest.mark.django_db
def test_a_model_error_fails_the_turn_with_the_generic_message():
    StreamingAgent.model = FakeModel(replies=[ConnectionError("provider down")])
    register_agent("fake/failing", StreamingAgent)
    session = ConversationService.create_session("fake/failing")

    result = ConversationService.send_message(session_id=session.id, message="Hi")

    assert result["status"] == "error"
    assert "provider down" not in result["error"]
    assert ConversationMessage.objects.filter(session=session, message_type="system").count() == 1
