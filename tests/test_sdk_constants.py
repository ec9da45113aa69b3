"""The TypeScript SDK's wire names (frontend_client/src/constants.ts) equal the Python ones.

The TS file is read as text: each ``export const Name = { KEY: "value", ... } as const;`` block is one
enum. Every Enum of ``conversations/constants.py`` must have its twin there, with the same members,
and every TS enum its Python twin. The event payload table (``EVENT_PAYLOAD_FIELDS``) is checked
against payloads that real turns send; the error codes the app's source sends are checked against
``ErrorCode``.
"""

from __future__ import annotations

import ast
import enum
import inspect
import re
from pathlib import Path

import pytest

from django_ai.conversations import constants
from django_ai.conversations.constants import ErrorCode, EventName
from django_ai.conversations.service import ConversationService

ROOT = Path(__file__).resolve().parent.parent
TS_FILE = ROOT / "frontend_client" / "src" / "constants.ts"
APP_DIR = ROOT / "conversations"
BLOCK = re.compile(r"export const (\w+) = \{\n(.*?)\n\} as const", re.S)
MEMBER = re.compile(r'^\s*([A-Z_]+): "([^"]*)",$')
EVENT_ROW = re.compile(r"^\s*(\w+): \{ required: \[(.*?)\], optional: \[(.*?)\] \},$")


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


def test_every_ts_enum_has_a_python_twin():
    missing = set(ts_enums()) - set(python_enums())
    assert not missing, (
        f"conversations/constants.py has no enum for {sorted(missing)}; add it (the TS side mirrors Python)."
    )


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
    """Turns of the demo's support and sales agents send every kind of event; each payload must have exactly
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
    # The sales agent's tool loop sends the three tool_call events (one call runs, one waits for approval).
    sales = ConversationService.create_session("sales", anonymous_id="anon_" + "c" * 43)
    ConversationService.send_message(session_id=sales.id, message="Can I use pro-features?")
    ConversationService.send_message(session_id=sales.id, message="A 20 % discount on pro-features, please")
    table = ts_event_fields()
    seen = set()
    for captured in events.events:
        required, optional = table[captured.event]
        keys = set(captured.payload)
        assert required <= keys, f"{captured.event} lacks {required - keys}"
        assert keys <= required | optional, (
            f"{captured.event} has fields the SDK does not type: {keys - required - optional}"
        )
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
        data = next(line[len("data: ") :] for line in frame.frame.splitlines() if line.startswith("data: "))
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


# Errors that never reach a client: raised while code is declared (a bad agent class, tool or
# @with_context method), or a tool call the model got wrong, answered to the model in a tool message.
NOT_SENT_TO_CLIENTS = {"ImproperlyDeclaredAgent", "ContextInjectionError", "ToolDefinitionError", "ToolCallError"}
CODE_NAMES = {"code", "default_code"}
CODE_KEYS = {"code", "error_code"}


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _code_expressions(tree: ast.AST):
    """(expression, class or call it belongs to) for each place of ``tree`` that sets an error code:
    ``code=`` arguments, ``"code"`` / ``"error_code"`` keys, ``code`` / ``default_code`` assignments,
    and the code of a turn's ``notice=(text, code)``."""
    owners: dict[ast.AST, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for child in ast.walk(node):
                owners.setdefault(child, node.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "code":
                    yield keyword.value, _call_name(node)
                elif keyword.arg == "notice" and isinstance(keyword.value, ast.Tuple) and len(keyword.value.elts) == 2:
                    yield keyword.value.elts[1], _call_name(node)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in CODE_KEYS:
                    yield value, owners.get(node, "")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id in CODE_NAMES for t in targets) and node.value is not None:
                yield node.value, owners.get(node, "")


def _literal_codes(expression: ast.AST):
    """The string literals an expression can evaluate to (both arms of ``a if c else b``); an
    f-string yields a regular expression of the codes it can build."""
    if isinstance(expression, ast.Constant) and isinstance(expression.value, str):
        yield expression.value, False
    elif isinstance(expression, ast.IfExp):
        yield from _literal_codes(expression.body)
        yield from _literal_codes(expression.orelse)
    elif isinstance(expression, ast.JoinedStr):
        parts = [re.escape(v.value) if isinstance(v, ast.Constant) else r"\w+" for v in expression.values]
        yield "".join(parts), True


def codes_in(source: str, where: str) -> list[tuple[str, str, bool]]:
    """(code or pattern, "file:line", is_pattern) for every literal error code of ``source``."""
    found = []
    for expression, owner in _code_expressions(ast.parse(source)):
        if owner in NOT_SENT_TO_CLIENTS:
            continue
        for code, is_pattern in _literal_codes(expression):
            found.append((code, f"{where}:{expression.lineno}", is_pattern))
    return found


def sent_codes() -> list[tuple[str, str, bool]]:
    found = []
    for path in sorted(APP_DIR.rglob("*.py")):
        if "migrations" not in path.parts:
            found += codes_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return found


SAMPLE = """
class Refused(ConversationError):
    default_code = "a_class_attribute"

class ToolCallError(ConversationError):
    default_code = "told_to_the_model"

def view():
    raise InvalidQuery("...", code="an_argument", field="x")
    raise ToolCallError("...", code="also_told_to_the_model")
    return error_response([{"code": "a_dict_key", "message": "..."}], 400)
    code = "one_arm" if failed else "other_arm"
    _finish(state, notice=("text", "a_notice"))
    InvalidQuery("...", code=f"invalid_{name}")
    send({"facts": {"error_code": "an_extraction_code"}})
    raise SessionNotFound(code=ErrorCode.SESSION_NOT_FOUND)
"""


def test_the_code_scan_finds_each_kind_of_place():
    """Class attributes, ``code=`` arguments, dict keys, both arms of a conditional, a turn's
    notice, f-strings as patterns; not the errors told to the model, not ``ErrorCode`` members."""
    found = {(code, is_pattern) for code, _, is_pattern in codes_in(SAMPLE, "sample")}
    expected = {
        "a_class_attribute",
        "an_argument",
        "a_dict_key",
        "one_arm",
        "other_arm",
        "a_notice",
        "an_extraction_code",
    }
    assert found == {(code, False) for code in expected} | {(r"invalid_\w+", True)}


def test_every_code_the_app_sends_is_an_error_code():
    members = {str(code) for code in ErrorCode}
    unknown = [
        f"{where}: {code!r}"
        for code, where, is_pattern in sent_codes()
        if (not any(re.fullmatch(code, m) for m in members) if is_pattern else code not in members)
    ]
    assert not unknown, "Codes missing from ErrorCode (conversations/constants.py and its TS twin):\n" + "\n".join(
        unknown
    )


def test_error_code_members_named_in_the_source_exist():
    """``ErrorCode.NAME`` in the app's source names a member (a typo would only fail when raised)."""
    wrong = []
    for path in sorted(APP_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = (
                isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ErrorCode"
            )
            if named and node.attr not in ErrorCode.__members__:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: ErrorCode.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_error_codes_are_their_own_names():
    assert all(code.name.lower() == code.value for code in ErrorCode)
