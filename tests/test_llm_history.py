"""``ConversationAgent.history()``: the conversation as a model reads it, built from the rows (SQLite
/ PostgreSQL): order, earlier tool calls replayed round by round, what is left out (system notices,
widgets, failed turns, newer messages), the bounds (messages, tokens; the current turn kept), the
files' text, and one query whatever the length."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import MessageType, ProcessingStatus
from django_ai.conversations.exceptions import NoActiveConversation
from django_ai.conversations.history import approximate_tokens
from django_ai.conversations.models import ConversationMessage
from django_ai.conversations.testing import FileFactory, SessionFactory

pytestmark = pytest.mark.django_db

COMPLETED = ProcessingStatus.COMPLETED


class Conversation:
    """Rows of one conversation, saved with increasing timestamps (as turns save them), in bulk:
    no turn is scheduled for them."""

    def __init__(self) -> None:
        self.session = SessionFactory(agent_path="history-test")
        self.clock = timezone.now() - timedelta(days=1)
        self.rows: list[ConversationMessage] = []

    def _add(self, **fields: Any) -> ConversationMessage:
        self.clock += timedelta(seconds=1)
        row = ConversationMessage(session=self.session, timestamp=self.clock, **fields)
        self.rows.append(row)
        return row

    def user(self, text: str, status: str = COMPLETED) -> ConversationMessage:
        return self._add(message_type=MessageType.USER, content=text, processing_status=status)

    def agent(self, to: ConversationMessage, text: str, status: str = COMPLETED) -> ConversationMessage:
        return self._add(message_type=MessageType.AGENT, content=text, processing_status=status, reply_to=to)

    def step(
        self,
        to: ConversationMessage,
        name: str,
        arguments: dict,
        content: str,
        *,
        round: int = 0,
        index: int = 0,
        offset: int = 0,
        status: str = COMPLETED,
    ) -> ConversationMessage:
        data = {
            "call_id": f"call_{round}_{index}",
            "name": name,
            "arguments": arguments,
            "round": round,
            "index": index,
            "text_offset": offset,
            "result": content,
            "error": None,
            "duration_ms": 1,
            "approval": None,
        }
        return self._add(
            message_type=MessageType.TOOL,
            component_type=name,
            component_data=data,
            content=content,
            processing_status=status,
            reply_to=to,
        )

    def other(self, to: ConversationMessage | None, kind: str, text: str = "") -> ConversationMessage:
        return self._add(message_type=kind, content=text, reply_to=to)

    def save(self) -> None:
        ConversationMessage.objects.bulk_create(self.rows)
        self.rows = []

    def history(self, current: ConversationMessage | None = None, **bounds: Any) -> list[dict[str, Any]]:
        self.save()
        agent = ConversationAgent(session=self.session, message=current)
        return agent.history(**bounds)


def turn(conversation: Conversation, question: str, answer: str) -> ConversationMessage:
    user = conversation.user(question)
    conversation.agent(user, answer)
    return user


def test_turns_in_order_ending_with_the_current_message():
    c = Conversation()
    turn(c, "Hi", "Hello!")
    turn(c, "Price of pro?", "12 EUR.")
    current = c.user("And the other one?", ProcessingStatus.PROCESSING)
    assert c.history(current) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Price of pro?"},
        {"role": "assistant", "content": "12 EUR."},
        {"role": "user", "content": "And the other one?"},
    ]


def test_the_current_message_may_be_named_by_its_id_as_a_str():
    """conversation_history() given the id as text (from a URL, a task's arguments): before, no row
    compared equal to it and the current message was left out."""
    from django_ai.conversations.history import conversation_history

    c = Conversation()
    turn(c, "Hi", "Hello!")
    current = c.user("And now?", ProcessingStatus.PROCESSING)
    c.save()
    expected = conversation_history(c.session.pk, current_id=current.pk)
    assert expected[-1] == {"role": "user", "content": "And now?"}
    assert conversation_history(c.session.pk, current_id=str(current.pk)) == expected
    assert conversation_history(c.session.pk, current_id=str(current.pk), max_messages=0) == expected[-1:]


def test_system_notices_widgets_and_newer_messages_are_not_sent():
    c = Conversation()
    first = turn(c, "Book a call", "Pick a time above.")
    c.other(first, MessageType.WIDGET)
    failed = c.user("crash", ProcessingStatus.FAILED)
    c.other(failed, MessageType.SYSTEM, "Sorry, something went wrong.")
    waiting_before = c.user("queued long ago", ProcessingStatus.PENDING)  # not answered: not sent
    current = c.user("Now?", ProcessingStatus.PROCESSING)
    c.user("a newer message, waiting", ProcessingStatus.PENDING)
    c.agent(None, "a greeting saved by the app, after the current message")
    history = c.history(current)
    assert [m["content"] for m in history] == ["Book a call", "Pick a time above.", "Now?"]
    assert waiting_before.content not in str(history)


def test_failed_and_cancelled_turns_only_when_asked():
    c = Conversation()
    failed = c.user("do the thing", ProcessingStatus.FAILED)
    c.agent(failed, "I started to", ProcessingStatus.FAILED)
    cancelled = c.user("stop that", ProcessingStatus.CANCELLED)
    c.agent(cancelled, "Partial", ProcessingStatus.CANCELLED)
    current = c.user("hello", ProcessingStatus.PROCESSING)
    assert c.history(current) == [{"role": "user", "content": "hello"}]
    assert [m["content"] for m in c.history(current, include_failed=True)] == [
        "do the thing",
        "I started to",
        "stop that",
        "Partial",
        "hello",
    ]


def test_without_a_current_message_every_finished_turn():
    c = Conversation()
    turn(c, "a", "b")
    turn(c, "c", "d")
    assert [m["content"] for m in c.history()] == ["a", "b", "c", "d"]


def test_earlier_tool_calls_are_replayed_round_by_round_with_the_text_around_them():
    c = Conversation()
    text = "Let me look. Found two. Both fit: pro and seats."
    user = c.user("What fits me?")
    c.agent(user, text)
    # Round 0 after "Let me look. " (two calls), round 1 after "Found two. ", then the answer.
    c.step(user, "search", {"q": "pro"}, '[{"id": "pro"}]', round=0, index=0, offset=13)
    c.step(user, "search", {"q": "seats"}, '[{"id": "seats"}]', round=0, index=1, offset=13)
    c.step(user, "check", {"id": "pro"}, "ok", round=1, index=0, offset=24)
    current = c.user("Thanks", ProcessingStatus.PROCESSING)
    history = c.history(current)
    call = lambda r, i, name, args: {  # noqa: E731
        "id": f"call_{r}_{i}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }
    assert history == [
        {"role": "user", "content": "What fits me?"},
        {
            "role": "assistant",
            "content": "Let me look. ",
            "tool_calls": [call(0, 0, "search", {"q": "pro"}), call(0, 1, "search", {"q": "seats"})],
        },
        {"role": "tool", "tool_call_id": "call_0_0", "content": '[{"id": "pro"}]'},
        {"role": "tool", "tool_call_id": "call_0_1", "content": '[{"id": "seats"}]'},
        {"role": "assistant", "content": "Found two. ", "tool_calls": [call(1, 0, "check", {"id": "pro"})]},
        {"role": "tool", "tool_call_id": "call_1_0", "content": "ok"},
        {"role": "assistant", "content": "Both fit: pro and seats."},
        {"role": "user", "content": "Thanks"},
    ]


def test_offsets_are_utf16_units_as_the_sdk_counts_them():
    c = Conversation()
    before = "Sure 😀 à "  # the emoji is two UTF-16 units
    user = c.user("go")
    c.agent(user, before + "done")
    c.step(user, "t", {}, "r", offset=len(before.encode("utf-16-le")) // 2)
    history = c.history(c.user("next", ProcessingStatus.PROCESSING))
    assert history[1]["content"] == before and history[3] == {"role": "assistant", "content": "done"}


def test_tool_calls_before_any_text_and_steps_that_never_ran():
    c = Conversation()
    user = c.user("go", ProcessingStatus.CANCELLED)
    c.agent(user, "", ProcessingStatus.CANCELLED)
    c.step(user, "t", {"a": 1}, "", status=ProcessingStatus.CANCELLED)
    history = c.history(c.user("again", ProcessingStatus.PROCESSING), include_failed=True)
    assert history[1]["content"] is None and history[1]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    assert json.loads(history[2]["content"])["error"]["code"] == "tool_error"  # every call is answered


def test_the_current_reply_so_far_ends_the_history_on_resume():
    """A turn resumed after an approval: its partial text and finished steps follow the message."""
    c = Conversation()
    current = c.user("discount please", ProcessingStatus.PROCESSING)
    c.agent(current, "Asking first. ", ProcessingStatus.STREAMING)
    c.step(current, "apply_discount", {"percent": 20}, "Discount applied.", offset=14)
    history = c.history(current)
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[1]["content"] == "Asking first. "


def test_max_messages_drops_whole_turns_oldest_first_and_keeps_the_current_one():
    c = Conversation()
    for i in range(5):
        turn(c, f"q{i}", f"a{i}")
    current = c.user("now", ProcessingStatus.PROCESSING)
    assert [m["content"] for m in c.history(current, max_messages=5)] == ["q3", "a3", "q4", "a4", "now"]
    # A turn is never cut in half: 4 leaves room for one earlier turn only.
    assert [m["content"] for m in c.history(current, max_messages=4)] == ["q4", "a4", "now"]
    assert [m["content"] for m in c.history(current, max_messages=0)] == ["now"]


def test_max_tokens_is_an_estimate_that_drops_the_oldest_turns():
    c = Conversation()
    turn(c, "x" * 400, "y" * 400)  # about 100 + 100 tokens
    turn(c, "short", "reply")
    current = c.user("z" * 4000, ProcessingStatus.PROCESSING)  # over any small budget, kept anyway
    full = c.history(current)
    assert approximate_tokens(full) == 4 + 100 + 4 + 100 + 4 + 1 + 4 + 1 + 4 + 1000
    assert [m["content"][:5] for m in c.history(current, max_tokens=1020)] == ["short", "reply", "zzzzz"]
    assert [m["content"][:5] for m in c.history(current, max_tokens=10)] == ["zzzzz"]
    assert c.history(current, max_tokens=10_000) == full


def test_bad_bounds_are_refused():
    c = Conversation()
    with pytest.raises(ValueError, match="max_messages"):
        c.history(max_messages=-1)
    with pytest.raises(ValueError, match="max_tokens"):
        c.history(max_tokens="10")


def test_files_text_is_added_to_its_message_when_asked(django_assert_num_queries):
    c = Conversation()
    user = turn(c, "Here is my invoice", "Got it.")
    current = c.user("What is the total?", ProcessingStatus.PROCESSING)
    c.save()
    owner = {"anonymous_id": c.session.anonymous_id, "user": c.session.user}
    user.files.add(FileFactory(**owner, filename="invoice.txt", text="Total due: 120 EUR"))
    user.files.add(FileFactory(**owner, filename="scan.pdf", failed=True))
    agent = ConversationAgent(session=c.session, message=current)
    with django_assert_num_queries(1):
        assert agent.history()[0] == {"role": "user", "content": "Here is my invoice"}
    with django_assert_num_queries(2):
        history = agent.history(include_files=True)
    assert history[0]["content"] == (
        "Here is my invoice\n\n[Attached file: invoice.txt]\nTotal due: 120 EUR\n\n"
        "[Attached file: scan.pdf (no text could be read from it)]"
    )


def test_a_bounded_history_reads_only_the_files_of_the_turns_it_sends(django_assert_max_num_queries):
    """Files of turns outside the window are not read: the files query names only the user
    messages of the turns history read (a long conversation with many attachments stays cheap)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    c = Conversation()
    early = turn(c, "An early question with a file", "An early answer.")
    for i in range(30):
        turn(c, f"question {i}", f"answer {i}")
    late = turn(c, "A late question with a file", "A late answer.")
    current = c.user("What is the total?", ProcessingStatus.PROCESSING)
    c.save()
    owner = {"anonymous_id": c.session.anonymous_id, "user": c.session.user}
    early.files.add(FileFactory(**owner, filename="early.txt", text="far away"))
    late.files.add(FileFactory(**owner, filename="late.txt", text="Total due: 120 EUR"))
    agent = ConversationAgent(session=c.session, message=current)
    with CaptureQueriesContext(connection) as captured, django_assert_max_num_queries(2):
        history = agent.history(max_messages=4, include_files=True)
    assert "Total due: 120 EUR" in json.dumps(history) and "far away" not in json.dumps(history)
    [files_query] = [q["sql"] for q in captured.captured_queries if "conversationmessage_files" in q["sql"]]
    for form in (str(early.pk), early.pk.hex):
        assert form not in files_query
    assert str(late.pk) in files_query or late.pk.hex in files_query


@pytest.mark.parametrize("turns", [5, 500])
def test_one_query_whatever_the_length(turns, django_assert_num_queries):
    """10 and 1,000 messages (with tool steps in every other turn): one query."""
    c = Conversation()
    for i in range(turns):
        user = turn(c, f"question {i}", f"answer {i}")
        if i % 2:
            c.step(user, "t", {"i": i}, "r")
    current = c.user("last", ProcessingStatus.PROCESSING)
    c.save()
    agent = ConversationAgent(session=c.session, message=current)
    with django_assert_num_queries(1):
        history = agent.history(max_messages=50)
    assert history[-1] == {"role": "user", "content": "last"} and len(history) <= 50


def test_outside_a_conversation_history_says_what_is_missing():
    with pytest.raises(NoActiveConversation, match="session"):
        ConversationAgent().history()


def test_steps_of_a_reply_without_text_yet_are_replayed():
    """A hand-written loop that reads history() between rounds: the reply has steps but no agent row."""
    c = Conversation()
    current = c.user("go", ProcessingStatus.PROCESSING)
    c.step(current, "t", {}, "r")
    history = c.history(current)
    assert [m["role"] for m in history] == ["user", "assistant", "tool"] and history[1]["content"] is None


def test_a_bounded_history_reads_a_window_with_the_same_result():
    """With max_messages the query reads only the newest rows: the turns returned are the same as
    when every row is read and the oldest turns are dropped."""
    from django_ai.conversations.history import conversation_history

    c = Conversation()
    for i in range(40):
        user = c.user(f"q{i}", ProcessingStatus.FAILED if i % 7 == 3 else COMPLETED)
        if i % 3 == 0:
            for k in range(i % 5):
                c.step(user, "t", {"k": k}, f"r{k}", index=k)
        c.agent(user, f"a{i}")
    current = c.user("now", ProcessingStatus.PROCESSING)
    c.user("newer, waiting", ProcessingStatus.PENDING)
    c.save()

    def trimmed(bound: int) -> list:
        full = conversation_history(c.session.pk, current_id=current.pk)
        turns, turn = [], []
        for message in full:
            if message["role"] == "user" and turn:
                turns.append(turn)
                turn = []
            turn.append(message)
        turns.append(turn)
        while len(turns) > 1 and sum(map(len, turns)) > bound:
            turns.pop(0)
        return [m for t in turns for m in t]

    for bound in (0, 1, 5, 12, 30, 60, 200):
        assert conversation_history(c.session.pk, current_id=current.pk, max_messages=bound) == trimmed(bound), bound


def test_a_current_turn_longer_than_the_window_is_still_sent_whole(django_assert_num_queries):
    """A resumed reply whose tool steps alone overflow the bounded window (2 x 5 + 20 rows): the
    current message and its steps are sent (before, the window had cut the current message away
    and the model was sent nothing); the older turn does not fit the bound beside it."""
    c = Conversation()
    turn(c, "q0", "a0")
    current = c.user("now", ProcessingStatus.PROCESSING)
    c.agent(current, "Working. ", ProcessingStatus.STREAMING)
    for r in range(3):
        for i in range(10):
            c.step(current, "t", {"i": i}, f"r{r}{i}", round=r, index=i, offset=9)
    full = c.history(current)
    assert full[:2] == [{"role": "user", "content": "q0"}, {"role": "assistant", "content": "a0"}]
    with django_assert_num_queries(2):  # the window, then the current turn alone
        bounded = c.history(current, max_messages=5)
    assert bounded == full[2:]
    assert bounded[0] == {"role": "user", "content": "now"} and len(bounded) == 1 + 3 * (1 + 10)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sync_and_async_agents_read_it_alike_during_their_turn(kind):
    from tests.helpers import run_agent

    seen: list = []

    class Reader(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            seen.append(self.history())
            return f"seen {len(seen[-1])}"

    class AsyncReader(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            seen.append(self.history())
            return f"seen {len(seen[-1])}"

    run_agent(Reader if kind == "sync" else AsyncReader, "one", "two")
    assert seen[1] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "seen 1"},
        {"role": "user", "content": "two"},
    ]


def test_a_message_sent_while_the_previous_reply_streamed_reads_that_whole_reply():
    """Enqueue: the second message is saved while the first turn runs, so the first reply's agent row
    and tool steps are newer than the current message; they answer an older one and are sent."""
    c = Conversation()
    first = c.user("Price of pro?")
    current = c.user("And the other one?", ProcessingStatus.PROCESSING)
    c.step(first, "price", {"plan": "pro"}, "12", offset=9)
    c.agent(first, "Checking. 12 EUR.")
    c.user("a newer message, waiting", ProcessingStatus.PENDING)
    expected = [
        {"role": "user", "content": "Price of pro?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "call_0_0", "type": "function", "function": {"name": "price", "arguments": '{"plan": "pro"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_0_0", "content": "12"},
        {"role": "assistant", "content": " 12 EUR."},
        {"role": "user", "content": "And the other one?"},
    ]
    assert c.history(current) == expected
    assert c.history(current, max_messages=10) == expected


def test_a_turn_retried_after_a_crash_sends_the_new_reply_once():
    """Crash recovery retries a turn: the dead run's reply stays, ``failed``, beside the new one.
    The current reply is the new one (its text streamed so far), not the dead one's text followed
    by the new row's."""
    from django_ai.conversations.history import conversation_history

    c = Conversation()
    current = c.user("Price of pro?", ProcessingStatus.PROCESSING)
    c.agent(current, "Let me", ProcessingStatus.FAILED)
    c.agent(current, "It is 12", ProcessingStatus.STREAMING)
    c.save()
    expected = [{"role": "user", "content": "Price of pro?"}, {"role": "assistant", "content": "It is 12 EUR."}]
    assert conversation_history(c.session.pk, current_id=current.pk, current_text="It is 12 EUR.") == expected
    assert (
        conversation_history(c.session.pk, current_id=current.pk, current_text="It is 12 EUR.", include_failed=True)
        == expected
    )
    assert c.history(current)[1:] == [{"role": "assistant", "content": "It is 12"}]
