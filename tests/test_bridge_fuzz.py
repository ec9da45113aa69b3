"""Property-based fuzzing of the query endpoint (hypothesis): whatever the body, the answer is a
normalized 200 holding only the caller's rows, or an error envelope with a 4xx status; never a
500 (the test client re-raises server errors, so one would fail the test)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_ai.conversations.bridge.builtins import MessageFilterSet
from django_ai.conversations.testing.factories import FileFactory, MessageFactory, SessionFactory, UserFactory

from .bridge_support import ai, anonymous_api, echo_agent, fresh_bridge, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]

PATHS = [
    "id",
    "session",
    "message_type",
    "processing_status",
    "reply_to",
    "timestamp",
    "updated_at",
    "content",
    "session__status",
    "session__user",
    "session__user__password",
    "files",
    "session__anonymous_id",
    "pk",
]
LOOKUPS = ["", "__exact", "__in", "__gte", "__lt", "__isnull", "__icontains", "__range", "__regex", "__year", "__date"]
KEYS = st.one_of(
    st.sampled_from(sorted(MessageFilterSet.base_filters)),
    st.builds(lambda p, lk: p + lk, st.sampled_from(PATHS), st.sampled_from(LOOKUPS)),
    st.text(max_size=30),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "user",
            "agent",
            "2024-01-01T00:00:00Z",
            "2024-13-45",
            "00000000-0000-0000-0000-000000000000",
            "\x00",
            "%",
            "' OR 1=1 --",
            "-timestamp",
            "timestamp",
            "anon_x",
        ]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=5), JSON)
QUERIES = st.fixed_dictionaries(
    {},
    optional={
        "filter": st.one_of(st.dictionaries(KEYS, VALUES, max_size=4), JSON),
        "exclude": st.one_of(st.dictionaries(KEYS, VALUES, max_size=3), JSON),
        "order_by": st.one_of(
            st.lists(
                st.sampled_from(
                    ["timestamp", "-timestamp", "updated_at", "-id", "content", "?", "session__user__password"]
                ),
                max_size=4,
            ),
            JSON,
        ),
        "limit": st.one_of(st.integers(min_value=-5, max_value=400), JSON),
        "offset": st.one_of(st.integers(min_value=-5, max_value=200_000), JSON),
        "fields": st.one_of(st.lists(st.sampled_from([*PATHS, "context"]), max_size=4), JSON),
        "count": st.one_of(st.booleans(), JSON),
        "include": st.one_of(
            st.lists(st.sampled_from(["session", "files", "reply_to", "widget", "session__user"]), max_size=3), JSON
        ),
        "extra": JSON,
    },
)
BODIES = st.one_of(QUERIES, JSON)


@pytest.fixture
def world():
    user = UserFactory()
    session = SessionFactory(user=user)
    for _ in range(3):
        MessageFactory(session=session).files.set([FileFactory(user=user, session=session)])
    stranger = SessionFactory(user=UserFactory())
    MessageFactory(session=stranger, content="stranger secret")
    return {"api": user_api(user), "mine": str(session.pk), "stranger": str(stranger.pk)}


def _check(response, world):
    assert response.status_code in (200, 400, 403, 404, 413), response.status_code
    body = response.json()
    if response.status_code == 200:
        assert set(body) == {"data", "included", "meta"}
        assert len(body["data"]) <= body["meta"]["limit"] <= 200
        for row in body["included"].get("message", {}).values():
            assert row.get("session", world["mine"]) == world["mine"]
        assert "stranger secret" not in response.content.decode()
        assert world["stranger"] not in response.content.decode()
    else:
        assert set(body) == {"errors"} and body["errors"]
        for error in body["errors"]:
            assert isinstance(error["code"], str) and isinstance(error["message"], str)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(body=BODIES)
def test_query_endpoint_never_fails(world, body):
    _check(world["api"].query("message", body), world)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(name=st.sampled_from(["session", "widget", "file"]), body=QUERIES)
def test_other_models_never_fail(world, name, body):
    _check(world["api"].query(name, body), world)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(raw=st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode)))
def test_raw_bytes_never_fail(world, raw):
    response = world["api"].client.post(
        "/api/conversations/models/message/query/", raw, content_type="application/json"
    )
    _check(response, world)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    body=st.one_of(
        JSON,
        st.dictionaries(st.sampled_from(["session", "content", "files", "message_type", "id"]), VALUES, max_size=4),
    )
)
def test_message_create_never_fails(world, body):
    with ai(MESSAGE_CREATE_THROTTLE_RATE=None):
        _create(world, body)


def _create(world, body):
    response = anonymous_api().create("message", None, raw=json.dumps(body))
    assert response.status_code in (400, 403), response.content
    response = world["api"].client.post(
        "/api/conversations/models/message/", json.dumps(body), content_type="application/json"
    )
    assert response.status_code in (201, 400, 403, 404, 409), response.content
    assert set(response.json()) == ({"errors"} if response.status_code != 201 else {"data", "included", "meta"})
