"""``manage.py chat``: scripted sessions through call_command, and real processes in a terminal
(a pseudo-terminal of a set width, Ctrl-C sent as SIGINT)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from agents import chat_agents
from django_ai.conversations.constants import EventName
from django_ai.conversations.internal.wrap import StreamWrapper, cell_width
from django_ai.conversations.models import ConversationMessage, ConversationSession, ConversationWidget

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(chat_agents, "WORD_DELAY", 0)


def chat(*args, stdin=None):
    out, err = io.StringIO(), io.StringIO()
    call_command("ai_chat", *args, stdout=out, stderr=err, stdin=stdin or io.StringIO(""), no_color=True)
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


def test_after_new_the_reply_still_streams():
    """The streamed part of a reply that then fails is shown: in the first conversation and in
    the one /new starts (its events were not followed)."""
    from django_ai.conversations.registry import register_agent
    from tests.sdk_agents import StreamTestAgent, mixed_text

    register_agent("stream-test", StreamTestAgent)
    out, _ = chat("stream-test", stdin=io.StringIO("fail 40\n/new\nfail 40\n/quit\n"))
    assert out.count(mixed_text(40)) == 2, out
    # The failure's notice on a line of its own under the partial text.
    assert out.count(mixed_text(40) + "\nSorry, something went wrong") == 2


def test_a_user_given_with_user_reaches_create_context_as_request_user(django_user_model):
    """The README's create_context reads ``request.user``: --user makes it the conversation's
    owner and the user create_context sees (not user_id=0)."""
    alice = django_user_model.objects.create_user("alice", password="x")
    chat("support", "--user", "alice", "--context", '{"tier": "premium"}', "-m", "hello")
    session = ConversationSession.objects.get()
    assert session.user == alice
    assert session.context["user_id"] == alice.pk and session.context["support_tier"] == "premium"


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


@pytest.mark.once
def test_a_real_terminal_process(tmp_path):
    """The command as a person runs it: its own process, stdin piped, a fresh SQLite database."""
    env = {**os.environ, "DJANGO_AI_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "backend.settings"}
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    done = subprocess.run(
        [sys.executable, "manage.py", "ai_chat", "echo", "--no-color"],
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


class Terminal:
    """``manage.py chat`` in its own process on a pseudo-terminal ``columns`` wide, with a fresh
    SQLite database in ``var_dir`` (read back with :meth:`rows`)."""

    PROMPT = "you › "

    def __init__(self, var_dir: Path, *args: str, columns: int = 80):
        env = {**os.environ, "DJANGO_AI_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "backend.settings"}
        for name in ("DATABASE_URL", "COLUMNS", "LINES"):
            env.pop(name, None)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
        self.database = var_dir / "demo.sqlite3"
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "chat", *args, "--no-color"],
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.output = ""
        self._raw = b""

    def read(self, wait: float = 0.2) -> bool:
        """Read what the process wrote within ``wait`` seconds; False once it is gone and all read."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the process is gone and its terminal closed
            return False
        self._raw += data
        self.output = self._raw.decode(errors="replace").replace("\r\n", "\n")
        return bool(data)

    def wait_for(self, predicate, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.output):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the terminal shows:\n{self.output}")
            self.read()

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def interrupt(self) -> None:
        os.kill(self.process.pid, signal.SIGINT)

    def exit_code(self, timeout: float = 90) -> int:
        code = self.process.wait(timeout=timeout)
        deadline = time.monotonic() + 30
        while self.read(1) and time.monotonic() < deadline:  # the rest of its output, to the end
            pass
        return code

    def rows(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.database) as db:
            return db.execute(sql).fetchall()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path):
    opened: list[Terminal] = []

    def start(*args: str, columns: int = 80) -> Terminal:
        opened.append(Terminal(tmp_path, *args, columns=columns))
        return opened[-1]

    yield start
    for term in opened:
        term.close()


def reply_after(output: str, label: str) -> str:
    """The text after the last ``label › `` (empty before the reply starts)."""
    before, prompt, reply = output.rpartition(f"{label} › ")
    return reply if prompt else ""


MESSAGES = (
    "SELECT message_type, processing_status, content FROM django_ai_conversations_conversationmessage "
    "ORDER BY timestamp"
)


@pytest.mark.once
def test_ctrl_c_stops_the_streaming_reply_and_ctrl_c_at_the_prompt_leaves(terminal):
    """As the stop button: the turn ends cancelled with the text streamed so far, then the prompt."""
    term = terminal("writer")
    term.wait_for(lambda out: out.endswith(Terminal.PROMPT), "the prompt")
    term.type("a lighthouse keeper")
    term.wait_for(lambda out: len(reply_after(out, "writer").split()) > 12, "the story to stream")
    term.interrupt()
    term.wait_for(
        lambda out: "(stopped)" in out and out.endswith(Terminal.PROMPT), "the stopped reply and a new prompt"
    )
    assert "Traceback" not in term.output
    (_, user_status, _), (_, agent_status, partial) = term.rows(MESSAGES)
    assert (user_status, agent_status) == ("cancelled", "cancelled")
    # The partial text is kept, and it is what the terminal showed.
    assert len(partial.split()) > 12 and not partial.endswith("The end.")
    shown = " ".join(reply_after(term.output, "writer").split("(stopped)")[0].split())
    assert shown.startswith(" ".join(partial.split()[:12]))

    term.interrupt()
    assert term.exit_code() == 0
    assert "Traceback" not in term.output and "KeyboardInterrupt" not in term.output


@pytest.mark.once
def test_a_second_ctrl_c_while_the_turn_stops_leaves(terminal, tmp_path):
    term = terminal("writer")
    term.wait_for(lambda out: out.endswith(Terminal.PROMPT), "the prompt")
    term.type("a lost umbrella")
    term.wait_for(lambda out: len(reply_after(out, "writer").split()) > 5, "the story to stream")
    term.interrupt()
    # The first Ctrl-C has reached the turn when the message records the cancel request.
    deadline = time.monotonic() + 90
    while not term.rows(
        "SELECT 1 FROM django_ai_conversations_conversationmessage WHERE cancel_requested_at IS NOT NULL"
    ):
        assert time.monotonic() < deadline, term.output
        term.read()
    term.interrupt()
    assert term.exit_code() == 0, term.output
    assert "Traceback" not in term.output and "KeyboardInterrupt" not in term.output
    assert [status for _, status, _ in term.rows(MESSAGES)] == ["cancelled", "cancelled"]


@pytest.mark.once
def test_replies_wrap_at_word_boundaries_to_the_terminal_width(terminal):
    term = terminal(
        "support", "--context", '{"tier": "premium"}', "-m", "How do refunds work, and where is my invoice?", columns=50
    )
    assert term.exit_code() == 0, term.output
    [(reply,)] = term.rows(
        "SELECT content FROM django_ai_conversations_conversationmessage WHERE message_type = 'agent'"
    )
    shown = term.output.partition("support › ")[2].rstrip("\n").split("\n")
    assert len(shown) > 4
    # One column spare: some terminals add a blank line after a line that fills them exactly.
    assert all(cell_width(line) <= 49 for line in shown), shown
    # Continuation lines hang under the reply, and no word is cut: the lines are the reply's words.
    assert all(line.startswith(" " * len("support › ")) for line in shown[1:])
    assert [line.split() for line in shown] and [word for line in shown for word in line.split()] == reply.split()


def _wrapped(pieces, **kwargs):
    out: list[str] = []
    wrapper = StreamWrapper(out.append, **kwargs)
    for piece in pieces:
        wrapper.feed(piece)
    wrapper.finish()
    return "".join(out)


def test_stream_wrapper_breaks_between_words_whatever_the_pieces():
    text = "Once upon a time, in a city of glass towers and quiet gardens, there lived a robot.\n\nThe end."
    expected = "Once upon a time, in a\ncity of glass towers and\nquiet gardens, there\nlived a robot.\n\nThe end."
    assert _wrapped([text], width=24) == expected
    # Pieces cut mid-word (as a stream delivers them) wrap the same.
    assert _wrapped(re.findall(r".{1,5}", text, re.S), width=24) == expected
    assert _wrapped([text], width=None) == text


def test_stream_wrapper_writes_each_word_as_soon_as_it_ends():
    out: list[str] = []
    wrapper = StreamWrapper(out.append, width=40, column=9, indent=9)
    wrapper.feed("Hello wor")
    assert "".join(out) == "Hello"  # "wor" may still grow
    wrapper.feed("ld ")
    assert "".join(out) == "Hello world"
    wrapper.finish()


def test_stream_wrapper_cuts_words_longer_than_a_line_and_counts_wide_characters():
    assert _wrapped(["x" * 25 + " end"], width=10) == "xxxxxxxxxx\nxxxxxxxxxx\nxxxxx end"
    # Each of these takes two columns.
    assert _wrapped(["日本語 日本語 日本語"], width=14) == "日本語 日本語\n日本語"
    # A hanging indent under a prompt of 9 columns.
    assert _wrapped(["aaaa bbbb cccc dddd eeee ffff"], width=29, column=9, indent=9) == (
        "aaaa bbbb cccc dddd\n         eeee ffff"
    )


def test_tool_steps_show_their_result_or_that_they_wait_for_approval():
    out, _ = chat("sales", "-m", "a 5 % discount on team-seats", "-m", "a 20 % discount on pro-features")
    assert (
        '[tool] apply_discount({"product_id": "team-seats", "percent": 5}) → Discount applied: 5 % off team-seats.'
        in out
    )
    assert '[tool] apply_discount({"product_id": "pro-features", "percent": 20}) → waits for approval (step ' in out
