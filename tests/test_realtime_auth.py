"""Channel authorisation (``realtime/auth/``), the same check on ``realtime/events/``, and
``realtime/config/``. No Pusher server is contacted here: signing a subscription is local; the
signature is checked against the ``pusher`` library's own implementation."""

from __future__ import annotations

import json
import uuid

import pusher
import pytest
from django.test import Client, override_settings

from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.realtime import reset_backend
from django_ai.conversations.realtime.channels import owner_channel, session_channel
from django_ai.conversations.testing import SessionFactory, UserFactory

AUTH = "/api/conversations/realtime/auth/"
EVENTS = "/api/conversations/realtime/events/"
CONFIG = "/api/conversations/realtime/config/"
HEADER = "HTTP_X_CONVERSATION_ANONYMOUS_ID"
SOCKET = "123456.7890123"
PUSHER = {
    "APP_ID": "4242",
    "KEY": "public-key",
    "SECRET": "very-secret",
    "HOST": "127.0.0.1",
    "PORT": 9,
    "SCHEME": "http",
}

pytestmark = pytest.mark.django_db


@pytest.fixture
def pusher_backend():
    with override_settings(DJANGO_AI={"PUSHER": PUSHER}):
        reset_backend()
        yield
    reset_backend()


@pytest.fixture
def local_backend():
    with override_settings(DJANGO_AI={"REALTIME_BACKEND": "django_ai.conversations.realtime.local.LocalBackend"}):
        reset_backend()
        yield
    reset_backend()


def expected_auth(channel: str) -> dict:
    client = pusher.Pusher(
        app_id=PUSHER["APP_ID"], key=PUSHER["KEY"], secret=PUSHER["SECRET"], host="127.0.0.1", port=9, ssl=False
    )
    return client.authenticate(channel=channel, socket_id=SOCKET)


def post_form(client, body: dict, **extra):
    """POST as pusher-js does: application/x-www-form-urlencoded."""
    from urllib.parse import urlencode

    return client.post(AUTH, urlencode(body), content_type="application/x-www-form-urlencoded", **extra)


def errors(response) -> list[dict]:
    body = response.json()
    assert set(body) == {"errors"}, body
    return body["errors"]


def test_an_anonymous_visitor_gets_a_pusher_signature_for_their_session_form_encoded(client, pusher_backend):
    session = SessionFactory()
    channel = session_channel(session.pk)
    response = post_form(client, {"socket_id": SOCKET, "channel_name": channel}, **{HEADER: session.anonymous_id})
    assert response.status_code == 200, response.content
    assert response.json() == expected_auth(channel)
    assert response.json()["auth"].startswith("public-key:")
    # FormData (multipart) bodies work as well.
    response = client.post(AUTH, {"socket_id": SOCKET, "channel_name": channel}, **{HEADER: session.anonymous_id})
    assert response.json() == expected_auth(channel)


def test_json_bodies_are_accepted_too(client, pusher_backend):
    session = SessionFactory()
    channel = session_channel(session.pk)
    response = client.post(
        AUTH,
        json.dumps({"socket_id": SOCKET, "channel_name": channel}),
        content_type="application/json",
        **{HEADER: session.anonymous_id},
    )
    assert response.status_code == 200
    assert response.json() == expected_auth(channel)


def test_a_logged_in_user_subscribes_to_their_sessions_and_owner_channel_with_csrf(pusher_backend):
    user = UserFactory()
    session = SessionFactory(user=user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    body = {"socket_id": SOCKET, "channel_name": session_channel(session.pk)}
    refused = post_form(client, body)
    assert refused.status_code == 403 and errors(refused)[0]["code"] == "permission_denied"
    assert "CSRF" in errors(refused)[0]["message"]

    config = client.get(CONFIG)
    token = config.cookies["csrftoken"].value
    assert post_form(client, body, HTTP_X_CSRFTOKEN=token).json() == expected_auth(body["channel_name"])
    own = owner_channel(user_id=user.pk)
    assert config.json()["owner_channel"] == own
    response = post_form(client, {"socket_id": SOCKET, "channel_name": own}, HTTP_X_CSRFTOKEN=token)
    assert response.json() == expected_auth(own)


def test_other_users_and_visitors_are_refused_with_403(client, pusher_backend):
    alice, bob = UserFactory(), UserFactory()
    alices = SessionFactory(user=alice)
    visitors = SessionFactory()
    client.force_login(bob)
    for channel in (
        session_channel(alices.pk),
        session_channel(visitors.pk),
        owner_channel(user_id=alice.pk),
        owner_channel(anonymous_id=visitors.anonymous_id),
    ):
        response = post_form(client, {"socket_id": SOCKET, "channel_name": channel})
        assert response.status_code == 403, channel
        assert errors(response)[0]["code"] == "channel_forbidden"
        assert "auth" not in response.json()

    stranger = Client()
    response = stranger.post(
        AUTH, {"socket_id": SOCKET, "channel_name": session_channel(visitors.pk)}, **{HEADER: new_anonymous_id()}
    )
    assert response.status_code == 403 and errors(response)[0]["code"] == "channel_forbidden"
    # A visitor without any id owns nothing, not even an owner channel.
    response = Client().post(
        AUTH, {"socket_id": SOCKET, "channel_name": owner_channel(anonymous_id=visitors.anonymous_id)}
    )
    assert response.status_code == 403


def test_unknown_sessions_are_404(client, pusher_backend):
    response = client.post(
        AUTH, {"socket_id": SOCKET, "channel_name": session_channel(uuid.uuid4())}, **{HEADER: new_anonymous_id()}
    )
    assert response.status_code == 404
    assert errors(response)[0]["code"] == "session_not_found"


@pytest.mark.parametrize(
    "channel",
    [
        "private-conversation-session-not-a-uuid",
        "private-conversation-session-" + str(uuid.uuid4()).upper(),
        "private-conversation-session-" + str(uuid.uuid4()) + "x",
        "presence-conversation-session-" + str(uuid.uuid4()),
        "private-conversation-owner-user-",
        "private-conversation-owner-user-1;drop",
        "private-conversation-owner-anon-xyz",
        "private-other-channel",
        "x" * 300,
    ],
)
def test_malformed_channel_names_are_403(client, pusher_backend, channel):
    response = client.post(AUTH, {"socket_id": SOCKET, "channel_name": channel}, **{HEADER: new_anonymous_id()})
    assert response.status_code == 403
    assert errors(response)[0]["code"] == "invalid_channel"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"channel_name": "private-conversation-owner-user-1"}, "socket_id", "invalid_socket_id"),
        ({"socket_id": "abc", "channel_name": "private-conversation-owner-user-1"}, "socket_id", "invalid_socket_id"),
        (
            {"socket_id": "1.2\n3", "channel_name": "private-conversation-owner-user-1"},
            "socket_id",
            "invalid_socket_id",
        ),
        ({"socket_id": SOCKET}, "channel_name", "required"),
    ],
)
def test_bad_auth_requests_are_400_with_the_field(client, pusher_backend, body, field, code):
    response = post_form(client, body, **{HEADER: new_anonymous_id()})
    assert response.status_code == 400
    assert errors(response) == [{"code": code, "message": errors(response)[0]["message"], "field": field}]


def test_a_json_body_that_is_not_an_object_is_400(client, pusher_backend):
    response = client.post(AUTH, "[1, 2]", content_type="application/json")
    assert response.status_code == 400 and errors(response)[0]["code"] == "invalid"
    response = client.post(AUTH, "{not json", content_type="application/json")
    assert response.status_code == 400


def test_config_describes_pusher_without_secrets(client, pusher_backend):
    visitor = new_anonymous_id()
    response = client.get(CONFIG, **{HEADER: visitor})
    assert response.status_code == 200
    config = response.json()
    assert config["backend"] == "pusher"
    assert config["key"] == "public-key"
    assert (config["host"], config["port"], config["scheme"], config["force_tls"]) == ("127.0.0.1", 9, "http", False)
    assert config["auth_endpoint"] == AUTH
    assert config["events_endpoint"] is None
    assert config["owner_channel"] == owner_channel(anonymous_id=visitor)
    assert config["session_channel_prefix"] == "private-conversation-session-"
    assert "very-secret" not in response.content.decode()


def test_config_describes_the_local_backend(client, local_backend):
    config = client.get(CONFIG).json()
    assert config["backend"] == "local"
    assert config["events_endpoint"] == EVENTS
    assert config["owner_channel"] is None  # a visitor without an id yet


def test_hosted_pusher_config_names_the_cluster(client):
    with override_settings(DJANGO_AI_PUSHER={"APP_ID": "1", "KEY": "k", "SECRET": "s", "CLUSTER": "eu"}, DJANGO_AI={}):
        reset_backend()
        config = client.get(CONFIG).json()
    reset_backend()
    assert (config["backend"], config["key"], config["cluster"], config["force_tls"]) == ("pusher", "k", "eu", True)
    assert "host" not in config


def test_the_event_stream_checks_channels_before_streaming(client, local_backend):
    session = SessionFactory()
    other = SessionFactory()
    ok = {HEADER: session.anonymous_id}
    response = client.get(EVENTS, {"channel": session_channel(other.pk)}, **ok)
    assert response.status_code == 403 and errors(response)[0]["code"] == "channel_forbidden"
    response = client.get(EVENTS, {"channel": [session_channel(session.pk), session_channel(uuid.uuid4())]}, **ok)
    assert response.status_code == 404
    response = client.get(EVENTS, {"channel": "nonsense"}, **ok)
    assert response.status_code == 403 and errors(response)[0]["code"] == "invalid_channel"
    response = client.get(EVENTS, **ok)
    assert response.status_code == 400 and errors(response)[0]["field"] == "channel"
    many = [session_channel(session.pk)] + [session_channel(uuid.uuid4()) for _ in range(10)]
    response = client.get(EVENTS, {"channel": many}, **ok)
    assert response.status_code == 400 and errors(response)[0]["code"] == "too_many_channels"


def test_the_event_stream_is_404_under_the_pusher_backend(client, pusher_backend):
    session = SessionFactory()
    response = client.get(EVENTS, {"channel": session_channel(session.pk)}, **{HEADER: session.anonymous_id})
    assert response.status_code == 404
    assert errors(response)[0]["code"] == "not_available"


def test_local_backend_auth_confirms_the_channel(client, local_backend):
    session = SessionFactory()
    channel = session_channel(session.pk)
    response = client.post(AUTH, {"socket_id": SOCKET, "channel_name": channel}, **{HEADER: session.anonymous_id})
    assert response.json() == {"channel_name": channel, "authorized": True}
