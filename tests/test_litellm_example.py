"""The README's LiteLLM examples, run offline through the real ``litellm`` package.

The agent classes are the README's code, from tests/example_agents.py. ``litellm.completion`` is
the real function; the test only adds litellm's own ``mock_response=`` (and ``mock_tool_calls=``)
argument so no provider is called, and ``LITELLM_LOCAL_MODEL_COST_MAP`` keeps litellm from
downloading its model price list. Outgoing socket connections are refused during each test, so
"offline" is checked, not assumed.
"""

import functools
import json
import os
import socket

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm", reason="litellm is in the 'llm' extra, installed by the 'dev' extra (CI)")

from django_ai.conversations.models import ConversationMessage  # noqa: E402
from django_ai.conversations.registry import register_agent  # noqa: E402
from django_ai.conversations.service import ConversationService  # noqa: E402
from django_ai.conversations.testing import FakeModel  # noqa: E402
from django_ai.conversations.tools import dispatch_tool_call, tool_schema  # noqa: E402
from tests import example_agents  # noqa: E402
from tests.example_agents import AIAgent, SmartAgent  # noqa: E402

pytestmark = [
    pytest.mark.django_db,
    # litellm's own types trigger a pydantic notice about ReadOnly TypedDict items.
    pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning"),
]

MOCK_TEXT = "Billing questions are answered by the finance team within one business day."


@pytest.fixture(autouse=True)
def readme_litellm(monkeypatch):
    """The README's agents call the module-level ``litellm`` of tests/example_agents.py."""
    example_agents.use_litellm(monkeypatch)


@pytest.fixture
def offline(monkeypatch):
    """Refuse outgoing connections from Python code (the database driver connects in C)."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline litellm test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def mocked_completion(monkeypatch, offline):
    """The real litellm.completion with litellm's own mock arguments added."""
    real = litellm.completion

    def install(**mock_kwargs):
        calls = []

        @functools.wraps(real)
        def completion(*args, **kwargs):
            calls.append(kwargs)
            return real(*args, **kwargs, **mock_kwargs)

        monkeypatch.setattr(litellm, "completion", completion)
        return calls

    return install


def test_offline_fixture_refuses_connections(offline):
    with pytest.raises(OSError, match="network access attempted"):
        socket.create_connection(("127.0.0.1", 9))
    with pytest.raises(OSError, match="network access attempted"):
        socket.socket().connect(("127.0.0.1", 9))


def test_readme_litellm_agent_streams_text_chunks(mocked_completion, events):
    calls = mocked_completion(mock_response=MOCK_TEXT)
    register_agent("ai", AIAgent)
    session = ConversationService.create_session("ai")

    result = ConversationService.send_message(session_id=session.id, message="I need help with billing")

    assert result["status"] == "success", result
    assert result["response"] == MOCK_TEXT
    assert calls == [
        {"model": "gpt-4", "messages": [{"role": "user", "content": "I need help with billing"}], "stream": True}
    ]
    chunks = events.of("text_chunk")
    assert len(chunks) > 3  # litellm's mock stream really arrives in pieces
    assert [c["sequence"] for c in chunks] == list(range(1, len(chunks) + 1))
    assert "".join(c["text"] for c in chunks) == MOCK_TEXT
    assert events.names().count("stream_start") == events.names().count("stream_end") == 1
    row = ConversationMessage.objects.get(pk=result["message_id"])
    assert (row.content, row.processing_status, row.stream_sequence) == (MOCK_TEXT, "completed", len(chunks))


def test_readme_litellm_agent_with_a_provider_error_fails_cleanly(mocked_completion):
    mocked_completion(mock_response="litellm.RateLimitError")
    register_agent("ai", AIAgent)
    session = ConversationService.create_session("ai")

    result = ConversationService.send_message(session_id=session.id, message="Hello?")

    assert result["status"] == "error"
    assert "RateLimit" not in result["error"]  # details go to the log, not to the user
    assert ConversationMessage.objects.get(session=session, message_type="user").processing_status == "failed"


def test_readme_function_calling_agent(mocked_completion):
    calls = mocked_completion(mock_response="Your team plan includes 10 seats.")
    register_agent("smart", SmartAgent)
    session = ConversationService.create_session("smart", context={"user_id": 3, "org_id": 77})

    result = ConversationService.send_message(session_id=session.id, message="What plan am I on?")

    assert result["response"] == "Your team plan includes 10 seats."
    [call] = calls
    # What litellm was handed: the bound method, whose signature shows nothing to supply.
    [tool] = call["tools"]
    assert tool.__name__ == "get_user_data"
    assert str(__import__("inspect").signature(tool)) == "()"


def test_litellm_tool_call_objects_dispatch_with_context_injection(offline):
    agent = SmartAgent(context=SmartAgent.Context(user_id=3, org_id=77))
    schema = tool_schema(agent.get_user_data)
    assert schema["function"]["parameters"]["properties"] == {}
    # The tool definition goes with the request as a real provider needs it (litellm 1.110 takes
    # tools= without its optional 'mcp' package; 1.106 imported its MCP gateway for it).
    response = litellm.completion(
        model="gpt-4",
        messages=[{"role": "user", "content": "Who am I?"}],
        tools=[schema],
        mock_response="Looking you up.",
        mock_tool_calls=[
            {"id": "call_abc", "type": "function", "function": {"name": "get_user_data", "arguments": "{}"}}
        ],
    )
    [call] = response.choices[0].message.tool_calls
    done = dispatch_tool_call([agent.get_user_data], call)
    assert done.result == {"user_id": 3, "org_id": 77, "plan": "team"}
    assert done.as_message()["tool_call_id"] == "call_abc"
    assert json.loads(done.content) == done.result


def test_fake_model_stands_in_for_litellm_without_touching_the_agent(events, offline):
    """The same README agent, tested with the scripted FakeModel swapped in for litellm.completion."""
    register_agent("ai", AIAgent)
    session = ConversationService.create_session("ai")
    model = FakeModel(replies=["Scripted reply, word by word."])

    with model.patch("litellm"):
        result = ConversationService.send_message(session_id=session.id, message="Hi")

    assert result["response"] == "Scripted reply, word by word."
    assert [c["text"] for c in events.of("text_chunk")] == ["Scripted ", "reply, ", "word ", "by ", "word."]
    assert model.last_request.model == "gpt-4" and model.last_request.stream is True
