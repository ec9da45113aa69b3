"""Shared helpers of the bridge tests: a JSON client, owners, rows to read, and an agent to talk to."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import Client, override_settings
from django.utils import timezone

from django_ai.conversations import ConversationAgent
from django_ai.conversations.bridge.catalog import exposed_models
from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.registry import register_agent
from django_ai.conversations.testing.factories import MessageFactory, SessionFactory, UserFactory, WidgetFactory

API = "/api/conversations/"


class EchoAgent(ConversationAgent):
    """Answers with the message."""

    async def get_response(self, message, request=None, **kwargs):
        return f"echo: {message}"


class RejectAgent(ConversationAgent):
    """Refuses a message while a turn runs."""

    concurrency = "reject"

    async def get_response(self, message, request=None, **kwargs):
        return "ok"


class Api:
    """A test client speaking JSON to the bridge as one caller."""

    def __init__(self, client: Client | None = None, *, anonymous_id: str | None = None):
        self.client = client or Client()
        self.headers: dict[str, str] = {}
        self.user: Any = None
        if anonymous_id:
            self.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"] = anonymous_id

    def _send(self, method: str, path: str, body: Any = None, *, raw: str | bytes | None = None, **extra: Any) -> Any:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        kwargs: dict[str, Any] = {**self.headers, **extra}
        if data is not None:
            kwargs.setdefault("content_type", "application/json")
            return getattr(self.client, method)(API + path, data, **kwargs)
        return getattr(self.client, method)(API + path, **kwargs)

    def query(self, name: str, body: Any = None, **extra: Any) -> Any:
        return self._send("post", f"models/{name}/query/", body if body is not None else {}, **extra)

    def create(self, name: str, body: Any, **extra: Any) -> Any:
        return self._send("post", f"models/{name}/", body, **extra)

    def update(self, name: str, pk: Any, body: Any, **extra: Any) -> Any:
        return self._send("patch", f"models/{name}/{pk}/", body, **extra)

    def delete(self, name: str, pk: Any, **extra: Any) -> Any:
        return self._send("delete", f"models/{name}/{pk}/", **extra)

    def post(self, path: str, body: Any = None, **extra: Any) -> Any:
        return self._send("post", path, body, **extra)

    def get(self, path: str, **extra: Any) -> Any:
        return self._send("get", path, **extra)


def ai(**values: Any) -> Any:
    """override_settings for DJANGO_AI keys, keeping the others (the memory realtime backend)."""
    current = dict(getattr(django_settings, "DJANGO_AI", {}) or {})
    return override_settings(DJANGO_AI={**current, **values})


def user_api(user: Any, **kwargs: Any) -> Api:
    client = Client(**kwargs)
    client.force_login(user)
    api = Api(client)
    api.user = user
    return api


def anonymous_api(anonymous_id: str | None = None) -> Api:
    return Api(anonymous_id=anonymous_id or new_anonymous_id())


def rows(response: Any, name: str) -> list[dict[str, Any]]:
    """The rows of a normalized answer, in ``data`` order."""
    body = response.json()
    assert response.status_code == 200, body
    bucket = body["included"].get(name, {})
    return [bucket[str(pk)] for pk in body["data"]]


def messages_in(session: Any, n: int, *, start: datetime.datetime | None = None) -> list[Any]:
    """``n`` messages of ``session``, one second apart from ``start`` (an hour ago by default)."""
    start = start or timezone.now() - datetime.timedelta(hours=1)
    return [
        MessageFactory(session=session, content=f"m{i}", timestamp=start + datetime.timedelta(seconds=i))
        for i in range(n)
    ]


def send_raw(client: Client, method: str, path: str, raw: str) -> Any:
    """Send ``raw`` as it is (hostile JSON the test client would not write) as a JSON body."""
    return getattr(client, method)(API + path, raw, content_type="application/json")


def error_codes(response: Any) -> list[str]:
    body = response.json()
    assert set(body) == {"errors"}, body
    for error in body["errors"]:
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
        assert set(error) <= {"code", "message", "field"}
    return [e["code"] for e in body["errors"]]


def error_fields(response: Any) -> list[str | None]:
    return [e.get("field") for e in response.json()["errors"]]


@pytest.fixture
def owner() -> dict[str, Any]:
    """A signed-in user's conversation with a widget, and their client (server errors answered,
    not raised, as a deployed server does)."""
    user = UserFactory(username="owner")
    session = SessionFactory(user=user, title="mine", agent_path="test-agent")
    widget = WidgetFactory(session=session, display_data={"open": True})
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return {"user": user, "session": session, "widget": widget, "client": client}


@pytest.fixture
def echo_agent():
    register_agent("test-agent", EchoAgent)
    return EchoAgent


@pytest.fixture
def fresh_bridge(settings):
    """Registrations a test adds (or replaces) are forgotten afterwards; users get a fast password
    hasher (the default one costs most of a test's time)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # A committed user message is answered right after its commit, in the test's thread (no
    # background thread reading a test transaction it cannot see).
    settings.DJANGO_AI = {**(getattr(settings, "DJANGO_AI", {}) or {}), "IN_PROCESS_TURN_THREADS": 0}
    exposed_models.reset()
    cache.clear()
    yield exposed_models
    exposed_models.reset()
    cache.clear()


@pytest.fixture
def shop(fresh_bridge):
    """The project models of ``tests.shop`` exposed again (``fresh_bridge`` forgot what its app's
    ``ready()`` registered)."""
    from tests.shop.exposed import expose_shop

    expose_shop()
    return fresh_bridge
