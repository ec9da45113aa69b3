"""Findings of the security review: inputs an internet client can send that used to end in a 500.

Each test sends the hostile input through the real HTTP stack (Django test client, real database)
and checks the answer is a clear 4xx in the error envelope and that nothing was written.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client, override_settings

from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.realtime import get_backend, reset_backend
from django_ai.conversations.realtime.channels import session_channel
from django_ai.conversations.testing.factories import SessionFactory, UserFactory, WidgetFactory

from .bridge_support import API, echo_agent, error_codes, fresh_bridge  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]

HEADER = "HTTP_X_CONVERSATION_ANONYMOUS_ID"


@pytest.fixture
def owner():
    user = UserFactory(username="owner")
    session = SessionFactory(user=user, title="mine", agent_path="test-agent")
    widget = WidgetFactory(session=session, display_data={"open": True})
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return {"user": user, "session": session, "widget": widget, "client": client}


def _send(client: Client, method: str, path: str, raw: str):
    return getattr(client, method)(API + path, raw, content_type="application/json")


def _surrogate_bodies(owner):
    """(method, path, raw JSON) with a lone UTF-16 surrogate escape in some string."""
    s, w = owner["session"].pk, owner["widget"].pk
    return [
        ("post", "models/session/query/", '{"filter": {"title__icontains": "\\ud800"}}'),
        ("post", "models/session/query/", '{"filter": {"agent_path__in": ["x\\udfff"]}}'),
        ("post", "start/", '{"agent_path": "test-agent", "title": "hi \\ud800"}'),
        ("post", "start/", '{"agent_path": "test-agent", "context": {"\\ud800": 1}}'),
        ("post", "start/", '{"agent_path": "\\ud800"}'),
        ("post", "models/message/", '{"session": "%s", "content": "hello \\udc00"}' % s),
        ("patch", f"models/widget/{w}/", '{"display_data": {"\\ud800": true}}'),
        ("patch", f"models/widget/{w}/", '{"display_data": {"k": ["\\ud800"]}}'),
        ("post", "cancel/", '{"session_id": "\\ud800"}'),
    ]


def test_lone_surrogate_escapes_are_a_parse_error_not_a_500(owner):
    """JSON allows ``"\\ud800"``; no database can store or compare it (UnicodeEncodeError)."""
    before = (ConversationSession.objects.count(), ConversationMessage.objects.count())
    for method, path, raw in _surrogate_bodies(owner):
        response = _send(owner["client"], method, path, raw)
        assert response.status_code == 400, (path, raw, response.content)
        assert error_codes(response) == ["parse_error"], (path, raw)
    assert (ConversationSession.objects.count(), ConversationMessage.objects.count()) == before
    owner["widget"].refresh_from_db()
    assert owner["widget"].display_data == {"open": True}


def test_numbers_out_of_the_double_range_are_a_parse_error_not_infinity(owner):
    """``1e400`` parses as ``float("inf")``, which no JSON column stores (PostgreSQL refuses
    ``Infinity``; SQLite would keep text that is not JSON)."""
    s, w = owner["session"].pk, owner["widget"].pk
    before = (ConversationSession.objects.count(), ConversationMessage.objects.count())
    for method, path, raw in [
        ("post", "start/", '{"agent_path": "test-agent", "context": {"x": 1e400}}'),
        ("post", "start/", '{"agent_path": "test-agent", "context": {"x": [-1e400]}}'),
        ("patch", f"models/widget/{w}/", '{"display_data": {"n": 1e999}}'),
        ("post", "models/message/query/", '{"filter": {"session": "%s"}, "limit": 1e400}' % s),
    ]:
        response = _send(owner["client"], method, path, raw)
        assert response.status_code == 400, (path, raw, response.content)
        assert error_codes(response) == ["parse_error"], (path, raw)
    assert (ConversationSession.objects.count(), ConversationMessage.objects.count()) == before
    owner["widget"].refresh_from_db()
    assert owner["widget"].display_data == {"open": True}
    # Large but finite numbers are fine.
    response = _send(owner["client"], "patch", f"models/widget/{w}/", '{"display_data": {"n": 1e300}}')
    assert response.status_code == 200, response.content


def test_valid_astral_characters_still_work(owner):
    """A proper surrogate *pair* is one real character (an emoji): still accepted."""
    response = _send(owner["client"], "patch", f"models/session/{owner['session'].pk}/", '{"title": "\\ud83d\\ude00"}')
    assert response.status_code == 200, response.content
    owner["session"].refresh_from_db()
    assert owner["session"].title == "\U0001f600"


@pytest.mark.parametrize("depth", [5000, 200_000])
def test_deeply_nested_json_is_a_parse_error_not_a_500(owner, depth):
    """Nesting deep enough to exhaust the JSON parser's recursion limit (RecursionError, which
    DRF's parser does not turn into a ParseError) fits easily in the 1 MB body limit."""
    nested = "[" * depth + "]" * depth
    for method, path, raw in [
        ("post", "models/message/query/", '{"filter": {"id__in": %s}}' % nested),
        ("patch", f"models/widget/{owner['widget'].pk}/", '{"display_data": {"a": %s}}' % nested),
        ("post", "start/", '{"agent_path": "test-agent", "context": {"x": %s}}' % nested),
    ]:
        response = _send(owner["client"], method, path, raw)
        assert response.status_code in (400, 413), (path, response.content[:200])
        if response.status_code == 400:
            assert error_codes(response) == ["parse_error"]
    owner["widget"].refresh_from_db()
    assert owner["widget"].display_data == {"open": True}


def test_ordinary_nesting_is_accepted(owner):
    nested = {"a": [{"b": [[1, 2], {"c": "d"}]}]}
    response = _send(owner["client"], "patch", f"models/widget/{owner['widget'].pk}/", json.dumps({"display_data": nested}))
    assert response.status_code == 200, response.content
    owner["widget"].refresh_from_db()
    assert owner["widget"].display_data == nested


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+10:00", "9999-12-31T23:59:59.999999-00:30"]
)
def test_date_times_at_the_ends_of_the_calendar_are_400_not_500(owner, value):
    """Valid ISO 8601 with an offset that moves them out of the datetime range once in UTC."""
    response = _send(owner["client"], "post", "models/session/query/", json.dumps({"filter": {"created_at__gt": value}}))
    assert response.status_code == 400, response.content
    assert error_codes(response) == ["invalid_query"]
    assert response.json()["errors"][0]["field"] == "filter.created_at__gt"


def test_extreme_but_representable_date_times_still_filter(owner):
    response = _send(
        owner["client"], "post", "models/session/query/", json.dumps({"filter": {"created_at__gt": "0001-01-01T00:00:00Z"}})
    )
    assert response.status_code == 200, response.content
    assert response.json()["data"] == [str(owner["session"].pk)]


@pytest.mark.parametrize("key", ["cls"])
def test_a_context_key_named_like_the_hidden_class_argument_is_400(key):
    """``create_context`` is a classmethod: ``cls`` is not in its bound signature, so the check
    let it through and the call itself failed with a TypeError (500). From a client it is now an
    undeclared start parameter; from Python it is still a clear error."""
    from django_ai.conversations.actions import start_conversation
    from django_ai.conversations.exceptions import ContextValidationError

    client = Client(raise_request_exception=False)
    response = client.post(
        API + "start/", {"agent_path": "test-agent", "context": {key: 1}}, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert error_codes(response) == ["start_param_not_allowed"]
    with pytest.raises(ContextValidationError) as raised:
        start_conversation("test-agent", context_kwargs={key: 1})
    assert raised.value.code == "invalid_context"
    assert ConversationSession.objects.count() == 0


@pytest.fixture
def local_backend():
    with override_settings(DJANGO_AI={"REALTIME_BACKEND": "django_ai.conversations.realtime.local.LocalBackend"}):
        reset_backend()
        yield get_backend()
    reset_backend()


@pytest.mark.django_db(transaction=True)
def test_odd_last_event_ids_are_ignored_not_a_500(local_backend):
    """``Last-Event-ID`` comes from the client: Unicode digits ("²", "٣") pass ``str.isdigit`` but
    not ``int()``, and more than 4300 digits exceed Python's int conversion limit."""
    session = SessionFactory()
    client = Client(raise_request_exception=False)
    epoch = local_backend.broker.epoch
    channel = {"channel": session_channel(session.pk)}
    for last_event_id in [f"{epoch}-\u00b2", f"{epoch}-\u0663", f"{epoch}-" + "9" * 5000, f"{epoch}--1", "x" * 5000]:
        response = client.get(
            API + "realtime/events/", {**channel, "last_event_id": last_event_id}, **{HEADER: session.anonymous_id}
        )
        assert response.status_code == 200, (last_event_id[:20], response.content[:200])
        assert response["Content-Type"].startswith("text/event-stream")
        response.close()
    # The same through the header an EventSource sends (WSGI headers are latin-1 text).
    response = client.get(
        API + "realtime/events/",
        channel,
        HTTP_LAST_EVENT_ID=f"{epoch}-\u00b9",
        **{HEADER: session.anonymous_id},
    )
    assert response.status_code == 200, response.content[:200]
    response.close()


def test_a_cross_site_upload_cannot_plant_a_file_in_a_new_visitors_session(tmp_path, settings):
    """A multipart POST needs no CORS preflight, so a foreign page could submit one with the
    victim's cookies. Without an anonymous id yet, the upload would create one in the victim's
    session: it must pass Django's CSRF check first."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from django_ai.conversations.models import File
    from django_ai.conversations.owners import new_anonymous_id

    settings.MEDIA_ROOT = tmp_path
    attacker = Client(enforce_csrf_checks=True)
    response = attacker.post(API + "files/", {"file": SimpleUploadedFile("note.txt", b"planted")})
    assert response.status_code == 403
    assert error_codes(response) == ["permission_denied"]
    assert File.objects.count() == 0
    # The page's own script (CSRF cookie + header) and stateless clients (header id) still upload.
    browser = Client(enforce_csrf_checks=True)
    browser.get("/")  # the demo page sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    ok = browser.post(API + "files/", {"file": SimpleUploadedFile("note.txt", b"mine")}, HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 201, ok.json()
    stateless = Client(enforce_csrf_checks=True)
    ok = stateless.post(
        API + "files/", {"file": SimpleUploadedFile("note.txt", b"mine too")},
        HTTP_X_CONVERSATION_ANONYMOUS_ID=new_anonymous_id(),
    )
    assert ok.status_code == 201, ok.json()
    assert File.objects.count() == 2


def test_starting_conversations_is_throttled_per_visitor(settings):
    from django.core.cache import cache

    cache.clear()
    settings.DJANGO_AI = {**settings.DJANGO_AI, "SESSION_START_THROTTLE_RATE": "2/min"}
    client = Client()
    body = json.dumps({"agent_path": "test-agent"})
    # The first start gives the visitor its id (that request is counted under its address); from
    # then on the visitor's own count applies.
    answers = [client.post(API + "start/", body, content_type="application/json").status_code for _ in range(4)]
    assert answers == [201, 201, 201, 429]
    assert ConversationSession.objects.count() == 3
    # Another visitor has a count of its own.
    assert Client().post(API + "start/", body, content_type="application/json").status_code == 201
    cache.clear()


def test_fresh_anonymous_ids_do_not_escape_the_per_address_limit(settings):
    """The header id is the client's to choose: one machine presenting a new id with every
    request is still bounded by ANONYMOUS_ADDRESS_THROTTLE_RATE."""
    from django.core.cache import cache

    from django_ai.conversations.owners import new_anonymous_id

    cache.clear()
    settings.DJANGO_AI = {
        **settings.DJANGO_AI, "SESSION_START_THROTTLE_RATE": "100/min", "ANONYMOUS_ADDRESS_THROTTLE_RATE": "3/min",
    }
    body = json.dumps({"agent_path": "test-agent"})
    answers = []
    for _ in range(4):
        response = Client().post(
            API + "start/", body, content_type="application/json", **{HEADER: new_anonymous_id()}
        )
        answers.append(response.status_code)
    assert answers == [201, 201, 201, 429]
    assert ConversationSession.objects.count() == 3
    # Signed-in users are counted per user, not per address.
    user_client = Client()
    user_client.force_login(UserFactory())
    assert user_client.post(API + "start/", body, content_type="application/json").status_code == 201
    cache.clear()


def test_nesting_is_refused_from_a_fixed_depth_before_parsing(owner):
    """Depth is checked before the parser runs: on some Python versions a deeply nested body
    overflows the C stack (a crash) instead of raising RecursionError."""
    from django_ai.conversations.api.parsing import MAX_JSON_DEPTH

    def send(levels: int):
        value = "[" * levels + "]" * levels
        return _send(owner["client"], "patch", f"models/widget/{owner['widget'].pk}/", '{"display_data": {"a": %s}}' % value)

    inside = send(MAX_JSON_DEPTH - 2)  # plus the two objects around it
    assert inside.status_code == 200, inside.content
    too_deep = send(MAX_JSON_DEPTH)
    assert too_deep.status_code == 400 and error_codes(too_deep) == ["parse_error"]
    assert b"nested more than" in too_deep.content
    # Brackets inside strings are text, not nesting.
    text = _send(owner["client"], "patch", f"models/widget/{owner['widget'].pk}/", json.dumps({"display_data": {"a": "[" * 500}}))
    assert text.status_code == 200, text.content
