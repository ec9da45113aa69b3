"""The agent API: declaration checks, sync and async agents, failures, context, and the helpers
of ``django_ai.conversations.context`` (real database, in-memory realtime backend)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings
from pydantic import BaseModel

from django_ai.conversations import ConversationAgent, register_agent
from django_ai.conversations.agent import EmptyContext
from django_ai.conversations.constants import EventName, MessageType, ProcessingStatus
from django_ai.conversations.context import (
    ResponseStream,
    current_session,
    display_widget,
    get_file_text,
    report_usage,
    update_widget,
    wait_for_file_text,
)
from django_ai.conversations.exceptions import (
    ConversationError,
    ImproperlyDeclaredAgent,
    InvalidInput,
    NoActiveConversation,
    WidgetNotFound,
)
from django_ai.conversations.models import ConversationMessage, ConversationSession, ConversationWidget
from django_ai.conversations.registry import registry
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FileFactory, UserFactory
from tests.helpers import make_request

pytestmark = pytest.mark.django_db

GENERIC = "Sorry, something went wrong while answering. Please try again."


def run(agent_cls: type[ConversationAgent], *messages: str, context: Any = None, **kwargs: Any) -> tuple[ConversationSession, list[dict]]:
    register_agent("under-test", agent_cls)
    session = ConversationService.create_session("under-test", context=context)
    results = [ConversationService.send_message(session.id, m, **kwargs) for m in messages]
    session.refresh_from_db()
    return session, results


# --- Declaration ------------------------------------------------------------------------------------


class NoResponse(ConversationAgent):
    pass


class StaticResponse(ConversationAgent):
    @staticmethod
    def get_response(message, request=None, **kwargs):
        return "x"


class ClassResponse(ConversationAgent):
    @classmethod
    def get_response(cls, message, request=None, **kwargs):
        return "x"


class NoMessageParam(ConversationAgent):
    async def get_response(self):
        return "x"


class NoRequestParam(ConversationAgent):
    def get_response(self, message):
        return "x"


class GeneratorResponse(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        yield "x"


class PlainContext(ConversationAgent):
    class Context:
        user_id: int = 0

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class PlainCreateContext(ConversationAgent):
    def create_context(cls, request=None, **kwargs):
        return cls.Context()

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class StaticCreateContext(ConversationAgent):
    @staticmethod
    def create_context(request=None, **kwargs):
        return EmptyContext()

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class NarrowCreateContext(ConversationAgent):
    @classmethod
    def create_context(cls, tier):
        return cls.Context()

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class BadPolicy(ConversationAgent):
    concurrency = "queue-it"

    async def get_response(self, message, request=None, **kwargs):
        return "x"


class NotAnAgent:
    async def get_response(self, message, request=None, **kwargs):
        return "x"


@pytest.mark.parametrize(
    ("agent", "fix"),
    [
        (NoResponse, "does not define get_response"),
        (StaticResponse, "not a staticmethod or classmethod"),
        (ClassResponse, "not a staticmethod or classmethod"),
        (NoMessageParam, "must accept (self, message, request=None, **kwargs)"),
        (NoRequestParam, "must accept (self, message, request=None, **kwargs)"),
        (GeneratorResponse, "async generator"),
        (PlainContext, "must be a pydantic BaseModel subclass"),
        (PlainCreateContext, "create_context must be a classmethod"),
        (StaticCreateContext, "create_context must be a classmethod"),
        (NarrowCreateContext, "create_context must accept (cls, request=None, **kwargs)"),
        (BadPolicy, "concurrency is 'queue-it'"),
        (NotAnAgent, "is not a ConversationAgent subclass"),
        ("tests.test_agent_api.DoesNotExist", "Could not import agent"),
        ("no_such_module.Agent", "Could not import agent"),
    ],
)
def test_misdeclared_agents_fail_at_registration_naming_the_fix(agent, fix):
    before = registry.paths()
    with pytest.raises(ImproperlyDeclaredAgent) as info:
        register_agent("broken", agent)
    assert fix in str(info.value)
    assert info.value.code == "improperly_declared_agent"
    assert isinstance(info.value, ConversationError)
    assert registry.paths() == before


@pytest.mark.parametrize("path", ["", "has space", "/leading", "trailing/", "a//b", "x" * 201, None, 3])
def test_invalid_agent_paths_are_refused(path):
    class Fine(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            return "x"

    with pytest.raises(ImproperlyDeclaredAgent, match="is not valid"):
        register_agent(path, Fine)


def test_registry_lookup_by_path_or_import_path_and_listing():
    class Listed(ConversationAgent):
        """Answers politely.

        More text that is not part of the description."""

        async def get_response(self, message, request=None, **kwargs):
            return "x"

    register_agent("team/listed", Listed)
    register_agent("team/dotted", "agents.chat_agents.EchoAgent")
    from agents.chat_agents import EchoAgent

    assert registry.get("team/listed") is Listed
    assert registry.get("team/dotted") is EchoAgent
    assert registry.get("agents.chat_agents.EchoAgent") is EchoAgent
    assert "team/listed" in registry and "team/unknown" not in registry
    assert {"path": "team/listed", "name": "Listed", "description": "Answers politely.", "start_params": None} in registry.describe()
    assert {"team/listed", "team/dotted"} <= set(registry.paths())


def test_agents_without_context_get_an_empty_one_that_keeps_keys():
    class Bare(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            self.context.seen = getattr(self.context, "seen", 0) + 1
            return f"{type(self.context).__name__} {self.context.seen} {self.context.topic}"

    session, results = run(Bare, "a", "b", context={"topic": "tax"})
    assert [r["response"] for r in results] == ["EmptyContext 1 tax", "EmptyContext 2 tax"]
    assert session.context == {"topic": "tax", "seen": 2}


# --- Sync and async ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sync_agent_runs_off_the_event_loop():
    seen: dict[str, Any] = {}

    class SyncAgent(ConversationAgent):
        class Context(BaseModel):
            turns: int = 0

        def get_response(self, message, request=None, **kwargs):
            try:
                asyncio.get_running_loop()
                seen["loop"] = True
            except RuntimeError:
                seen["loop"] = False
            # Plain ORM work is fine in a sync agent.
            seen["messages"] = ConversationMessage.objects.filter(session=self.session).count()
            self.context.turns += 1
            with ResponseStream() as stream:
                stream.write("sync ")
                stream.write(message)
            return stream.content

    session, results = run(SyncAgent, "one", "two")
    assert registry.get("under-test").is_async is False
    assert [r["response"] for r in results] == ["sync one", "sync two"]
    assert seen["loop"] is False
    assert seen["messages"] == 3  # two of the first turn, the second user message
    assert session.context == {"turns": 2}


@pytest.mark.django_db
def test_async_agent_is_awaited_on_an_event_loop(events):
    seen: dict[str, Any] = {}

    class AsyncAgent(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            seen["loop"] = asyncio.get_running_loop()
            await asyncio.sleep(0.01)
            # Helpers work from the loop without await: their database work runs on the turn's thread.
            with ResponseStream() as stream:
                for word in ("async", "reply"):
                    stream.write(word + " ")
                    await asyncio.sleep(0)
            display_widget("card", {"n": 1})
            return stream.content.strip()

    session, (result,) = run(AsyncAgent, "go")
    assert registry.get("under-test").is_async is True
    assert isinstance(seen["loop"], asyncio.AbstractEventLoop)
    assert result["response"] == "async reply"
    assert events.text(result["message_id"]) == "async reply "
    assert ConversationWidget.objects.filter(session=session).count() == 1


def test_asend_message_from_async_code():
    class Echo(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            return message.upper()

    register_agent("under-test", Echo)
    session = ConversationService.create_session("under-test")

    async def main() -> dict:
        asyncio.get_running_loop()
        return await ConversationService.asend_message(session.id, "quiet")

    # As in an async view: the turn runs in the thread-sensitive sync thread, off the loop.
    assert async_to_sync(main)()["response"] == "QUIET"


# --- The agent's view of the turn -------------------------------------------------------------------


@pytest.mark.django_db
def test_self_session_request_files_and_message_inside_get_response(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    seen: dict[str, Any] = {}

    class Inspecting(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            seen.update(
                session=self.session, request=self.request, request_arg=request, files=self.files,
                message=self.message, current=current_session(), kwargs=kwargs,
            )
            return "ok"

    user = UserFactory()
    request = make_request(user)
    register_agent("under-test", Inspecting)
    session = ConversationService.create_session("under-test", user=user)
    first, second = FileFactory(user=user, text="a"), FileFactory(user=user, text="b")
    result = ConversationService.send_message(session.id, "look", user=user, request=request, files=[second, first])

    assert seen["session"].pk == session.pk and seen["current"].pk == session.pk
    assert seen["request"] is request and seen["request_arg"] is request
    assert seen["files"] == [second, first]
    assert str(seen["message"].pk) == result["user_message_id"] and seen["message"].content == "look"
    assert seen["kwargs"] == {}


# --- Failures ---------------------------------------------------------------------------------------


class Exploding(ConversationAgent):
    class Context(BaseModel):
        count: int = 0

    async def get_response(self, message, request=None, **kwargs):
        self.context.count += 1
        if message == "boom":
            with ResponseStream() as stream:
                stream.write("partial ")
                raise RuntimeError("database password is hunter2")
        return f"count={self.context.count}"


@pytest.mark.django_db
def test_agent_that_raises(caplog, events):
    caplog.set_level(logging.ERROR, logger="django_ai")
    session, (ok, failed) = run(Exploding, "hi", "boom")

    assert ok["status"] == "success"
    assert failed["status"] == "error"
    assert failed["response"] == ""
    assert failed["error"] == GENERIC
    assert "hunter2" not in str(failed)
    # Context as it was before the failed turn.
    assert session.context == {"count": 1}
    messages = list(session.messages.order_by("timestamp", "id"))
    user_message = next(m for m in messages if m.content == "boom")
    assert user_message.processing_status == ProcessingStatus.FAILED
    system = ConversationMessage.objects.get(session=session, message_type=MessageType.SYSTEM)
    assert system.content == GENERIC and system.reply_to_id == user_message.pk
    assert "hunter2" not in system.content and "RuntimeError" not in system.content
    assert system.metadata == {"code": "agent_error"}
    partial = ConversationMessage.objects.get(reply_to=user_message, message_type=MessageType.AGENT)
    assert partial.processing_status == ProcessingStatus.FAILED and partial.content == "partial "
    # Details are in the log, with the traceback.
    records = [r for r in caplog.records if r.name.startswith("django_ai") and r.levelno == logging.ERROR]
    assert records and records[0].exc_info and "hunter2" in str(records[0].exc_info[1])
    assert str(session.pk) in records[0].getMessage()
    statuses = [e["status"] for e in events.of(EventName.MESSAGE_STATUS) if e["message_id"] == str(user_message.pk)]
    assert statuses[-1] == ProcessingStatus.FAILED

    # The conversation goes on with the context of the last good turn.
    assert ConversationService.send_message(session.id, "again")["response"] == "count=2"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "shown"),
    [
        ({"DJANGO_AI": {"EXPOSE_ERROR_DETAILS": True}, "DEBUG": False}, True),
        ({"DJANGO_AI": {}, "DEBUG": True}, True),
        ({"DJANGO_AI": {"EXPOSE_ERROR_DETAILS": False}, "DEBUG": True}, False),
        ({"DJANGO_AI": {}, "DEBUG": False}, False),
    ],
)
def test_error_details_follow_debug_or_expose_error_details(overrides, shown):
    with override_settings(**overrides):
        session, (result,) = run(Exploding, "boom")
    assert result["status"] == "error"
    assert ("RuntimeError: database password is hunter2" in result["error"]) is shown
    assert result["error"].startswith(GENERIC)


@pytest.mark.django_db
def test_custom_generic_error_message():
    with override_settings(DJANGO_AI={"GENERIC_ERROR_MESSAGE": "Oops, try later."}):
        session, (result,) = run(Exploding, "boom")
    assert result["error"] == "Oops, try later."
    assert session.messages.get(message_type="system").content == "Oops, try later."


@pytest.mark.django_db
def test_non_str_reply_fails_the_turn(caplog):
    class Numbers(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            return 42

    session, (result,) = run(Numbers, "?")
    assert result["status"] == "error"
    assert "returned int" in caplog.text


@pytest.mark.django_db
def test_context_left_invalid_fails_the_turn_and_keeps_the_stored_context():
    class Corrupting(ConversationAgent):
        class Context(BaseModel):
            count: int = 0

        def get_response(self, message, request=None, **kwargs):
            self.context.count = "many" if message == "corrupt" else self.context.count + 1
            return "done"

    session, results = run(Corrupting, "ok", "corrupt", "ok")
    assert [r["status"] for r in results] == ["success", "error", "success"]
    assert session.context == {"count": 2}
    codes = list(session.messages.filter(message_type="system").values_list("metadata__code", flat=True))
    assert codes == ["invalid_context"]


@pytest.mark.django_db
def test_context_that_cannot_be_stored_fails_the_turn():
    class Storing(ConversationAgent):
        class Context(BaseModel):
            note: str = ""

        def get_response(self, message, request=None, **kwargs):
            self.context.note = message.replace("NUL", "\x00")
            return "noted"

    session, results = run(Storing, "plain", "with NUL inside", "plain again")
    assert [r["status"] for r in results] == ["success", "error", "success"]
    assert session.context == {"note": "plain again"}
    assert session.messages.get(message_type="system").metadata == {"code": "invalid_context"}


@pytest.mark.django_db
def test_stored_context_that_no_longer_fits_fails_with_invalid_context_code():
    class Strict(ConversationAgent):
        class Context(BaseModel):
            user_id: int

        async def get_response(self, message, request=None, **kwargs):
            return "never"

    register_agent("under-test", Strict)
    session = ConversationSession.objects.create(agent_path="under-test", context={"user_id": "not a number"})
    result = ConversationService.send_message(session.id, "hi")
    assert result["status"] == "error"
    assert session.messages.get(message_type="system").metadata == {"code": "invalid_context"}
    session.refresh_from_db()
    assert session.context == {"user_id": "not a number"}


@pytest.mark.django_db
def test_nul_characters_in_replies_are_stored_safely():
    class Nul(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            with ResponseStream() as stream:
                stream.write("a\x00b")
            return stream.content + "\x00"

    session, (result,) = run(Nul, "x")
    assert result["status"] == "success"
    assert result["response"] == "a\ufffdb\ufffd"
    assert session.messages.get(message_type="agent").content == "a\ufffdb\ufffd"


# --- Helpers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: ResponseStream().write("x"),
        lambda: ResponseStream().start(),
        lambda: ResponseStream().__enter__(),
        lambda: display_widget("card", {}),
        lambda: update_widget("00000000-0000-0000-0000-000000000000", data={}),
        lambda: get_file_text("00000000-0000-0000-0000-000000000000"),
        lambda: wait_for_file_text("00000000-0000-0000-0000-000000000000", timeout=0),
        lambda: report_usage(prompt_tokens=1),
        lambda: current_session(),
    ],
    ids=["write", "start", "with", "display_widget", "update_widget", "get_file_text", "wait_for_file_text", "report_usage", "current_session"],
)
def test_helpers_outside_a_turn_raise_no_active_conversation(call):
    with pytest.raises(NoActiveConversation, match="inside get_response"):
        call()


def test_response_stream_end_without_start_is_harmless():
    stream = ResponseStream()
    stream.end()
    assert stream.content == "" and str(stream) == ""


@pytest.mark.django_db
def test_response_stream_explicit_start_write_end(events):
    outcome: dict[str, Any] = {}

    class Explicit(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            stream = ResponseStream()
            stream.start()
            stream.write("one ")
            stream.write(None)  # ignored
            stream.write("")  # ignored
            stream.write(2)
            stream.end()
            stream.end()  # idempotent
            try:
                stream.write("late")
            except RuntimeError as exc:
                outcome["late"] = str(exc)
            outcome["str"] = str(stream)
            return stream.content

    session, (result,) = run(Explicit, "go")
    assert result["response"] == "one 2" and outcome["str"] == "one 2"
    assert "has ended" in outcome["late"]
    names = [n for n in events.names(channel=session.channel_name) if n != EventName.MODEL_CHANGE]
    assert names.count(EventName.STREAM_START) == 1 and names.count(EventName.STREAM_END) == 1
    assert names.count(EventName.TEXT_CHUNK) == 2
    agent = session.messages.get(message_type="agent")
    assert agent.stream_sequence == 2 and agent.processing_status == ProcessingStatus.COMPLETED


@pytest.mark.django_db
def test_agent_message_row_exists_while_streaming():
    seen: dict[str, Any] = {}

    class Watching(ConversationAgent):
        def get_response(self, message, request=None, **kwargs):
            with ResponseStream() as stream:
                stream.write("first")
                row = ConversationMessage.objects.get(session=self.session, message_type="agent")
                seen["status"] = row.processing_status
            return stream.content

    run(Watching, "go")
    assert seen["status"] == ProcessingStatus.STREAMING


@pytest.mark.django_db
def test_update_widget_in_a_later_turn(events):
    class Booking(ConversationAgent):
        class Context(BaseModel):
            widget_id: str = ""

        async def get_response(self, message, request=None, **kwargs):
            if not self.context.widget_id:
                widget = display_widget("slots", {"slots": ["10:00", "14:00"]}, display_data={"open": True})
                self.context.widget_id = str(widget.id)
                return "pick one"
            update_widget(self.context.widget_id, display_data={"open": False, "picked": message})
            try:
                update_widget("00000000-0000-0000-0000-000000000000", data={})
            except WidgetNotFound as exc:
                return f"booked {message}; {exc.code}"
            return "unreachable"

    session, results = run(Booking, "show", "14:00")
    assert [r["response"] for r in results] == ["pick one", "booked 14:00; widget_not_found"]
    widget = ConversationWidget.objects.get(session=session)
    assert widget.data == {"slots": ["10:00", "14:00"]}
    assert widget.display_data == {"open": False, "picked": "14:00"}
    (update,) = events.of(EventName.WIDGET_UPDATE)
    assert update["widget_id"] == str(widget.id) and update["display_data"] == widget.display_data


@pytest.mark.django_db
def test_update_widget_cannot_reach_another_conversations_widget():
    from django_ai.conversations.testing import WidgetFactory

    other = WidgetFactory(data={"secret": 1})

    class Reaching(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            try:
                update_widget(message, data={"secret": 2})
            except WidgetNotFound:
                return "refused"
            return "changed"

    _, (result,) = run(Reaching, str(other.id))
    assert result["response"] == "refused"
    other.refresh_from_db()
    assert other.data == {"secret": 1}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", {}), "widget_type"),
        ((None, {}), "widget_type"),
        (("x" * 101, {}), "widget_type"),
        (("card", ["not", "a", "dict"]), "data"),
        (("card", {"when": object()}), "data"),
        (("card", {"n": float("nan")}), "data"),
        (("card", {"text": "a\x00b"}), "data"),
        (("card", {}, "open"), "display_data"),
    ],
)
def test_display_widget_rejects_bad_input_and_writes_nothing(args, field):
    class BadWidget(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            try:
                display_widget(*args)
            except InvalidInput as exc:
                return f"{exc.field}: {exc.message}"
            return "accepted"

    session, (result,) = run(BadWidget, "go")
    assert result["response"].startswith(f"{field}: ")
    assert ConversationWidget.objects.filter(session=session).count() == 0
    assert session.messages.filter(message_type="widget").count() == 0


@pytest.mark.django_db
def test_get_file_text_is_none_while_pending_or_failed(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path

    class Reader(ConversationAgent):
        file_wait_timeout = 0  # runs at once: the pending file is never extracted here

        async def get_response(self, message, request=None, **kwargs):
            return repr([get_file_text(f.id) for f in self.files])

    user = UserFactory()
    register_agent("under-test", Reader)
    session = ConversationService.create_session("under-test", user=user)
    done, pending, failed = FileFactory(user=user, text="done text"), FileFactory(user=user), FileFactory(user=user, failed=True)
    result = ConversationService.send_message(session.id, "read", user=user, files=[done, pending, failed])
    assert result["response"] == repr(["done text", None, None])


@pytest.mark.django_db
def test_get_file_text_sees_extraction_that_finished_during_the_turn(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    from django_ai.conversations.models import File

    class Late(ConversationAgent):
        file_wait_timeout = 0  # runs while the file is pending; the agent finishes its extraction

        def get_response(self, message, request=None, **kwargs):
            file = self.files[0]
            before = get_file_text(file.id)
            File.objects.filter(pk=file.pk).update(extraction_status="done", extracted_text="arrived")
            return f"{before}|{get_file_text(file.id)}|{wait_for_file_text(file.id, timeout=1)}"

    user = UserFactory()
    register_agent("under-test", Late)
    session = ConversationService.create_session("under-test", user=user)
    file = FileFactory(user=user)
    assert ConversationService.send_message(session.id, "x", user=user, files=[file])["response"] == "None|arrived|arrived"


def test_the_wait_for_attached_files_ends_at_the_turn_timeout(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    calls = []

    class Patient(ConversationAgent):
        turn_timeout = 0.5  # far below FILE_WAIT_TIMEOUT (60 s): the turn's timeout ends the wait

        async def get_response(self, message, request=None, **kwargs):
            calls.append(message)
            return "never"

    user = UserFactory()
    register_agent("under-test", Patient)
    session = ConversationService.create_session("under-test", user=user)
    started = time.monotonic()
    result = ConversationService.send_message(session.id, "read", user=user, files=[FileFactory(user=user)])
    assert time.monotonic() - started < 30
    assert result["status"] == "error" and calls == []
    notice = session.messages.get(message_type="system")
    assert notice.metadata["code"] == "turn_timeout"


@pytest.mark.django_db
def test_get_file_text_only_reaches_the_owners_files(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    from django_ai.conversations.exceptions import FileNotFound

    class Snooping(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            try:
                return str(get_file_text(message))
            except FileNotFound as exc:
                return exc.code

    owner, stranger = UserFactory(), UserFactory()
    mine = FileFactory(user=owner, text="mine")
    theirs = FileFactory(user=stranger, text="theirs")
    register_agent("under-test", Snooping)
    session = ConversationService.create_session("under-test", user=owner)
    answers = [ConversationService.send_message(session.id, m, user=owner)["response"] for m in (str(mine.id), str(theirs.id), "not-an-id")]
    assert answers == ["mine", "file_not_found", "file_not_found"]


@pytest.mark.django_db
def test_report_usage_lands_in_the_agent_message_metrics():
    class Counting(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            report_usage(prompt_tokens=10, completion_tokens=3)
            report_usage(prompt_tokens=5)
            return "ok"

    session, _ = run(Counting, "x")
    metrics = session.messages.get(message_type="agent").metrics
    assert metrics["prompt_tokens"] == 15 and metrics["completion_tokens"] == 3
    assert metrics["chunks"] == 0 and metrics["total_ms"] >= 0


@pytest.mark.django_db
def test_report_usage_takes_an_llm_usage_dump_and_refuses_what_is_not_a_number():
    # The shape litellm / OpenAI usage objects dump to: totals, None, nested details, a cost.
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "completion_tokens_details": {"reasoning_tokens": 8, "audio_tokens": None},
        "prompt_tokens_details": {"cached_tokens": 100},
        "cost": 0.0015,
    }
    refused: list[str] = []

    class Reporting(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            report_usage(**usage)
            report_usage(**usage)
            for bad in ({"model": "gpt"}, {"total_tokens": True}, {"cost": float("nan")}, {"details": {"x": "1"}}):
                try:
                    report_usage(**bad)
                except InvalidInput as exc:
                    refused.append(exc.field)
            return "ok"

    session, _ = run(Reporting, "x")
    metrics = session.messages.get(message_type="agent").metrics
    assert metrics["prompt_tokens"] == 240 and metrics["completion_tokens"] == 60 and metrics["total_tokens"] == 300
    assert metrics["completion_tokens_details.reasoning_tokens"] == 16
    assert "completion_tokens_details.audio_tokens" not in metrics
    assert metrics["prompt_tokens_details.cached_tokens"] == 200
    assert metrics["cost"] == pytest.approx(0.003)
    assert refused == ["model", "total_tokens", "cost", "details.x"]


@pytest.mark.django_db(transaction=True)
def test_sync_and_async_agents_outside_a_transaction(events):
    """The production path: no transaction is open around send_message, so the agent runs in a
    helper thread with its own database connection (tests wrapped in a transaction run sync
    agents in the caller's thread instead)."""
    seen: dict[str, Any] = {}

    class SyncCounter(ConversationAgent):
        class Context(BaseModel):
            n: int = 0

        def get_response(self, message, request=None, **kwargs):
            try:
                asyncio.get_running_loop()
                seen["sync_loop"] = True
            except RuntimeError:
                seen["sync_loop"] = False
            seen["rows"] = ConversationMessage.objects.filter(session_id=self.session.pk).count()
            self.context.n += 1
            with ResponseStream() as stream:
                stream.write(f"sync {self.context.n}")
            return stream.content

    class AsyncCounter(SyncCounter):
        async def get_response(self, message, request=None, **kwargs):
            seen["async_loop"] = asyncio.get_running_loop() is not None
            self.context.n += 1
            display_widget("counter", {"n": self.context.n})
            return f"async {self.context.n}"

    register_agent("sync-counter", SyncCounter)
    register_agent("async-counter", AsyncCounter)
    sync_session = ConversationService.create_session("sync-counter")
    async_session = ConversationService.create_session("async-counter")
    sync_replies = [ConversationService.send_message(sync_session.id, "x")["response"] for _ in range(2)]
    async_replies = [ConversationService.send_message(async_session.id, "x")["response"] for _ in range(2)]

    assert sync_replies == ["sync 1", "sync 2"] and async_replies == ["async 1", "async 2"]
    assert seen == {"sync_loop": False, "rows": 3, "async_loop": True}
    sync_session.refresh_from_db()
    async_session.refresh_from_db()
    assert sync_session.context == {"n": 2} and async_session.context == {"n": 2}
    assert ConversationWidget.objects.filter(session=async_session).count() == 2
    agent_ids = sync_session.messages.filter(message_type="agent").values_list("pk", flat=True)
    assert sorted(events.text(pk) for pk in agent_ids) == ["sync 1", "sync 2"]
