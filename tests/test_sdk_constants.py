"""The TypeScript SDK's wire names (frontend_client/src/constants.ts) equal the Python ones.

The TS file is read as text: each ``export const Name = { KEY: "value", ... } as const;`` block is one
enum. Every Enum of ``conversations/constants.py`` must have its twin there, with the same members.
The event payload table (``EVENT_PAYLOAD_FIELDS``) is checked against payloads that real turns send.
"""

from __future__ import annotations

import enum
import inspect
import re
from pathlib import Path

import pytest

from django_ai.conversations import constants
from django_ai.conversations.constants import EventName
from django_ai.conversations.service import ConversationService

TS_FILE = Path(__file__).resolve().parent.parent / "frontend_client" / "src" / "constants.ts"
BLOCK = re.compile(r"export const (\w+) = \{\n(.*?)\n\} as const", re.S)
MEMBER = re.compile(r'^\s*([A-Z_]+): "([^"]*)",$')
EVENT_ROW = re.compile(r'^\s*(\w+): \{ required: \[(.*?)\], optional: \[(.*?)\] \},$')


def ts_source() -> str:
    return TS_FILE.read_text(encoding="utf-8")


def ts_enums() -> dict[str, dict[str, str]]:
    enums: dict[str, dict[str, str]] = {}
    for name, body in BLOCK.findall(ts_source()):
        members = {}
        for line in body.splitlines():
            match = MEMBER.match(line)
            if match:
                members[match.group(1)] = match.group(2)
        if members:
            enums[name] = members
    return enums


def python_enums() -> dict[str, type[enum.Enum]]:
    return {
        name: value
        for name, value in vars(constants).items()
        if inspect.isclass(value) and issubclass(value, enum.Enum) and value.__module__ == constants.__name__
    }


def test_the_parser_reads_the_file():
    enums = ts_enums()
    assert enums["EventName"]["TEXT_CHUNK"] == "text_chunk"
    assert len(enums) >= len(python_enums())


@pytest.mark.parametrize("name", sorted(python_enums()))
def test_every_python_enum_has_an_equal_ts_twin(name):
    py = {member.name: str(member.value) for member in python_enums()[name]}
    ts = ts_enums().get(name)
    assert ts is not None, f"frontend_client/src/constants.ts has no 'export const {name}'; add it."
    assert ts == py


def test_prefixes_and_finished_statuses():
    source = ts_source()
    for name in ("SESSION_CHANNEL_PREFIX", "OWNER_CHANNEL_PREFIX"):
        match = re.search(rf'export const {name} = "([^"]*)";', source)
        assert match and match.group(1) == getattr(constants, name)
    finished = re.search(r"FINISHED_STATUSES.*?\(\[(.*?)\]\)", source, re.S)
    assert finished
    names = set(re.findall(r"ProcessingStatus\.([A-Z_]+)", finished.group(1)))
    assert {constants.ProcessingStatus[n].value for n in names} == {s.value for s in constants.FINISHED_STATUSES}


def test_channels_per_event_stream():
    """The SSE adapter places at most as many channels on one stream as the events view reads."""
    from django_ai.conversations.realtime.views import MAX_STREAM_CHANNELS

    source = (TS_FILE.parent / "internal" / "groups.ts").read_text(encoding="utf-8")
    match = re.search(r"export const MAX_STREAM_CHANNELS = (\d+);", source)
    assert match, "frontend_client/src/internal/groups.ts has no 'export const MAX_STREAM_CHANNELS = <n>;'"
    assert int(match.group(1)) == MAX_STREAM_CHANNELS


def ts_event_fields() -> dict[str, tuple[set[str], set[str]]]:
    block = re.search(r"export const EVENT_PAYLOAD_FIELDS = \{\n(.*?)\n\} as const", ts_source(), re.S)
    assert block, "EVENT_PAYLOAD_FIELDS not found"
    table = {}
    for line in block.group(1).splitlines():
        match = EVENT_ROW.match(line)
        assert match, f"unexpected line in EVENT_PAYLOAD_FIELDS: {line!r}"
        split = lambda text: {f.strip().strip('"') for f in text.split(",") if f.strip()}  # noqa: E731
        table[match.group(1)] = (split(match.group(2)), split(match.group(3)))
    base = re.search(r"export const EVENT_BASE_FIELDS = \[(.*?)\] as const", ts_source())
    assert base
    base_fields = {f.strip().strip('"') for f in base.group(1).split(",")}
    return {name: (required | base_fields, optional) for name, (required, optional) in table.items()}


def test_event_table_names_every_event():
    assert set(ts_event_fields()) == {str(e) for e in EventName}


@pytest.mark.django_db(transaction=True)
def test_real_payloads_match_the_ts_event_table(events, monkeypatch):
    """Turns of the demo's support agent send every kind of event; each payload must have exactly
    the TS interface's fields (required ones always, optional ones maybe, nothing else). A
    transactional test: model_change events go out on commit."""
    from agents import chat_agents

    monkeypatch.setattr(chat_agents, "WORD_DELAY", 0)
    session = ConversationService.create_session("support", anonymous_id="anon_" + "c" * 43)
    send = lambda text: ConversationService.send_message(session_id=session.id, message=text)  # noqa: E731
    send("How do refunds work?")
    send("book a call")
    slot = session.widgets.get().data["available_slots"][0]
    send(f"Book {slot}")
    table = ts_event_fields()
    seen = set()
    for captured in events.events:
        required, optional = table[captured.event]
        keys = set(captured.payload)
        assert required <= keys, f"{captured.event} lacks {required - keys}"
        assert keys <= required | optional, f"{captured.event} has fields the SDK does not type: {keys - required - optional}"
        seen.add(captured.event)
    assert seen == {str(e) for e in EventName}


@pytest.mark.django_db(transaction=True)
def test_payloads_on_the_wire_match_the_ts_event_table(monkeypatch):
    """What a real transport carries (the Local backend's Server-Sent Events, through the same
    coalescing sender as Pusher) fits the table too, and every ``text_chunk`` there has the
    ``offset`` and ``first_sequence`` that the SDK's stream assembly relies on."""
    import json

    from django.test import override_settings

    from agents import chat_agents
    from django_ai.conversations.realtime import get_backend, reset_backend
    from django_ai.conversations.realtime.channels import session_channel

    monkeypatch.setattr(chat_agents, "WORD_DELAY", 0)
    with override_settings(DJANGO_AI={"REALTIME_BACKEND": "django_ai.conversations.realtime.local.LocalBackend"}):
        reset_backend()
        try:
            backend = get_backend()
            session = ConversationService.create_session("support", anonymous_id="anon_" + "d" * 43)
            subscription = backend.broker.subscribe([session_channel(session.pk)])
            ConversationService.send_message(session_id=session.id, message="How do refunds work?")
            backend.flush(timeout=5)
            frames = subscription.drain()
        finally:
            reset_backend()
    table = ts_event_fields()
    chunks = []
    for frame in frames:
        data = next(line[len("data: "):] for line in frame.frame.splitlines() if line.startswith("data: "))
        payload = json.loads(data)
        payload.pop("channel")  # added by the SSE stream, not part of the payload
        required, optional = table[frame.event]
        assert required <= set(payload) <= required | optional, (frame.event, sorted(payload))
        if frame.event == EventName.TEXT_CHUNK:
            chunks.append(payload)
    assert chunks, "the turn streamed no text"
    assert all({"offset", "first_sequence"} <= set(c) for c in chunks)
    units = [len(c["text"].encode("utf-16-le")) // 2 for c in chunks]
    assert [c["offset"] for c in chunks] == [sum(units[:i]) for i in range(len(chunks))]
