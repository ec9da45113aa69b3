"""Agents for the SDK's tests, registered only by the test settings (``tests.settings``,
``DJANGO_AI["AGENTS"]``), which the SDK's test server runs. They live with the tests, not with the
demo's agents (``agents/``), so that ``./dev demo`` (``backend.settings``) never has them.

- ``stream-test``: ``StreamTestAgent`` streams text chosen by the message, to check how clients
  rebuild a reply from coalesced and split ``text_chunk`` events (docs/protocol.md, "Text chunks").
- ``tools-test``: ``ToolsTestAgent``, a declared ``LLMAgent`` on a scripted ``FakeModel``, makes
  tool steps among its text and asks for approval, for the store's parts and approvals
  (frontend_client/test/store-tools.test.ts).
- ``versions-test``: ``VersionsTestAgent``, stream-test's commands under the ``reject``
  concurrency policy: a regenerate or edit while its turn runs is refused (409
  ``turn_in_progress``), for the store's versions (frontend_client/test/store-versions.test.ts).

The demo page lists them only on a server started with the test settings
(frontend_client/test/helpers/server.ts does).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream
from django_ai.conversations.llm import LLMAgent
from django_ai.conversations.testing import FakeModel, FakeReply, FakeRequest, FakeToolCall
from django_ai.conversations.tools import requires_approval

#: Text with characters of every UTF-8/UTF-16 width and JSON escapes: ASCII, accented letters,
#: CJK, characters outside the BMP (two UTF-16 code units each), a combining accent, quotes,
#: a backslash and a newline.
PIECES = ("Grüße aus Köln ", "😀", "naïve café ", "日本語の文 ", "𝄞♫ ", "e\u0301 ", '"quoted" ', "back\\slash ", "🇩🇪\n")

#: Seconds the agent waits after its stream ended before it returns, so a client sees the end of
#: the streamed text (``stream_end``) well before the finished row replaces it.
END_PAUSE = 0.5


def mixed_text(length: int, *, start: int = 0) -> str:
    """At least ``length`` characters cycling through :data:`PIECES`, starting with piece ``start``."""
    parts: list[str] = []
    size = 0
    n = start
    while size < length:
        piece = PIECES[n % len(PIECES)]
        parts.append(piece)
        size += len(piece)
        n += 1
    return "".join(parts)


class StreamTestAgent(ConversationAgent):
    """Streams what the message asks for, then returns exactly the streamed text.

    - ``long <n>``: one ``write()`` of at least ``n`` characters (far above Pusher's 10 KB event
      limit for large ``n``, so the sender splits it into events that share one sequence);
    - ``burst <rounds>``: ``rounds`` rounds of three small writes 20 ms apart (the sender coalesces
      several writes into one event), with a 12,000-character write every 40 rounds; with the
      default ``STREAM_SAVE_INTERVAL`` the row is saved several times in between, at write
      boundaries inside coalesced events;
    - ``fail <n>``: streams ``n`` characters (40 by default), then raises: the turn ends
      ``failed`` with the generic system message;
    - ``hold <seconds>``: streams a dot every 0.1 s for ``seconds`` (10 by default), so the turn
      is surely running while a test acts; a stop ends it early (the dots so far are kept).
    """

    display_name = "Stream test"

    async def get_response(self, message, request=None, **kwargs):
        command, _, argument = message.strip().partition(" ")
        count = int(argument or 0)
        with ResponseStream() as stream:
            if command == "long":
                stream.write(mixed_text(count))
            elif command == "fail":
                # Part of a reply, then an error: the turn ends failed with the generic notice.
                stream.write(mixed_text(count or 40))
                await asyncio.sleep(0.1)
                raise RuntimeError("stream-test was asked to fail")
            elif command == "hold":
                for _ in range(int((count or 10) * 10)):
                    # write() raises once a stop (or a superseding version) asked the turn to end.
                    stream.write(".")
                    await asyncio.sleep(0.1)
            elif command == "burst":
                for n in range(count):
                    for k in range(3):
                        stream.write(f"[{n}.{k}] " + PIECES[(n + k) % len(PIECES)])
                    if n % 40 == 39:
                        stream.write(mixed_text(12_000, start=n))
                    await asyncio.sleep(0.02)
            else:
                stream.write(
                    f"Unknown command {command!r}: say 'long <n>', 'burst <rounds>', 'fail <n>' or 'hold <s>'."
                )
        await asyncio.sleep(END_PAUSE)
        return stream.content


class VersionsTestAgent(StreamTestAgent):
    """:class:`StreamTestAgent` that refuses a second turn while one runs (``reject``): a message,
    a regenerate or an edit sent then gets 409 ``turn_in_progress``."""

    display_name = "Versions test"
    concurrency = "reject"


class ToolsTestAgent(LLMAgent):
    """A declared LLM agent whose model is scripted by the message (no network):

    - ``steps``: "Looking up. ", ``lookup(q="a")``, "Found a. ", ``lookup("b")`` and ``lookup("c")``
      in one round (parallel), then "Done.": the reply's parts are text, a step, text, two steps,
      text;
    - ``grant <n>``: "Asking first. ", then ``grant(amount=n)``, which waits for the user's
      approval; approved, the reply goes on with "Done: granted <n>."; rejected, with "Not granted:
      " and what the model was told (the user's reason in it);
    - ``big <n>``: "Big. ", then ``lookup`` of a word of ``n`` characters (its events outgrow a
      small event limit), then "Done.".
    """

    display_name = "Tools test"
    tools = ["lookup", "grant"]

    def get_model(self) -> FakeModel:
        # A model per reply: each request of the turn reads the conversation it is sent.
        return FakeModel(replies=[tools_test_brain] * (self.max_tool_rounds + 1))

    def lookup(self, q: str) -> str:
        """Look a word up.

        Args:
            q: The word.
        """
        return f"{q}!"

    @requires_approval
    def grant(self, amount: int) -> str:
        """Grant credits to the user; the user approves each grant.

        Args:
            amount: How many credits.
        """
        return f"granted {amount}"


def _field(message: Any, key: str) -> Any:
    return message.get(key) if isinstance(message, dict) else getattr(message, key, None)


def tools_test_brain(request: FakeRequest) -> Any:
    """The script of :class:`ToolsTestAgent`: the command of the last user message, and the tool
    answers of the reply so far (after that message) say what comes next."""
    last_user = max(i for i, m in enumerate(request.messages) if _field(m, "role") == "user")
    answers = [m for m in request.messages[last_user + 1 :] if _field(m, "role") == "tool"]
    command, _, argument = (request.last_user_message or "").strip().partition(" ")
    if command == "steps":
        if not answers:
            return FakeReply("Looking up. ", [FakeToolCall("lookup", {"q": "a"})])
        if len(answers) == 1:
            return FakeReply("Found a. ", [FakeToolCall("lookup", {"q": "b"}), FakeToolCall("lookup", {"q": "c"})])
        return "Done."
    if command == "big":
        if not answers:
            return FakeReply("Big. ", [FakeToolCall("lookup", {"q": "x" * int(argument or 1000)})])
        return "Done."
    if command == "grant":
        if not answers:
            return FakeReply("Asking first. ", [FakeToolCall("grant", {"amount": int(argument or 1)})])
        content = str(_field(answers[-1], "content"))
        try:
            error = json.loads(content).get("error")
        except (ValueError, AttributeError):
            error = None
        if error:
            return f"Not granted: {error['message']}"
        return f"Done: {content}."
    return "Say 'steps', 'grant <n>' or 'big <n>'."
