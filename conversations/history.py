"""The conversation as a model reads it: user and agent messages, earlier tool calls and their
results, in the OpenAI / litellm chat format (``ConversationAgent.history()``, docs/tools.md,
"History for the model").

One query reads the user, agent and tool rows of the conversation (a second one the attached
files' text, when asked); the rest is Python. Decisions:

- A turn is a user message and the rows that answer it (``reply_to``). Turns that failed or were
  cancelled are left out unless ``include_failed`` (the model would otherwise see half answers
  and retry what the user gave up); turns still waiting, or newer than the current message, are
  left out always. System notices and widget rows are never sent.
- A reply with tool steps is replayed round by round: ``{"role": "assistant", "content": <the
  text streamed before the round, or None>, "tool_calls": [...]}`` then one ``{"role": "tool"}``
  message per call, then the text after the last round. The text is cut at the steps'
  ``text_offset`` (UTF-16 units, as the SDK counts).
- Bounds drop whole turns, oldest first, so a tool call is never separated from its result; the
  current turn is always kept. With ``max_messages`` the query reads only the newest rows that
  bound can need, so a long conversation costs no more than a short one. Tokens are estimated
  (characters / 4 plus a few per message): a budget, not a count; use your provider's tokenizer
  when it must be exact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, Subquery

from .constants import ExtractionStatus, MessageType, ProcessingStatus
from .exceptions import NoActiveConversation
from .models import ConversationMessage
from .turns.state import current_turn

__all__ = ["agent_history", "approximate_tokens", "conversation_history"]

#: What the model reads for a tool call whose step has no result (it never ran, or not yet).
NOT_RUN = json.dumps({"error": {"code": "tool_error", "message": "This tool call did not run."}})

_FIELDS = ("id", "message_type", "content", "processing_status", "reply_to_id", "component_data")
_FAILED = (ProcessingStatus.FAILED, ProcessingStatus.CANCELLED)


@dataclass
class _Turn:
    user: dict[str, Any] | None
    current: bool = False
    agents: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0


def approximate_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """A rough token count of chat messages: characters / 4, plus 4 per message."""
    total = 0
    for message in messages:
        total += 4 + len(str(message.get("content") or "")) // 4
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            total += (len(function.get("name") or "") + len(function.get("arguments") or "")) // 4 + 4
    return total


def agent_history(
    agent: Any,
    *,
    max_messages: int | None = None,
    max_tokens: int | None = None,
    include_files: bool = False,
    include_failed: bool = False,
) -> list[dict[str, Any]]:
    """``agent.history(...)``: the history of ``agent.session`` up to ``agent.message``.

    Inside the agent's turn the query runs on the turn's thread (``TurnState.call_db``) and the
    current reply's text is the one streamed so far; outside a turn it runs here (sync code).
    """
    session = agent.session
    if session is None:
        raise NoActiveConversation(
            f"{type(agent).__name__}.history() needs the agent's conversation (self.session): it is set "
            "during a turn, or pass session= (and message=) when you build the agent in a test."
        )
    message = agent.message
    state = current_turn.get()
    in_turn = state is not None and state.session.pk == session.pk
    current_text = state.stream_text if in_turn and state is not None and state.streamed else None

    def load() -> list[dict[str, Any]]:
        return conversation_history(
            session.pk,
            current_id=getattr(message, "pk", None),
            current_text=current_text,
            max_messages=max_messages,
            max_tokens=max_tokens,
            include_files=include_files,
            include_failed=include_failed,
        )

    if in_turn and state is not None:
        return state.call_db(load)
    return load()


def conversation_history(
    session_id: Any,
    *,
    current_id: Any = None,
    current_text: str | None = None,
    max_messages: int | None = None,
    max_tokens: int | None = None,
    include_files: bool = False,
    include_failed: bool = False,
) -> list[dict[str, Any]]:
    """The chat messages of a conversation, oldest first, ending with the turn of ``current_id``
    (the user message being answered; None: every finished turn).

    ``current_text`` replaces the stored text of the current reply (the turn's streamed text is
    newer than the row). ``max_messages`` bounds the number of chat messages returned and
    ``max_tokens`` their :func:`approximate_tokens`; whole turns are dropped, oldest first, and
    the current turn is always kept.
    """
    for name, bound in (("max_messages", max_messages), ("max_tokens", max_tokens)):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 0):
            raise ValueError(f"history({name}=...) takes a number >= 0 or None, not {bound!r}.")
    if current_id is not None:
        # The rows' ids are UUIDs: a str id (from a URL, a task's arguments) must compare equal.
        current_id = ConversationMessage._meta.get_field("id").to_python(current_id)
    rows = _rows(session_id, current_id, max_messages)
    turns = _group(rows, current_id, include_failed)
    files = _file_texts([t.user["id"] for t in turns if t.user is not None]) if include_files else {}
    for turn in turns:
        turn.messages = _turn_messages(turn, files, current_text if turn.current else None)
        turn.tokens = approximate_tokens(turn.messages)
    count = sum(len(t.messages) for t in turns)
    tokens = sum(t.tokens for t in turns)
    while len(turns) > 1 and (
        (max_messages is not None and count > max_messages) or (max_tokens is not None and tokens > max_tokens)
    ):
        dropped = turns.pop(0)
        count -= len(dropped.messages)
        tokens -= dropped.tokens
    return [message for turn in turns for message in turn.messages]


def _rows(session_id: Any, current_id: Any, max_messages: int | None) -> list[dict[str, Any]]:
    """The user, agent and tool rows of the active path up to the current turn, oldest first: one
    query.

    With ``max_messages`` only the newest ``2 * max_messages + 20`` rows are read: each row gives a
    chat message or more, so the turns the bound needs are there (unless most of the window is
    failed turns, which are left out); a turn cut by the window has lost its user message and is
    left out whole. The current turn is always kept, so when its own rows overflow the window (a
    resumed reply with many tool steps) a second query reads that turn alone: nothing older would
    fit the bound beside it.
    """
    # The active path only: the versions left behind by a regenerate or an edit are not sent.
    rows = ConversationMessage.objects.filter(
        session_id=session_id, active=True, message_type__in=(MessageType.USER, MessageType.AGENT, MessageType.TOOL)
    )
    if current_id is not None:
        # Nothing newer than the current message, except what answers it or an older message: a
        # message sent while the previous reply streamed (enqueue) is older than that reply's rows.
        current = ConversationMessage.objects.filter(pk=current_id).values("timestamp")[:1]
        rows = rows.filter(Q(timestamp__lte=Subquery(current)) | Q(reply_to__timestamp__lte=Subquery(current)))
    if max_messages is None:
        return list(rows.order_by("timestamp", "id").values(*_FIELDS))
    window = 2 * max_messages + 20
    newest = list(rows.order_by("-timestamp", "-id").values(*_FIELDS)[:window])
    if current_id is not None and len(newest) == window and all(row["id"] != current_id for row in newest):
        current_turn_rows = rows.filter(Q(pk=current_id) | Q(reply_to_id=current_id))
        return list(current_turn_rows.order_by("timestamp", "id").values(*_FIELDS))
    newest.reverse()
    return newest


def _group(rows: list[dict[str, Any]], current_id: Any, include_failed: bool) -> list[_Turn]:
    """Rows into turns, in order: the finished turns before the current one, then the current one."""
    by_user: dict[Any, _Turn] = {}
    turns: list[_Turn] = []
    past_current = False
    for row in rows:
        kind = row["message_type"]
        if kind == MessageType.USER:
            if past_current:
                continue
            status = row["processing_status"]
            is_current = row["id"] == current_id
            keep = is_current or status == ProcessingStatus.COMPLETED or (include_failed and status in _FAILED)
            past_current = is_current
            if keep:
                turn = _Turn(user=row, current=is_current)
                by_user[row["id"]] = turn
                turns.append(turn)
            continue
        owner = by_user.get(row["reply_to_id"]) if row["reply_to_id"] is not None else None
        if owner is not None:
            if kind == MessageType.AGENT:
                # A failed reply in the current turn is a dead run's (crash recovery retried the
                # turn): never sent, the reply being written is the new row.
                if row["processing_status"] not in _FAILED or (include_failed and not owner.current):
                    owner.agents.append(row)
            else:
                owner.steps.append(row)
        elif row["reply_to_id"] is None and kind == MessageType.AGENT and not past_current:
            # An agent message that answers nothing (a greeting saved by the app): said in order.
            turns.append(_Turn(user=None, agents=[row]))
    return turns


def _file_texts(message_ids: list[Any]) -> dict[Any, list[str]]:
    """The files attached to these user messages (the turns history read), as text for the model,
    by message id: a bounded history does not read the text of every file of a long conversation."""
    through = ConversationMessage.files.through
    found: dict[Any, list[str]] = {}
    if not message_ids:
        return found
    links = (
        through.objects.filter(conversationmessage_id__in=message_ids)
        .order_by("pk")
        .values_list("conversationmessage_id", "file__filename", "file__extraction_status", "file__extracted_text")
    )
    for message_id, filename, status, text in links:
        if status == ExtractionStatus.DONE:
            block = f"[Attached file: {filename}]\n{text}"
        elif status == ExtractionStatus.FAILED:
            block = f"[Attached file: {filename} (no text could be read from it)]"
        else:
            block = f"[Attached file: {filename} (its text is not extracted yet)]"
        found.setdefault(message_id, []).append(block)
    return found


def _turn_messages(turn: _Turn, files: dict[Any, list[str]], current_text: str | None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if turn.user is not None:
        content = turn.user["content"]
        blocks = files.get(turn.user["id"])
        if blocks:
            content = "\n\n".join([content, *blocks]) if content else "\n\n".join(blocks)
        messages.append({"role": "user", "content": content})
    agents = list(turn.agents)
    text = current_text if current_text is not None else (agents[0]["content"] if agents else "")
    if agents or current_text is not None or turn.steps:
        if agents:
            agents.pop(0)
        messages.extend(_replay(text, turn.steps))
    for row in agents:  # a second agent message answering the same turn (written by hand)
        if row["content"]:
            messages.append({"role": "assistant", "content": row["content"]})
    return messages


def _replay(text: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One reply: its text cut at its tool steps, round by round."""
    rounds: dict[int, list[dict[str, Any]]] = {}
    for step in steps:
        data = step["component_data"] or {}
        rounds.setdefault(_int(data.get("round")), []).append(step)
    messages: list[dict[str, Any]] = []
    position = 0
    to_index = _utf16_indexer(text)
    for number in sorted(rounds):
        calls = sorted(rounds[number], key=lambda s: _int((s["component_data"] or {}).get("index")))
        offset = min(_int((s["component_data"] or {}).get("text_offset")) for s in calls)
        cut = min(max(to_index(offset), position), len(text))
        messages.append(
            {
                "role": "assistant",
                "content": text[position:cut] or None,
                "tool_calls": [_tool_call(step) for step in calls],
            }
        )
        for step in calls:
            data = step["component_data"] or {}
            finished = step["processing_status"] in (ProcessingStatus.COMPLETED, ProcessingStatus.FAILED)
            content = step["content"] if finished or step["content"] else NOT_RUN
            messages.append({"role": "tool", "tool_call_id": data.get("call_id"), "content": content})
        position = cut
    if text[position:]:
        messages.append({"role": "assistant", "content": text[position:]})
    return messages


def _tool_call(step: dict[str, Any]) -> dict[str, Any]:
    data = step["component_data"] or {}
    arguments = data.get("arguments")
    return {
        "id": data.get("call_id"),
        "type": "function",
        "function": {
            "name": data.get("name") or "",
            "arguments": json.dumps(arguments if isinstance(arguments, dict) else {}),
        },
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _utf16_indexer(text: str) -> Callable[[int], int]:
    """A function from a UTF-16 offset in ``text`` to the Python index there."""
    if text.isascii():
        return lambda offset: offset
    ends: list[int] = []  # the UTF-16 offset after each character
    total = 0
    for char in text:
        total += 2 if ord(char) > 0xFFFF else 1
        ends.append(total)

    def index(offset: int) -> int:
        if offset <= 0:
            return 0
        low, high = 0, len(ends)
        while low < high:  # first character whose end reaches the offset
            mid = (low + high) // 2
            if ends[mid] < offset:
                low = mid + 1
            else:
                high = mid
        return min(low + 1, len(text))

    return index
