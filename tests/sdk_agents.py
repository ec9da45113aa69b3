"""Agents for the SDK's tests, registered only by the test settings (``tests.settings``,
``DJANGO_AI["AGENTS"]``), which the SDK's test server runs. They live with the tests, not with the
demo's agents (``agents/``), so that ``./dev demo`` (``backend.settings``) never has them.

- ``stream-test``: ``StreamTestAgent`` streams text chosen by the message, to check how clients
  rebuild a reply from coalesced and split ``text_chunk`` events (docs/protocol.md, "Text chunks").

The demo page lists them only on a server started with the test settings
(frontend_client/test/helpers/server.ts does).
"""

from __future__ import annotations

import asyncio

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream

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
      ``failed`` with the generic system message.
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
            elif command == "burst":
                for n in range(count):
                    for k in range(3):
                        stream.write(f"[{n}.{k}] " + PIECES[(n + k) % len(PIECES)])
                    if n % 40 == 39:
                        stream.write(mixed_text(12_000, start=n))
                    await asyncio.sleep(0.02)
            else:
                stream.write(f"Unknown command {command!r}: say 'long <n>', 'burst <rounds>' or 'fail <n>'.")
        await asyncio.sleep(END_PAUSE)
        return stream.content
