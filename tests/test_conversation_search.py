"""Finding conversations: the ``search`` filter of ``session`` (``filter={"search": "..."}``).

A conversation matches by its title (contains the text, any case) or by the text of a user or
agent message on its active path. On PostgreSQL message text is full-text searched (websearch
syntax, ``simple`` configuration, the GIN index of migration 0004); elsewhere it is a substring.

Real parts: the bridge's views over Django's test client and the real database; the PostgreSQL
tests run only there (``DATABASE_URL``), the substring tests only elsewhere.
"""

from __future__ import annotations

import datetime
import importlib
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from django_ai.conversations.constants import MessageType, SessionStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.search import search_sessions
from django_ai.conversations.testing.factories import MessageFactory, SessionFactory, UserFactory

from .bridge_support import anonymous_api, error_codes, error_fields, fresh_bridge, rows, user_api  # noqa: F401

pytestmark = pytest.mark.django_db

postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="full-text search: PostgreSQL only")
not_postgresql = pytest.mark.skipif(connection.vendor == "postgresql", reason="the portable substring search")


def _found(api, text, **query):
    response = api.query("session", {"filter": {"search": text}, **query})
    return [row["title"] for row in rows(response, "session")]


def _conversation(user, title, *texts, minutes_ago=0, **fields):
    """A conversation of ``user``: user and agent messages, alternating, with ``texts``."""
    session = SessionFactory(user=user, title=title, **fields)
    start = timezone.now() - datetime.timedelta(hours=2)
    question = None
    for i, text in enumerate(texts):
        kind = MessageType.USER if i % 2 == 0 else MessageType.AGENT
        row = MessageFactory(
            session=session,
            message_type=kind,
            content=text,
            reply_to=question if kind == MessageType.AGENT else None,
            timestamp=start + datetime.timedelta(seconds=i),
        )
        question = row if kind == MessageType.USER else question
    ConversationSession.objects.filter(pk=session.pk).update(
        updated_at=timezone.now() - datetime.timedelta(minutes=minutes_ago)
    )
    return session


@pytest.fixture
def alice(fresh_bridge):
    user = UserFactory(username="alice")
    return user, user_api(user)


def test_title_and_message_text_match_most_recent_first(alice):
    user, api = alice
    _conversation(user, "Lisbon trip", "Where to stay?", "Alfama is nice.", minutes_ago=30)
    _conversation(user, "Dinner", "Any seafood place?", "Try the restaurant in Lisbon harbour.", minutes_ago=10)
    _conversation(user, "Taxes", "When is the deadline?", "April 30.", minutes_ago=5)
    assert _found(api, "lisbon") == ["Dinner", "Lisbon trip"]  # title or agent text; -updated_at
    assert _found(api, "LISBON", order_by=["title"]) == ["Dinner", "Lisbon trip"]
    assert _found(api, "seafood") == ["Dinner"]  # the user's message
    assert _found(api, "deadline") == ["Taxes"]
    assert _found(api, "madrid") == []


def test_only_the_active_path_and_user_and_agent_text_are_searched(alice):
    user, api = alice
    session = _conversation(user, "Plans", "Tell me about Porto", "Porto is in the north.")
    # An earlier version of a message, off the active path, and its reply.
    old = MessageFactory(session=session, content="Tell me about Coimbra", active=False)
    MessageFactory(session=session, message_type=MessageType.AGENT, content="Coimbra has a university.", active=False)
    # Rows that are not conversation text: a tool step, a system notice, a widget's message.
    MessageFactory(session=session, message_type=MessageType.TOOL, content="weather lookup Braga")
    MessageFactory(session=session, message_type=MessageType.SYSTEM, content="Faro notice")
    MessageFactory(session=session, message_type=MessageType.WIDGET, content="Evora card")
    assert _found(api, "porto") == ["Plans"]
    for text in ("coimbra", "university", "braga", "faro", "evora"):
        assert _found(api, text) == [], text
    # Back on the path, it is found.
    ConversationMessage.objects.filter(pk=old.pk).update(active=True)
    assert _found(api, "coimbra") == ["Plans"]


def test_another_owners_conversation_never_appears(alice):
    user, api = alice
    _conversation(user, "Mine", "about the budget")
    _conversation(UserFactory(), "Budget of Bob", "my budget is secret")
    visitor = SessionFactory(title="Budget of a visitor")
    MessageFactory(session=visitor, content="budget")
    assert _found(api, "budget") == ["Mine"]
    assert _found(anonymous_api(visitor.anonymous_id), "budget") == ["Budget of a visitor"]
    assert _found(anonymous_api(), "budget") == []


def test_deleted_conversations_are_not_found(alice):
    user, api = alice
    _conversation(user, "Gone", "needle", status=SessionStatus.DELETED)
    _conversation(user, "Archived", "needle", status=SessionStatus.ARCHIVED)
    assert _found(api, "needle") == ["Archived"]


def test_search_combines_with_other_filters_counts_and_excludes(alice):
    user, api = alice
    _conversation(user, "Needle one", "x", status=SessionStatus.ARCHIVED)
    _conversation(user, "Needle two", "y")
    _conversation(user, "Other", "z")
    response = api.query("session", {"filter": {"search": "needle", "status": "active"}, "count": True})
    assert [r["title"] for r in rows(response, "session")] == ["Needle two"]
    assert response.json()["meta"]["count"] == 1
    response = api.query("session", {"exclude": {"search": "needle"}})
    assert [r["title"] for r in rows(response, "session")] == ["Other"]


def test_blank_search_narrows_nothing(alice):
    user, api = alice
    _conversation(user, "A", "x")
    _conversation(user, "B", "y")
    assert sorted(_found(api, "")) == ["A", "B"]
    assert sorted(_found(api, "   ")) == ["A", "B"]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("x" * 201, "invalid_query"),
        ("a\x00b", "invalid_query"),
        (["a", "b"], "invalid_query"),
        (42, "invalid_query"),
        (True, "invalid_query"),
        (None, "invalid_query"),
        ({"q": "a"}, "invalid_query"),
    ],
    ids=["too-long", "nul", "list", "number", "boolean", "null", "object"],
)
def test_bad_search_values_are_400(alice, value, code):
    _, api = alice
    response = api.query("session", {"filter": {"search": value}})
    assert response.status_code == 400, response.json()
    assert error_codes(response) == [code] and error_fields(response) == ["filter.search"]


def test_a_search_of_exactly_200_characters_is_accepted(alice):
    user, api = alice
    _conversation(user, "w" * 200, "x")
    assert _found(api, "w" * 200) == ["w" * 200]


def test_the_search_lookup_is_listed_in_the_schema(alice):
    _, api = alice
    schema = api.get("schema/").json()
    models = schema.get("models", schema)
    assert models["session"]["filters"]["search"] == ["exact"]


def test_search_sessions_narrows_a_queryset_it_is_given(alice):
    user, _ = alice
    mine = _conversation(user, "Kept", "orchard apples")
    _conversation(user, "Dropped", "orchard pears")
    scoped = ConversationSession.objects.filter(pk=mine.pk)
    assert list(search_sessions(scoped, "orchard")) == [mine]
    assert search_sessions(scoped, " ").count() == 1


@not_postgresql
def test_elsewhere_the_text_is_a_substring_of_a_message(alice):
    user, api = alice
    _conversation(user, "Trip", "Booked the Lisbon flight", "Have a good trip")
    assert _found(api, "isbo") == ["Trip"]  # inside a word
    assert _found(api, "lisbon flight") == ["Trip"]  # words in that order, together
    assert _found(api, "flight lisbon") == []  # not full text: no reordering
    assert _found(api, "100%") == []  # LIKE's wildcards are plain characters
    _conversation(user, "Discount", "a 100% refund")
    assert _found(api, "100%") == ["Discount"]


@postgresql_only
def test_postgresql_words_phrases_or_and_negation(alice):
    user, api = alice
    _conversation(user, "One", "We booked the flight to Lisbon in May")
    _conversation(user, "Two", "Lisbon hotels are expensive", "The flight was late")
    _conversation(user, "Three", "Trains from Porto")
    # Every word is required, in any order, in any message of the path... within one message.
    assert _found(api, "flight lisbon") == ["One"]
    assert _found(api, "LISBON") == ["Two", "One"]
    assert _found(api, '"flight to lisbon"') == ["One"]  # a phrase
    assert _found(api, '"lisbon to flight"') == []
    assert sorted(_found(api, "porto or hotels")) == ["Three", "Two"]
    assert _found(api, "lisbon -flight") == ["Two"]
    assert _found(api, "isbo") == []  # whole words, not substrings
    # Syntax a user may type by accident is not an error (websearch_to_tsquery never raises).
    for text in ('"unclosed', "a & | ! b", "(((", "-", "or", "'"):
        response = api.query("session", {"filter": {"search": text}})
        assert response.status_code == 200, (text, response.json())


@postgresql_only
def test_postgresql_uses_the_gin_index(alice):
    user, _ = alice
    sessions = [SessionFactory(user=user, title=f"s{i}") for i in range(40)]
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    ConversationMessage.objects.bulk_create(
        [
            ConversationMessage(
                id=uuid.uuid4(),
                session=sessions[i % 40],
                message_type=MessageType.USER if i % 2 else MessageType.AGENT,
                content=f"{words[i % 8]} {words[(i * 3) % 8]} number {i}",
            )
            for i in range(4000)
        ]
    )
    ConversationMessage.objects.create(session=sessions[7], message_type=MessageType.USER, content="zanzibar")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'convmsg_content_search'",
        )
        (definition,) = cursor.fetchone()
        assert "gin" in definition.lower() and "to_tsvector" in definition
        cursor.execute("ANALYZE django_ai_conversations_conversationmessage")
        cursor.execute("SET LOCAL enable_seqscan = off")
    queryset = search_sessions(ConversationSession.objects.filter(user=user), "zanzibar")
    plan = queryset.explain()
    assert "convmsg_content_search" in plan, plan
    assert [s.title for s in queryset] == ["s7"]


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_index_a_large_table_had_built_beforehand():
    """docs/conversations.md's CREATE INDEX CONCURRENTLY (run as documented, outside a
    transaction) makes the very index the migration would: the migration then keeps it."""
    from pathlib import Path

    from django.apps import apps

    module = importlib.import_module("django_ai.conversations.migrations.0004_message_search_index")
    docs = (Path(__file__).resolve().parent.parent / "docs" / "conversations.md").read_text()
    documented = docs.split("```sql\n", 1)[1].split("```", 1)[0]
    assert "CONCURRENTLY" in documented

    def definitions() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'convmsg_content_search'")
            return [row[0] for row in cursor.fetchall()]

    (made_by_migration,) = definitions()
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX convmsg_content_search")
        cursor.execute(documented)
    assert definitions() == [made_by_migration]  # the same expression: the planner uses it alike
    with connection.schema_editor() as editor:
        module.create_index(apps, editor)  # finds it, and neither fails nor makes a second one
    assert definitions() == [made_by_migration]
