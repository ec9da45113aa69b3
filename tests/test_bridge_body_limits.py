"""What a request body may be: UTF-8 JSON (another charset is 415), at most MAX_JSON_DEPTH levels
deep however it is encoded, and no larger than the view's limit, which under ASGI is enforced
before Django stores the body (``django_ai.conversations.asgi.BodySizeLimitMiddleware``).

Real parts: the test client for the JSON rules; for the size limits a real ``uvicorn
backend.asgi:application`` process (the demo's ASGI entry point) on a SQLite file of its own, with
``TMPDIR`` pointed at a fresh folder, fed over raw sockets (with and without Content-Length). How
much the server wrote to files while a body came in is read from Linux's ``/proc/<pid>/io``
(``wchar``): Django spools request bodies to an unnamed temporary file, which no folder listing
shows.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from pathlib import Path

import pytest
import requests
from django.core.asgi import get_asgi_application

from django_ai.conversations.api import views as api_views
from django_ai.conversations.api.parsing import MAX_JSON_DEPTH
from django_ai.conversations.asgi import BodySizeLimitMiddleware
from django_ai.conversations.bridge import get_exposed
from django_ai.conversations.bridge.serialization import validate_write_data
from django_ai.conversations.exceptions import MultipleErrors
from django_ai.conversations.internal.jsonsafe import json_problem
from django_ai.conversations.models import ConversationMessage, ConversationSession, ConversationWidget
from django_ai.conversations.testing.factories import SessionFactory, UserFactory, WidgetFactory
from tests.helpers import make_request
from tests.realtime_server.harness import UvicornThread
from tests.servers import migrated_demo_env, running_server

from .bridge_support import API, Api, echo_agent, error_codes, fresh_bridge, user_api  # noqa: F401

DEEP = "[" * 1100 + "]" * 1100


@pytest.fixture
def owned():
    user = UserFactory()
    session = SessionFactory(user=user, agent_path="test-agent", title="kept")
    widget = WidgetFactory(session=session, display_data={"kept": True})
    return {"api": user_api(user), "session": session, "widget": widget}


def _writes(owned) -> list[tuple[str, str, dict]]:
    session, widget = owned["session"], owned["widget"]
    return [
        ("POST", "models/message/", {"session": str(session.pk), "content": "X"}),
        ("PATCH", f"models/session/{session.pk}/", {"title": "X"}),
        ("PATCH", f"models/widget/{widget.pk}/", {"display_data": "X"}),
    ]


def _send(api: Api, method: str, path: str, raw: bytes, content_type: str):
    # generic() sends the bytes as they are (post() would re-encode them).
    return api.client.generic(method, API + path, raw, content_type=content_type)


def _nothing_written(owned) -> None:
    assert not ConversationMessage.objects.filter(session=owned["session"], message_type="user").exists()
    assert ConversationSession.objects.get(pk=owned["session"].pk).title == "kept"
    assert ConversationWidget.objects.get(pk=owned["widget"].pk).display_data == {"kept": True}


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_bridge", "echo_agent")
class TestCharsetAndDepth:
    @pytest.mark.parametrize("charset", ["cp037", "utf-16", "utf-16-le", "utf-32", "latin-1", "no-such-codec"])
    def test_a_deep_body_in_another_charset_is_refused_not_a_500(self, owned, charset):
        for method, path, body in _writes(owned):
            text = json.dumps(body).replace('"X"', DEEP)
            raw = text.encode(charset if charset != "no-such-codec" else "utf-8")
            response = _send(owned["api"], method, path, raw, f"application/json; charset={charset}")
            assert response.status_code == 415, (method, path, response.content[:300])
            assert error_codes(response) == ["unsupported_media_type"]
            assert "UTF-8" in response.json()["errors"][0]["message"]
        _nothing_written(owned)

    @pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-le"])
    def test_utf16_and_utf32_bodies_without_a_charset_are_parse_errors(self, owned, encoding):
        for method, path, body in _writes(owned):
            for value in ('"plain"', DEEP):
                raw = json.dumps(body).replace('"X"', value).encode(encoding)
                response = _send(owned["api"], method, path, raw, "application/json")
                assert response.status_code == 400, (method, path, response.content[:300])
                assert error_codes(response) == ["parse_error"]
        _nothing_written(owned)

    def test_deep_utf8_bodies_are_refused_on_every_write(self, owned):
        for method, path, body in _writes(owned):
            raw = json.dumps(body).replace('"X"', DEEP).encode()
            response = _send(owned["api"], method, path, raw, "application/json; charset=utf-8")
            assert response.status_code == 400 and error_codes(response) == ["parse_error"]
            assert f"more than {MAX_JSON_DEPTH} levels" in response.json()["errors"][0]["message"]
        _nothing_written(owned)

    @pytest.mark.parametrize(
        "content_type", ["application/json", "application/json; charset=utf-8", "application/json; charset=UTF8"]
    )
    def test_utf8_bodies_work_with_or_without_the_charset(self, owned, content_type):
        api, session, widget = owned["api"], owned["session"], owned["widget"]
        # Brackets and escaped quotes inside strings nest nothing.
        text = "Grüße 😀 " + "[" * 200 + ' \\" {' * 100
        raw = json.dumps({"session": str(session.pk), "content": text}, ensure_ascii=False).encode()
        response = _send(api, "POST", "models/message/", raw, content_type)
        assert response.status_code == 201, response.content[:300]
        assert ConversationMessage.objects.get(pk=response.json()["data"]).content == text
        raw = json.dumps({"title": "Überschrift"}, ensure_ascii=False).encode()
        assert _send(api, "PATCH", f"models/session/{session.pk}/", raw, content_type).status_code == 200
        nested = {"a": [[[{"b": "ü"}]]]}
        raw = json.dumps({"display_data": nested}, ensure_ascii=False).encode()
        assert _send(api, "PATCH", f"models/widget/{widget.pk}/", raw, content_type).status_code == 200
        assert ConversationWidget.objects.get(pk=widget.pk).display_data == nested

    def test_body_that_is_not_utf8_is_a_parse_error(self, owned):
        raw = b'{"title": "caf\xe9"}'  # latin-1 bytes, no charset
        response = _send(owned["api"], "PATCH", f"models/session/{owned['session'].pk}/", raw, "application/json")
        assert response.status_code == 400 and error_codes(response) == ["parse_error"]
        _nothing_written(owned)

    @pytest.mark.parametrize(
        "raw",
        ["[" * 70 + '"' + '\\"' * 1000, '{"title": "' + "[" * 100, '{"title": "\\', "[" * 70 + '"\\' * 1000],
    )
    def test_unterminated_strings_are_parse_errors(self, owned, raw):
        response = _send(
            owned["api"], "PATCH", f"models/session/{owned['session'].pk}/", raw.encode(), "application/json"
        )
        assert response.status_code == 400 and error_codes(response) == ["parse_error"]
        _nothing_written(owned)

    def test_write_validation_bounds_depth_without_recursing(self, owned):
        """The write path after the parser: a value deeper than any body may be (data built in
        Python, not parsed) gets a field error, not a RecursionError from a recursive walk."""
        deep: list = []
        for _ in range(5000):
            deep = [deep]
        request = make_request(owned["api"].user)
        with pytest.raises(MultipleErrors) as caught:
            validate_write_data(
                get_exposed("widget"), request, "update", {"display_data": deep}, instance=owned["widget"]
            )
        assert [(e.code, e.field) for e in caught.value.errors] == [("invalid", "display_data")]
        assert json_problem(deep) in ("it is nested too deeply", None)
        assert json_problem([deep, "a\x00"]) in ("it contains a NUL character", "it is nested too deeply")


# The size limits under a real ASGI server.

BIG = 32 * 1024 * 1024
LIMITS = {"BRIDGE_MAX_BODY_SIZE": 1024 * 1024, "MAX_UPLOAD_SIZE": 1024 * 1024}
BOUNDARY = "----limits-test"


@pytest.fixture(scope="module")
def asgi_process(tmp_path_factory):
    """``uvicorn backend.asgi:application`` with its own SQLite file and temporary folder."""
    if not Path(f"/proc/{os.getpid()}/io").exists():
        pytest.skip("needs Linux's /proc/<pid>/io to see what the server writes")
    var = tmp_path_factory.mktemp("limits-var")
    spool = tmp_path_factory.mktemp("limits-tmp")
    env = migrated_demo_env(var, settings=LIMITS, TMPDIR=str(spool))
    with running_server("uvicorn", env, var / "uvicorn.log") as server:
        yield {"process": server.process, "port": server.port, "base": server.base, "spool": spool, "log": server.log}


def _written(pid: int) -> int:
    """Bytes the process has passed to write() so far (files, sockets, pipes)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/<pid>/io")


def _raw_post(
    port: int, path: str, content_type: str, parts, *, length: int | None
) -> tuple[int, dict[str, str], bytes]:
    """POST ``parts`` (byte strings) with ``Content-Length: length``, or chunked when None, and
    read the answer as it comes: sending stops once the server has answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    received = bytearray()
    answered = threading.Event()

    def read() -> None:
        try:
            while not _complete(received):
                data = sock.recv(65536)
                if not data:
                    break
                received.extend(data)
        except OSError:
            pass
        finally:
            answered.set()

    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
    head += f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    reader = threading.Thread(target=read, daemon=True)
    try:
        sock.sendall(head.encode() + b"\r\n")
        reader.start()
        for part in parts:
            if answered.is_set():
                break
            sock.sendall(part if length is not None else b"%x\r\n%s\r\n" % (len(part), part))
        else:
            if length is None:
                sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered and stopped reading
    assert answered.wait(60), "no answer within 60 s"
    sock.close()
    header_block, _, body = bytes(received).partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _complete(received: bytearray) -> bool:
    head, found, body = bytes(received).partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return len(body) >= int(value)
    return False


def _json_parts(total: int):
    yield b'{"content": "'
    sent = 14
    while sent < total:
        piece = min(1024 * 1024, total - sent)
        yield b"x" * piece
        sent += piece


def _multipart_parts(total: int):
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    for _ in range(total // (1024 * 1024)):
        yield b"a" * (1024 * 1024)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("path", "content_type", "parts", "code"),
    [
        ("models/message/", "application/json", _json_parts, "request_too_large"),
        ("files/", f"multipart/form-data; boundary={BOUNDARY}", _multipart_parts, "file_too_large"),
    ],
    ids=["bridge", "files"],
)
def test_oversized_bodies_are_refused_under_uvicorn_before_they_are_stored(
    asgi_process, path, content_type, parts, code, chunked
):
    process = asgi_process["process"]
    chunks = list(parts(BIG))
    length = None if chunked else sum(len(c) for c in chunks)
    before = _written(process.pid)
    status, headers, body = _raw_post(asgi_process["port"], API + path, content_type, chunks, length=length)
    written = _written(process.pid) - before
    assert status == 413, (status, body[:300])
    assert headers["content-type"] == "application/json"
    errors = json.loads(body)["errors"]
    assert [e["code"] for e in errors] == [code], errors
    if code == "file_too_large":
        assert errors[0]["field"] == "file" and "1 MB" in errors[0]["message"]
    # Django spools a body past 2.5 MB to a temporary file: 32 MB would be written here.
    assert written < BIG // 4, f"the server wrote {written} bytes while refusing a {BIG}-byte body"
    assert list(asgi_process["spool"].iterdir()) == []
    assert process.poll() is None


@pytest.mark.slow
def test_requests_within_the_limits_still_work_through_the_middleware(asgi_process):
    base = asgi_process["base"]
    started = requests.post(base + API + "start/", json={"agent_path": "support"}, timeout=30)
    assert started.status_code == 201, started.text
    headers = {"X-Conversation-Anonymous-Id": started.json()["anonymous_id"]}
    session = started.json()["session_id"]
    text = "y" * (900 * 1024)  # close to the 1 MiB bridge limit
    sent = requests.post(
        base + API + "models/message/", json={"session": session, "content": text[:30000]}, headers=headers, timeout=30
    )
    assert sent.status_code == 201, sent.text
    # A body near the limit gets through to the view (which then judges the message's length).
    near = requests.post(
        base + API + "models/message/", json={"session": session, "content": text}, headers=headers, timeout=30
    )
    assert near.status_code == 400 and [e["code"] for e in near.json()["errors"]] != ["request_too_large"], near.text
    upload = requests.post(
        base + API + "files/",
        files={"file": ("notes.txt", b"hello " * 150_000, "text/plain")},  # 900 KB, under 1 MiB
        data={"session": session},
        headers=headers,
        timeout=60,
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["included"]["file"][upload.json()["data"]]["size"] == 900_000
    assert b"does not limit request bodies" not in asgi_process["log"].read_bytes()


@pytest.mark.django_db(transaction=True)
def test_an_asgi_application_without_the_middleware_is_reported_once(monkeypatch, caplog):
    monkeypatch.setattr(api_views, "_warned_unlimited_asgi", False)
    caplog.set_level(logging.WARNING, logger="django_ai.conversations.bridge")
    with UvicornThread(BodySizeLimitMiddleware(get_asgi_application())) as server:
        requests.post(server.url + API + "models/message/", json={}, timeout=10)
    assert "does not limit request bodies" not in caplog.text
    with UvicornThread(get_asgi_application()) as server:
        for _ in range(2):
            requests.post(server.url + API + "models/message/", json={}, timeout=10)
    assert caplog.text.count("does not limit request bodies") == 1
