"""Structured logging (conversations/telemetry/logs.py; docs/observability.md, "Structured
logging"): ``log_context`` blocks nest, ``TurnContextFilter`` puts the conversation, message and
file ids on every record a handler sees (empty strings outside a turn) and drops none, and the
JSON-lines formatter writes them. In real turns, run in the caller (``send_message``) and by the
turn task, the records of the agent's code (on its helper thread), of its tools (on their own
threads) and of the runner carry the turn's ids; a record of an extraction task carries the
file's. The documented ``LOGGING`` example is run as it is, in a process of its own."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import threading
from contextvars import copy_context
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import override_settings
from django.utils import timezone

from django_ai.conversations.agent import ConversationAgent
from django_ai.conversations.constants import ExtractionStatus, MessageType, ProcessingStatus
from django_ai.conversations.files.extraction.base import ExtractionResult, TextExtractor
from django_ai.conversations.files.extraction.tasks import schedule_extraction
from django_ai.conversations.llm import LLMAgent
from django_ai.conversations.models import ConversationMessage, ConversationSession, File
from django_ai.conversations.service import ConversationService
from django_ai.conversations.telemetry import log_context
from django_ai.conversations.telemetry.logs import JsonLinesFormatter, TurnContextFilter, current_ids
from django_ai.conversations.testing import (
    FakeModel,
    FakeReply,
    FakeToolCall,
    FileFactory,
    MessageFactory,
    SessionFactory,
    isolated_registry,
    wait_for_turns,
    wait_until,
)
from django_ai.conversations.turns.sweeps import recover_now

from .turns_support import AGENTS, IMMEDIATE, ai_settings

ROOT = Path(__file__).resolve().parent.parent
agent_log = logging.getLogger("tests.agent_code")


class LoggingAgent(ConversationAgent):
    """Logs from get_response (the helper thread) and from a thread of its own it starts with the
    context copied, as agent code that fans out would."""

    def get_response(self, message, request=None, **kwargs):
        agent_log.info("agent: answering")
        context = copy_context()
        worker = threading.Thread(target=context.run, args=(agent_log.info, "agent: from its own thread"))
        worker.start()
        worker.join()
        if message == "fail":
            raise ValueError("no")
        return "done"


class LoggingToolsAgent(LLMAgent):
    """The declared loop: one reply calls two tools (run in parallel), each logs."""

    system_prompt = "Look things up."
    tools = ["lookup", "weather"]

    def get_model(self):
        calls = [FakeToolCall("lookup", {"key": "a"}, id="c1"), FakeToolCall("weather", {"city": "Oslo"}, id="c2")]
        return FakeModel(replies=[FakeReply(text="Checking. ", tool_calls=calls), "All done."])

    def lookup(self, key: str) -> str:
        """Look a key up."""
        agent_log.info("tool: lookup")
        return key

    def weather(self, city: str) -> str:
        """The weather of a city."""
        agent_log.info("tool: weather")
        return "sunny"


class LoggingExtractor(TextExtractor):
    name = "logging-test"

    def extract(self, source, *, timeout, max_length):
        agent_log.info("extractor: reading")
        return ExtractionResult(text="text")


TEST_AGENTS = {**AGENTS, "logging": LoggingAgent, "logging-tools": LoggingToolsAgent}


@pytest.fixture(autouse=True)
def _setup():
    with (
        isolated_registry(TEST_AGENTS),
        override_settings(TASKS=IMMEDIATE),
        ai_settings(IN_PROCESS_TURN_THREADS=0),
    ):
        yield


class Collect(logging.Handler):
    """A handler with the filter, as a project configures one: what it saw, with the ids."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.addFilter(TurnContextFilter())
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record):
        with self._lock_records:
            self.records.append(record)

    def ids(self, message_start: str) -> list[tuple[str, str, str]]:
        return [
            (r.conversation_id, r.message_id, r.file_id)
            for r in list(self.records)
            if r.getMessage().startswith(message_start)
        ]


@pytest.fixture
def collect():
    handler = Collect()
    loggers = [logging.getLogger("tests.agent_code"), logging.getLogger("django_ai")]
    before = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler
    for lg, (level, _) in zip(loggers, before, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


def _record(message="hello", **extra) -> logging.LogRecord:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)  # as logging does with extra={...}
    return record


def test_log_context_blocks_nest_merge_and_restore():
    assert current_ids() == {}
    with log_context(conversation_id="c1", message_id="m1"):
        assert current_ids() == {"conversation_id": "c1", "message_id": "m1"}
        with log_context(message_id="m2", file_id=7, other=None):
            assert current_ids() == {"conversation_id": "c1", "message_id": "m2", "file_id": "7"}
        assert current_ids() == {"conversation_id": "c1", "message_id": "m1"}
        try:
            with log_context(conversation_id="c9"):
                raise RuntimeError
        except RuntimeError:
            pass
        assert current_ids() == {"conversation_id": "c1", "message_id": "m1"}
    assert current_ids() == {}


def test_a_plain_thread_starts_without_the_ids_and_a_copied_context_carries_them():
    seen = {}
    with log_context(conversation_id="c1"):
        plain = threading.Thread(target=lambda: seen.setdefault("plain", current_ids()))
        plain.start()
        plain.join()
        copied = threading.Thread(target=copy_context().run, args=(lambda: seen.setdefault("copied", current_ids()),))
        copied.start()
        copied.join()
    assert seen == {"plain": {}, "copied": {"conversation_id": "c1"}}


def test_the_filter_sets_every_id_empty_when_unknown_keeps_given_ones_and_drops_nothing():
    log_filter = TurnContextFilter()
    record = _record()
    assert log_filter.filter(record) is True
    assert (record.conversation_id, record.message_id, record.file_id) == ("", "", "")
    with log_context(conversation_id="c1", message_id="m1"):
        record = _record()
        assert log_filter.filter(record) is True
        assert (record.conversation_id, record.message_id, record.file_id) == ("c1", "m1", "")
        given = _record(message_id="mine")  # extra={"message_id": ...} wins over the context
        log_filter.filter(given)
        assert (given.conversation_id, given.message_id) == ("c1", "mine")
    # A format string naming the ids works on every record the handler sees.
    formatter = logging.Formatter("%(levelname)s [%(conversation_id)s %(message_id)s] %(message)s")
    record = _record()
    log_filter.filter(record)
    assert formatter.format(record) == "INFO [ ] hello"


def test_json_lines_formatter_writes_one_object_with_the_ids_error_id_and_traceback():
    formatter = JsonLinesFormatter()
    log_filter = TurnContextFilter()
    with log_context(conversation_id="c1", message_id="m1"):
        try:
            raise ValueError('a "quoted"\nline')
        except ValueError:
            record = logging.LogRecord("django_ai.x", logging.ERROR, __file__, 1, "failed %s", ("now",), sys.exc_info())
        record.error_id = "abc123"
        log_filter.filter(record)
    line = formatter.format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "ERROR" and data["logger"] == "django_ai.x" and data["message"] == "failed now"
    assert (data["conversation_id"], data["message_id"], data["error_id"]) == ("c1", "m1", "abc123")
    assert "file_id" not in data  # empty ids are left out
    assert 'ValueError: a "quoted"' in data["exc_info"]
    assert data["time"].endswith("+00:00")
    plain = json.loads(formatter.format(_record()))
    assert set(plain) == {"time", "level", "logger", "message"}


def test_json_lines_formatter_writes_any_message_the_stack_and_text_a_utf8_stream_takes():
    formatter = JsonLinesFormatter()
    record = logging.LogRecord("django_ai.x", logging.INFO, __file__, 1, {"not": "a str"}, None, None)
    assert json.loads(formatter.format(record))["message"] == "{'not': 'a str'}"
    record = logging.LogRecord("django_ai.x", logging.INFO, __file__, 1, "héllo ✓ %s", ("名前",), None)
    line = formatter.format(record)
    assert "héllo ✓ 名前" in line and json.loads(line)["message"] == "héllo ✓ 名前"  # as is, not escaped
    # A lone surrogate (an undecodable file name, say): escaped, so a UTF-8 stream takes the line.
    record = logging.LogRecord("django_ai.x", logging.INFO, __file__, 1, "file %s", ("a\udc80.txt",), None)
    line = formatter.format(record)
    line.encode("utf-8")
    assert json.loads(line)["message"] == "file a\udc80.txt"
    # A record logged with stack_info=True keeps its stack.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("django_ai.tests.json_stack")
    logger.addHandler(handler)
    try:
        logger.warning("where am I", stack_info=True)
    finally:
        logger.removeHandler(handler)
    data = json.loads(stream.getvalue())
    assert data["stack_info"].startswith("Stack (most recent call last):")
    assert "test_json_lines_formatter_writes_any_message" in data["stack_info"]


@pytest.mark.django_db(transaction=True)
def test_records_of_an_in_process_turn_carry_its_ids(collect):
    session = ConversationService.create_session("logging")
    result = ConversationService.send_message(session.pk, "fail")
    ids = (str(session.pk), result["user_message_id"], "")
    assert collect.ids("agent: answering") == [ids]
    assert collect.ids("agent: from its own thread") == [ids]
    # The runner's record of the failure, with its error_id.
    (failure,) = [r for r in collect.records if getattr(r, "error_id", "")]
    assert (failure.conversation_id, failure.message_id) == ids[:2]
    notice = ConversationMessage.objects.get(reply_to_id=result["user_message_id"], message_type=MessageType.SYSTEM)
    assert notice.metadata["error_id"] == failure.error_id
    # Outside the turn: no ids.
    agent_log.info("after the turn")
    assert collect.ids("after the turn") == [("", "", "")]


@pytest.mark.django_db(transaction=True)
def test_records_of_a_task_run_turn_and_of_its_tools_carry_its_ids(collect):
    session = SessionFactory(agent_path="logging-tools")
    # Saved as a client's message is: the post_save hook enqueues the turn task.
    message = MessageFactory(session=session, content="go", processing_status=ProcessingStatus.PENDING)
    wait_until(lambda: ConversationMessage.objects.get(pk=message.pk).processing_status == ProcessingStatus.COMPLETED)
    wait_for_turns()
    ids = (str(session.pk), str(message.pk), "")
    assert collect.ids("tool: lookup") == [ids]
    assert collect.ids("tool: weather") == [ids]
    tool_rows = ConversationMessage.objects.filter(reply_to=message, message_type=MessageType.TOOL)
    assert tool_rows.count() == 2

    # Another conversation's turn, run by the task too, has its own ids; the runner's record of
    # its failure carries them.
    other = SessionFactory(agent_path="logging")
    other_message = MessageFactory(session=other, content="fail", processing_status=ProcessingStatus.PENDING)
    wait_until(lambda: ConversationMessage.objects.get(pk=other_message.pk).processing_status == "failed")
    wait_for_turns()
    other_ids = (str(other.pk), str(other_message.pk), "")
    assert collect.ids("agent: answering") == [other_ids]
    assert collect.ids("agent: from its own thread") == [other_ids]
    (failure,) = [r for r in collect.records if getattr(r, "error_id", "")]
    assert (failure.conversation_id, failure.message_id, failure.file_id) == other_ids
    assert failure.name == "django_ai.conversations.turns"


@pytest.mark.django_db(transaction=True)
def test_records_of_the_stale_turn_sweep_carry_the_recovered_turns_ids(collect):
    session = SessionFactory(agent_path="logging")
    message = MessageFactory(session=session, processing_status=ProcessingStatus.PROCESSING, attempts=1)
    ConversationSession.objects.filter(pk=session.pk).update(
        turn_token="dead-worker", active_turn=message.pk, turn_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    with ai_settings(STALE_TURN_ACTION="fail"):
        [done] = recover_now()
    assert (done.message_id, done.action) == (message.pk, "failed")
    ids = (str(session.pk), str(message.pk), "")
    assert collect.ids("The worker answering message") == [ids]
    assert collect.ids("Recovered the turn of message") == [ids]


@pytest.mark.django_db(transaction=True)
def test_records_of_an_extraction_task_carry_the_file_id(collect, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    file = FileFactory(content_type="text/plain")
    with ai_settings(TEXT_EXTRACTOR=f"{__name__}.LoggingExtractor"):
        schedule_extraction(file.pk)
        wait_until(lambda: File.objects.get(pk=file.pk).extraction_status == ExtractionStatus.DONE)
    assert collect.ids("extractor: reading") == [("", "", str(file.pk))]


DOCUMENTED_LOGGING = """
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "turn_ids": {"()": "django_ai.conversations.telemetry.logs.TurnContextFilter"},
    },
    "formatters": {
        "json": {"()": "django_ai.conversations.telemetry.logs.JsonLinesFormatter"},
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s "
            "[conversation=%(conversation_id)s message=%(message_id)s file=%(file_id)s] %(message)s",
        },
    },
    "handlers": {
        "json_file": {
            "class": "logging.FileHandler",
            "filename": LOG_FILE,
            "filters": ["turn_ids"],
            "formatter": "json",
        },
        "console": {"class": "logging.StreamHandler", "filters": ["turn_ids"], "formatter": "text"},
    },
    "root": {"handlers": ["json_file", "console"], "level": "INFO"},
}
"""


def test_the_documented_logging_config_writes_json_lines_with_the_ids(tmp_path):
    docs = (ROOT / "docs" / "observability.md").read_text()
    # The example in the docs is this one (its file name aside).
    example = DOCUMENTED_LOGGING.replace("LOG_FILE", '"/var/log/app/django_ai.jsonl"').strip()
    assert example in docs
    log_file = tmp_path / "app.jsonl"
    settings_module = tmp_path / "logging_settings.py"
    settings_module.write_text(
        f"from tests.settings import *  # noqa\nLOG_FILE = {str(log_file)!r}\n{DOCUMENTED_LOGGING}"
    )
    script = textwrap.dedent(
        """
        import logging
        import django

        django.setup()
        from django_ai.conversations.telemetry import log_context

        with log_context(conversation_id="c1", message_id="m1"):
            logging.getLogger("django_ai.conversations.turns").error("failed", extra={"error_id": "e1"})
            logging.getLogger("myproject.agents").info("from agent code")
        logging.getLogger("myproject").info("outside")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "DJANGO_SETTINGS_MODULE": "logging_settings", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    ours = [
        (line["logger"], line["message"], line.get("conversation_id"), line.get("message_id"), line.get("error_id"))
        for line in lines
    ]
    assert ("django_ai.conversations.turns", "failed", "c1", "m1", "e1") in ours
    assert ("myproject.agents", "from agent code", "c1", "m1", None) in ours
    assert ("myproject", "outside", None, None, None) in ours
    assert "[conversation=c1 message=m1 file=] from agent code" in done.stderr
    assert "[conversation= message= file=] outside" in done.stderr
