"""``manage.py chat``: scripted sessions through call_command, and one real interactive process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from agents import chat_agents
from django_ai.conversations.constants import EventName
from django_ai.conversations.models import ConversationMessage, ConversationSession, ConversationWidget

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(chat_agents, "WORD_DELAY", 0)


def chat(*args, stdin=None):
    out, err = io.StringIO(), io.StringIO()
    call_command("chat", *args, stdout=out, stderr=err, stdin=stdin or io.StringIO(""), no_color=True)
    return out.getvalue(), err.getvalue()


def test_one_shot_messages_stream_the_reply_once(events):
    out, err = chat("support", "--context", '{"tier": "premium"}', "-m", "How do refunds work?")
    assert err == ""
    session = ConversationSession.objects.get()
    reply = ConversationMessage.objects.get(session=session, message_type="agent")
    # Printed chunk by chunk as streamed (the streamed text, not re-printed at the end).
    streamed = "".join(p["text"] for p in events.of(EventName.TEXT_CHUNK))
    assert len(events.of(EventName.TEXT_CHUNK)) > 5
    assert f"support › {streamed}" in out
    assert out.count("Refunds for annual plans") == 1
    assert "As a premium customer" in reply.content
    # The events also reached the configured backend (a browser watching would see them).
    assert events.of(EventName.STREAM_END)


def test_interactive_session_with_a_widget_answered_by_number():
    stdin = io.StringIO("hello\nbook a call\n2\n/quit\n")
    out, _ = chat("support", stdin=stdin)
    assert "Hello! How can I help you today?" in out
    widget = ConversationWidget.objects.get()
    slots = widget.data["available_slots"]
    assert "[appointment_form] Book a call with support" in out
    assert f"  2) {slots[1]}" in out
    assert f"you › Book {slots[1]}" in out
    assert f"booked for {slots[1]}" in out
    widget.refresh_from_db()
    assert widget.display_data["selected_slot"] == slots[1]


def test_new_starts_another_conversation_and_tools_are_shown():
    out, _ = chat("sales", stdin=io.StringIO("can I use pro-features?\n/new\nwhat do you sell?\n"))
    assert ConversationSession.objects.count() == 2
    assert '[tool] check_eligibility({"product_id": "pro-features"})' in out
    assert "Upgrade required" in out
    assert "Here is what we offer" in out


def test_continue_a_conversation_by_id():
    chat("echo", "-m", "first")
    session = ConversationSession.objects.get()
    out, _ = chat("echo", "--session", str(session.pk), "-m", "second")
    assert "echo › You said: second" in out
    assert ConversationMessage.objects.filter(session=session).count() == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "No agent is registered under 'nope'"),
        (["echo", "--context", "[1]"], "--context must be a JSON object"),
        (["echo", "--context", "{bad"], "--context must be a JSON object"),
        (["echo", "--user", "ghost"], "No user 'ghost'"),
        (["echo", "--session", "00000000-0000-0000-0000-000000000000"], "does not exist"),
    ],
)
def test_bad_arguments_name_the_fix(args, message):
    with pytest.raises(CommandError, match=message):
        chat(*args)
    assert ConversationSession.objects.count() == 0


def test_failed_turns_print_the_generic_error(monkeypatch):
    async def broken(self, message, request=None, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(chat_agents.EchoAgent, "get_response", broken)
    out, _ = chat("echo", "-m", "hi")
    assert "echo › Sorry, something went wrong while answering. Please try again." in out
    assert "boom" not in out


def test_a_real_terminal_process(tmp_path):
    """The command as a person runs it: its own process, stdin piped, a fresh SQLite database."""
    env = {**os.environ, "DJANGO_AI_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "backend.settings"}
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    done = subprocess.run(
        [sys.executable, "manage.py", "chat", "echo", "--no-color"],
        cwd=ROOT,
        env=env,
        input="hello there\n/quit\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Chatting with Echo (echo)" in done.stdout
    assert "echo › You said: hello there" in done.stdout
