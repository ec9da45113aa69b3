"""Example agents of the demo: the seed README's agents, made real.

- ``echo``: ``EchoAgent`` repeats what you say (no streaming).
- ``support``: ``SupportAgent`` streams its answers, keeps a typed Context, and books appointments
  through the ``appointment_form`` widget whose slots answer back.
- ``files``: ``FileAnalystAgent`` reads attached files with ``get_file_text`` / ``wait_for_file_text``.
- ``writer``: ``StorytellerAgent`` streams a story about what you ask for, slowly (try the stop button).
- ``sales``: ``SalesAgent`` (in :mod:`agents.sales`) calls tools through an LLM, offline by default.
- ``notes``: ``NotebookAgent`` keeps notes and a turn counter in its Context: regenerating or
  editing an earlier message shows the Context that turn started from.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from django_ai.conversations import ConversationAgent
from django_ai.conversations.constants import ExtractionStatus
from django_ai.conversations.context import (
    ResponseStream,
    display_widget,
    get_file_text,
    update_widget,
    wait_for_file_text,
)
from django_ai.conversations.models import File

from .stories import story_subject, tell

#: Seconds between streamed words: slow enough to see the stream in the demo.
WORD_DELAY = 0.03


class EchoAgent(ConversationAgent):
    """Repeats what you say."""

    display_name = "Echo"

    async def get_response(self, message, request=None, **kwargs):
        return f"You said: {message}"


#: What support knows, by topic: the words that lead to it (matched at the start of a word, so
#: "refunds" finds "refund" and "recall" does not find "call"), and the answer.
SUPPORT_ANSWERS = {
    "billing": (
        ("bill", "invoice", "charge", "payment", "pay"),
        "Invoices are in Settings → Billing. Each charge links to its PDF invoice, and a wrong "
        "charge can be disputed from there within 60 days.",
    ),
    "signing in": (
        ("password", "login", "log in", "sign in", "signin", "locked"),
        "Use “Forgot password” on the sign-in page: the reset link is valid for one hour. After five "
        "failed attempts the account locks for 15 minutes.",
    ),
    "refunds and cancellations": (
        ("refund", "cancel", "money back"),
        "Refunds for annual plans are pro-rated within the first 30 days. Monthly plans can be "
        "cancelled at any time and stay active until the end of the period.",
    ),
    "orders and shipping": (
        ("ship", "deliver", "order", "track", "parcel"),
        "Orders ship within two working days; the tracking link arrives by e-mail as soon as the "
        "parcel leaves the warehouse.",
    ),
}

GREETING = re.compile(r"^\W*(hello|hi|hey|good (morning|afternoon|evening))\b[\s\w]{0,20}\W*$", re.IGNORECASE)
THANKS = re.compile(r"^\W*(thanks|thank you|thx|cheers)\b[\s\w]{0,20}\W*$", re.IGNORECASE)
BOOKING_WORDS = ("appointment", "book", "call", "talk to a person", "human", "agent")


def _mentions(text: str, keys: tuple[str, ...]) -> bool:
    """Whether ``text`` has one of ``keys`` at the start of a word (``text`` in lower case)."""
    return any(re.search(r"\b" + re.escape(key), text) for key in keys)


def upcoming_slots(now: datetime | None = None) -> list[str]:
    """Three appointment slots on the next working days."""
    day = (now or datetime.now().astimezone()).date()
    slots: list[str] = []
    while len(slots) < 3:
        day += timedelta(days=1)
        if day.weekday() >= 5:
            continue
        for hour in ("10:00", "14:00") if not slots else ("11:30",):
            slots.append(f"{day.isoformat()} {hour}")
    return slots[:3]


class SupportAgent(ConversationAgent):
    """Customer support: streams its answers and books appointments."""

    display_name = "Support"

    class Context(BaseModel):
        user_id: int = 0
        support_tier: str = "basic"
        message_count: int = 0
        offered_slots: list[str] = Field(default_factory=list)
        appointment_widget: str = ""
        booked_slot: str = ""

    class StartParams(BaseModel):
        """What the page may choose when it starts a conversation (the demo's plan selector).
        The user id is never among them: create_context reads it from the request."""

        tier: Literal["basic", "premium"] = "basic"

    @classmethod
    def create_context(cls, request=None, **kwargs):
        user = request.user if request and request.user.is_authenticated else None
        return cls.Context(user_id=user.id if user else 0, support_tier=kwargs.get("tier", "basic"))

    async def get_response(self, message, request=None, **kwargs):
        ctx = self.context
        ctx.message_count += 1
        text = message.lower()

        slot = next((s for s in ctx.offered_slots if s in message), None)
        if slot:
            ctx.booked_slot = slot
            if ctx.appointment_widget:
                update_widget(ctx.appointment_widget, display_data={"selected_slot": slot, "confirmed": True})
            return f"Done! Your call with support is booked for {slot}. You'll get a calendar invite by e-mail."

        topics = [(topic, answer) for topic, (keys, answer) in SUPPORT_ANSWERS.items() if _mentions(text, keys)]
        if not topics and _mentions(text, BOOKING_WORDS):
            slots = upcoming_slots()
            ctx.offered_slots = slots
            widget = display_widget(
                "appointment_form",
                {
                    "title": "Book a call with support",
                    "available_slots": slots,
                    # The demo page sends this message when a slot is picked.
                    "answer_template": "Book {slot}",
                },
            )
            ctx.appointment_widget = str(widget.pk)
            return "Please select your preferred time above."

        if not topics:
            # Only a greeting or a thank-you is answered as one: "Hi, I was charged twice" is a question.
            if GREETING.match(message):
                return "Hello! How can I help you today?"
            if THANKS.match(message):
                return "You're welcome! Anything else I can help with?"

        with ResponseStream() as stream:
            stream.write("Let me check that for you. ")
            await asyncio.sleep(WORD_DELAY * 5)
            if topics:
                names = " and ".join(topic for topic, _ in topics[:2])
                text = f"As a {ctx.support_tier} customer, here is what I know about {names}: " + " ".join(
                    answer for _, answer in topics[:2]
                )
            else:
                text = (
                    "I couldn't find an article on that yet. Ask me about billing, passwords, refunds or "
                    "shipping, or type “book a call” to talk to a person."
                )
            for word in text.split(" "):
                stream.write(word + " ")
                await asyncio.sleep(WORD_DELAY)
        return stream.content.strip()


class FileAnalystAgent(ConversationAgent):
    """Reads the files you attach (PDF, Word, images with text) and answers about them; a question
    without a file is answered from the conversation's earlier files."""

    display_name = "File analyst"

    # A plain ``def``: it waits for extraction with wait_for_file_text, which blocks.
    def get_response(self, message, request=None, **kwargs):
        if not self.files:
            return self.answer_from_earlier_files(message)
        with ResponseStream() as stream:
            for file in self.files:
                text = get_file_text(file.id)
                if text is None and file.extraction_status != ExtractionStatus.FAILED:
                    stream.write(f"Reading {file.filename}… ")
                    text = wait_for_file_text(file.id, timeout=90)
                if not text or not text.strip():
                    stream.write(f"I couldn't find any text in {file.filename}.\n\n")
                    continue
                words = text.split()
                excerpt = " ".join(words[:60]) + (" …" if len(words) > 60 else "")
                stream.write(f"{file.filename}: {len(words)} words. It reads: “{excerpt}”\n\n")
                hits = _matching_lines(text, message)
                if hits:
                    stream.write("Lines that match your question:\n")
                    for line in hits:
                        stream.write(f"• {line}\n")
        return stream.content.strip()

    def answer_from_earlier_files(self, message: str) -> str:
        # A sync agent may use the ORM directly: the files read before in this conversation.
        done = File.objects.filter(session=self.session, extraction_status=ExtractionStatus.DONE)
        earlier = list(done.order_by("-created_at")[:3])
        if not earlier:
            return "Attach a file (a PDF, a Word document, a photo of a page…) and I'll read it for you."
        if not _keywords(message):
            names = ", ".join(f.filename for f in earlier)
            return f"Ask me something about {names}, or attach another file."
        parts = []
        for file in earlier:
            hits = _matching_lines(file.extracted_text, message)
            if hits:
                parts.append(f"In {file.filename}:\n" + "\n".join(f"• {line}" for line in hits))
        if not parts:
            names = ", ".join(f.filename for f in earlier)
            return f"Nothing in {names} matches your question. Try other words, or attach another file."
        return "\n\n".join(parts)


#: Words of a question that say nothing about what to look for in a file.
QUESTION_WORDS = {
    "what", "which", "does", "this", "that", "file", "files", "about", "please", "there", "with", "read", "tell",
    "where", "when", "have", "here", "from", "into", "document", "page", "says", "show", "find", "give", "much",
    "many", "them", "they", "their", "your", "mine", "those", "these", "also", "again", "could", "would", "should",
}  # fmt: skip


def _keywords(question: str) -> set[str]:
    return set(re.findall(r"[a-zA-Z]{4,}", question.lower())) - QUESTION_WORDS


def _matching_lines(text: str, question: str, limit: int = 3) -> list[str]:
    keywords = _keywords(question)
    if not keywords:
        return []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [line[:200] for line in lines if any(k in line.lower() for k in keywords)][:limit]


class StorytellerAgent(ConversationAgent):
    """Tells a story about what you ask for, word by word (try the stop button).

    Offline: the stories come from :mod:`agents.stories` (a few plots with the subject woven in,
    the same story for the same subject).
    """

    display_name = "Storyteller"

    async def get_response(self, message, request=None, **kwargs):
        if GREETING.match(message):
            return (
                "Hello! What should the story be about? Give me a subject, like “a lighthouse keeper”, "
                "or say “tell me a story”."
            )
        if THANKS.match(message):
            return "You're welcome! Give me another subject whenever you like."
        subject = story_subject(message)
        if subject is None:
            return (
                "I tell stories. Give me a subject, like “a lost umbrella”, or say “tell me a story” and I'll pick one."
            )
        with ResponseStream() as stream:
            for word in tell(subject).split(" "):
                # write() raises when someone pressed stop: the partial text is kept.
                stream.write(word + " ")
                await asyncio.sleep(WORD_DELAY * 2)
        return stream.content.strip()


NOTE_COMMAND = re.compile(r"^\W*(?:remember|note)\b[\s:,-]*(?P<note>.*?)[\s.!]*$", re.IGNORECASE | re.DOTALL)


class NotebookAgent(ConversationAgent):
    """Keeps what you ask it to remember, and counts the turns, in its Context.

    Every answer is a function of the Context the turn starts from and the message, so a
    regenerated turn answers as the first time (the same turn number, the same notes) and an
    edited earlier message answers from the notes as they were before it.
    """

    display_name = "Notebook"

    class Context(BaseModel):
        turns: int = 0
        notes: list[str] = Field(default_factory=list)

    async def get_response(self, message, request=None, **kwargs):
        ctx = self.context
        ctx.turns += 1
        match = NOTE_COMMAND.match(message)
        if match and match.group("note"):
            note = " ".join(match.group("note").split())[:200]
            ctx.notes.append(note)
            answer = f"Noted: “{note}”."
        elif ctx.notes:
            answer = "You asked me to remember:"
        else:
            answer = "Nothing noted yet. Say “remember …” and I'll keep it."
        listing = "".join(f"\n{number}. {note}" for number, note in enumerate(ctx.notes, 1))
        return f"{answer}{listing}\n\n_Turn {ctx.turns} of this conversation, {len(ctx.notes)} note(s) kept._"
