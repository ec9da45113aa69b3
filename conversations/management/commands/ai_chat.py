"""``python manage.py ai_chat <agent_path>``: talk to an agent in the terminal, the reply streamed.

``manage.py chat`` is an alias (a project with a ``chat`` command of its own keeps it when its app
comes before this one in INSTALLED_APPS, as Django gives a command name to the first app that has it).

The conversation is a real session (stored like any other, visible in the admin and to the bridge);
the turns run inline in this process. Streamed chunks are printed as the agent writes them and
still go to the configured realtime backend, so a browser watching the session sees them too.
In a terminal the reply is wrapped at word boundaries to its width.

Ctrl-C while a reply streams does what the demo's stop button does: it asks for the turn to be
cancelled (``ConversationService.cancel_turn``, from a helper thread: the main thread is busy
serving the turn and must not be interrupted, or the turn ends failed with a traceback), the turn
ends ``cancelled`` with its partial text kept, and the prompt comes back. A second Ctrl-C before
the turn has stopped, or one at the prompt, leaves.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from pydantic import ValidationError

from ...actions import start_conversation
from ...constants import EventName
from ...exceptions import ConversationError
from ...internal.wrap import StreamWrapper
from ...owners import new_anonymous_id
from ...realtime import get_backend, session_channel
from ...registry import registry
from ...service import ConversationService

if TYPE_CHECKING:
    from ...agent import ConversationAgent
    from ...models import ConversationSession

QUIT = {"/quit", "/exit", "/q"}

#: Seconds between tries to cancel a turn whose message is not saved yet (Ctrl-C pressed at once).
STOP_RETRY_INTERVAL = 0.1


class Command(BaseCommand):
    help = 'Chat with an agent in the terminal: python manage.py ai_chat support [--context \'{"tier": "premium"}\']'
    # call_command(..., stdin=io.StringIO("hello\n/quit\n")) for scripted sessions.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent_path", help="The path the agent is registered under, e.g. support.")
        parser.add_argument(
            "--context",
            default="{}",
            help="Keyword arguments for the agent's create_context, as a JSON object.",
        )
        parser.add_argument("--user", help="Username of the conversation's owner (default: a new anonymous visitor).")
        parser.add_argument("--session", help="Continue this conversation (its id) instead of starting one.")
        parser.add_argument(
            "--message",
            "-m",
            action="append",
            default=[],
            help="Send this message and print the reply, without prompting (repeatable).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdin = options.get("stdin") or sys.stdin
        self._lock = threading.Lock()
        self._streamed = False
        self._prefix_written = False
        self._widgets: list[dict[str, Any]] = []
        self._tool_arguments: dict[Any, Any] = {}
        self._wrapper = StreamWrapper(self._write, width=None)
        # Ctrl-C state: a turn is running, its stop was asked for, the user wants to leave.
        self._in_turn = False
        self._stop_asked = False
        self._leave = False
        self._turn_user: Any = None
        #: The last write shown of each streamed message (its ``sequence``).
        self._shown: dict[str, int] = {}
        agent_path = options["agent_path"]
        try:
            agent_cls = registry.get(agent_path)
        except ConversationError as exc:
            raise CommandError(exc.message) from exc
        user = self._user(options.get("user"))
        context = self._context(options["context"])
        session = self._session(options.get("session"), agent_path, agent_cls, user, context)
        self.session = session
        name = getattr(agent_cls, "display_name", None) or agent_cls.__name__
        self.label = agent_path

        backend = get_backend()
        original_send = backend.send

        def tee(channel: str, event: str, payload: dict[str, Any]) -> None:
            # The conversation of the moment: /new starts another one.
            if channel == session_channel(self.session.pk):
                self._on_event(event, payload)
            original_send(channel, event, payload)

        original_send_text = backend.send_text
        original_text_sink = backend.text_sink

        def tee_text(channel: str, template: dict[str, Any], sequence: int, text: str) -> None:
            if channel == session_channel(self.session.pk):
                self._on_event(EventName.TEXT_CHUNK, {**template, "sequence": sequence, "text": text})
            original_send_text(channel, template, sequence, text)

        def tee_sink(channel: str, template: dict[str, Any]) -> Callable[[int, str], None]:
            # A stream's writes reach a coalescing backend through its text sink, not send():
            # the terminal shows each write as it comes.
            sink = original_text_sink(channel, template)
            if channel != session_channel(self.session.pk):
                return sink

            def write(sequence: int, text: str) -> None:
                self._on_event(EventName.TEXT_CHUNK, {**template, "sequence": sequence, "text": text})
                sink(sequence, text)

            return write

        backend.send = tee  # type: ignore[method-assign]
        backend.send_text = tee_text  # type: ignore[method-assign]
        backend.text_sink = tee_sink  # type: ignore[method-assign]
        restore_interrupts = self._catch_interrupts()
        try:
            if options["message"]:
                for text in options["message"]:
                    self._echo_user(text)
                    self._turn(text, user)
                    if self._leave:
                        break
                return
            self.stdout.write(
                self.style.MIGRATE_HEADING(f"Chatting with {name} ({agent_path}), conversation {session.pk}.")
                + "\nType /quit (or Ctrl-C) to leave, /new for a new conversation; a number picks a widget's option."
                + "\nCtrl-C while the agent answers stops the reply.\n"
            )
            self._loop(agent_path, agent_cls, user, context)
        except KeyboardInterrupt:
            # Ctrl-C outside a turn (at the prompt): leave on a fresh line, without a traceback.
            self.stdout.write("")
        finally:
            restore_interrupts()
            del backend.send  # back to the class's methods
            del backend.send_text
            del backend.text_sink

    def _catch_interrupts(self) -> Callable[[], object]:
        """Route Ctrl-C through :meth:`_interrupted`; returns what puts the previous handler back.
        Signal handlers can only be set in the main thread: elsewhere Ctrl-C keeps its handler."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.signal(signal.SIGINT, self._interrupted)
        return lambda: signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)

    def _interrupted(self, signum: int, frame: Any) -> None:
        if not self._in_turn:
            raise KeyboardInterrupt
        if self._stop_asked:
            self._leave = True  # once the turn has stopped
            return
        self._stop_asked = True
        threading.Thread(
            target=self._stop_turn, args=(self.session.pk, self._turn_user), name="chat-stop", daemon=True
        ).start()

    def _stop_turn(self, session_id: Any, user: Any) -> None:
        # A helper thread with its own database connection, like the stop button's request.
        try:
            while self._in_turn:
                if ConversationService.cancel_turn(session_id, user=user)["status"] == "cancelling":
                    return
                # Nothing to cancel yet: the message is still being saved.
                time.sleep(STOP_RETRY_INTERVAL)
        except Exception as exc:  # noqa: BLE001 - shown to the user, the turn goes on
            with self._lock:
                self.stderr.write(f"Could not stop the reply: {exc}")
        finally:
            connections.close_all()

    def _loop(self, agent_path: str, agent_cls: type[ConversationAgent], user: Any, context: dict[str, Any]) -> None:
        while not self._leave:
            self.stdout.write(self.style.SUCCESS("you › "), ending="")
            self.stdout.flush()
            line = self.stdin.readline()
            if not line:
                self.stdout.write("")
                return
            text = line.strip()
            if not text:
                continue
            if text in QUIT:
                return
            if text == "/new":
                self.session = self._session(None, agent_path, agent_cls, user, context)
                self._widgets = []
                self.stdout.write(self.style.MIGRATE_HEADING(f"New conversation {self.session.pk}."))
                continue
            if text.isdigit() and self._widgets:
                text = self._widget_answer(int(text)) or text
                self._echo_user(text)
            self._turn(text, user)

    def _turn(self, text: str, user: Any) -> None:
        self._streamed = False
        self._prefix_written = False
        self._stop_asked = False
        self._turn_user = user
        self._in_turn = True
        try:
            result = ConversationService.send_message(session_id=self.session.pk, message=text, user=user)
        except ConversationError as exc:
            self.stderr.write(self.style.ERROR(f"{exc.message}"))
            return
        finally:
            self._in_turn = False
        with self._lock:
            if result["status"] == "error":
                if self._streamed:
                    self._wrapper.break_line()  # the notice under the text streamed before the failure
                self._start_reply()
                self.stdout.write(self.style.ERROR(result.get("error") or "The agent failed."))
            elif not self._streamed:
                self._start_reply()
                self._wrapper.feed(result["response"])
                self._wrapper.finish()
                self.stdout.write("")
            else:
                self._wrapper.finish()
                self.stdout.write("")
            if result["status"] == "cancelled":
                self.stdout.write(self.style.WARNING("(stopped)"))
            self.stdout.flush()

    def _write(self, text: str) -> None:
        self.stdout.write(text, ending="")

    def _start_reply(self) -> None:
        if not self._prefix_written:
            self._prefix_written = True
            prefix = f"{self.label} › "
            self.stdout.write(self.style.HTTP_INFO(prefix), ending="")
            self._wrapper = StreamWrapper(self._write, width=self._width(), column=len(prefix), indent=len(prefix))

    def _width(self) -> int | None:
        """Columns to wrap the reply at: the terminal's (read at each reply, it may have been
        resized), or None when the output is not a terminal (a file or a pipe gets the text as is)."""
        if not self.stdout.isatty():
            return None
        # One column spare: some terminals add a blank line after a line that fills them exactly.
        return max(shutil.get_terminal_size().columns - 1, 1)

    def _on_event(self, event: str, payload: dict[str, Any]) -> None:
        # Called from the agent's thread as it writes: print at once.
        with self._lock:
            if event == EventName.TEXT_CHUNK:
                # A write may reach the terminal by two of the tees (a backend's text sink calls
                # its send_text, whose default calls send): shown once, by its sequence.
                key, sequence = str(payload.get("message_id")), payload.get("sequence")
                if isinstance(sequence, int):
                    if sequence <= self._shown.get(key, 0):
                        return
                    self._shown[key] = sequence
                self._start_reply()
                self._streamed = True
                self._wrapper.feed(payload.get("text", ""))
                self.stdout.flush()
            elif event == EventName.WIDGET:
                self._show_widget(payload)
            elif event == EventName.TOOL_CALL_ARGUMENTS:
                self._tool_arguments[payload.get("call_id")] = payload.get("arguments") or {}
                if payload.get("status") == "awaiting_approval":
                    self._show_tool(payload, f"waits for approval (step {payload.get('message_id')})")
            elif event == EventName.TOOL_CALL_RESULT:
                error = payload.get("error") or {}
                self._show_tool(
                    payload, payload.get("result") if not error else f"{error.get('code')}: {error.get('message')}"
                )

    def _show_tool(self, payload: dict[str, Any], outcome: Any) -> None:
        # A tool step of the reply (the declared tool loop's tool_call_* events), on a line of its own.
        arguments = json.dumps(self._tool_arguments.get(payload.get("call_id"), {}), ensure_ascii=False)
        if self._prefix_written:
            self._wrapper.break_line()
        self.stdout.write(self.style.WARNING(f"[tool] {payload.get('name')}({arguments}) → {outcome}"))

    def _show_widget(self, payload: dict[str, Any]) -> None:
        data = payload.get("data") or {}
        kind = payload.get("widget_type", "widget")
        title = data.get("title") or kind
        lines = [self.style.WARNING(f"[{kind}] {title}")]
        options = data.get("available_slots")
        if isinstance(options, list) and options:
            self._widgets.append(data)
            lines += [f"  {i}) {option}" for i, option in enumerate(options, 1)]
        elif kind == "tool_call":
            lines[0] = self.style.WARNING(
                f"[tool] {data.get('name')}({json.dumps(data.get('arguments', {}))}) → {data.get('result')}"
            )
        else:
            lines.append("  " + json.dumps(data, ensure_ascii=False))
        if self._prefix_written:
            self._wrapper.break_line()
        self.stdout.write("\n".join(lines))

    def _widget_answer(self, number: int) -> str | None:
        data = self._widgets[-1]
        options = data.get("available_slots") or []
        if not 1 <= number <= len(options):
            return None
        template = data.get("answer_template") or "{slot}"
        return str(template).replace("{slot}", str(options[number - 1]))

    def _echo_user(self, text: str) -> None:
        self.stdout.write(self.style.SUCCESS("you › ") + text)

    def _user(self, username: str | None) -> Any:
        if not username:
            return None
        User = get_user_model()
        try:
            return User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist as exc:
            raise CommandError(f"No user {username!r}: create it first (manage.py createsuperuser).") from exc

    def _context(self, raw: str) -> dict[str, Any]:
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise CommandError(f'--context must be a JSON object, e.g. \'{{"tier": "premium"}}\' ({exc}).') from exc
        if not isinstance(value, dict):
            raise CommandError('--context must be a JSON object, e.g. \'{"tier": "premium"}\'.')
        return value

    def _session(
        self,
        session_id: str | None,
        agent_path: str,
        agent_cls: type[ConversationAgent],
        user: Any,
        context: dict[str, Any],
    ) -> ConversationSession:
        try:
            if session_id:
                session = (
                    ConversationService.get_session(session_id, user=user)
                    if user
                    else ConversationService.get_session(session_id)
                )
                if session.agent_path != agent_path and registry.get(session.agent_path) is not agent_cls:
                    raise CommandError(f"Conversation {session_id} is with {session.agent_path!r}, not {agent_path!r}.")
                return session
            if user is not None:
                # create_context sees request.user, as in a view (start_conversation(user=...)).
                started = start_conversation(agent_path, context_kwargs=context, user=user, title="Terminal chat")
                return ConversationService.get_session(started["session_id"], user=user)
            built = agent_cls.validate_context(agent_cls.create_context(request=None, **context))
            return ConversationService.create_session(
                agent_path,
                user=user,
                anonymous_id=None if user else new_anonymous_id(),
                context=built,
                title="Terminal chat",
            )
        except ConversationError as exc:
            raise CommandError(exc.message) from exc
        except (TypeError, ValidationError) as exc:
            raise CommandError(f"{agent_cls.__name__}.create_context refused the --context keys: {exc}") from exc
