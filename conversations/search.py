"""Finding conversations by their words: the ``search`` filter of the bridge's ``session`` model
(docs/conversations.md, "Search").

A conversation matches when its title contains the text (case-insensitive), or when one of its
messages on the active path (docs/versions.md), the user's or the agent's, matches it. Versions
that are not on the path, tool steps, widgets and system notices are not searched.

- PostgreSQL: full-text search of the message text, ``websearch_to_tsquery`` syntax (words are
  all required, ``"a phrase"``, ``or``, ``-word``), text configuration ``simple`` (no stemming and
  no stop words: the conversations are in any language). Backed by a GIN index that migration
  ``0004`` creates on PostgreSQL only, built from the same ``SearchVector`` expression as the
  query's, so the planner can use it (``tests/test_conversation_search.py`` checks the plan).
- Other databases: the text as one substring of the message (``icontains``), no index.

The filter narrows a queryset the caller already scoped to one owner (the bridge's ``IsOwner``):
it never widens it.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.models import Exists, OuterRef, Q, QuerySet

from .constants import MessageType
from .models import ConversationMessage

try:
    from django.contrib.postgres.search import SearchQuery, SearchVector
except ImportError:  # no psycopg: PostgreSQL is not in use, the portable search serves
    SearchQuery = SearchVector = None  # type: ignore[assignment,misc]

__all__ = [
    "MAX_SEARCH_LENGTH",
    "SEARCH_CONFIG",
    "matching_messages",
    "search_sessions",
]

#: Longest search text the bridge accepts (400 beyond).
MAX_SEARCH_LENGTH = 200
#: PostgreSQL's text search configuration: ``simple`` lowercases words and nothing more.
SEARCH_CONFIG = "simple"
#: The messages whose text is searched.
SEARCHED_TYPES = (MessageType.USER, MessageType.AGENT)


def _postgres_match(messages: QuerySet, text: str) -> QuerySet:
    vector = SearchVector("content", config=SEARCH_CONFIG)
    query = SearchQuery(text, config=SEARCH_CONFIG, search_type="websearch")
    return messages.annotate(search_vector=vector).filter(search_vector=query)


def matching_messages(text: str, *, using: str = "default") -> QuerySet:
    """The active user and agent messages whose text matches ``text`` (any conversation)."""
    messages = ConversationMessage.objects.using(using).filter(active=True, message_type__in=SEARCHED_TYPES)
    if connections[using].vendor == "postgresql":
        return _postgres_match(messages, text)
    return messages.filter(content__icontains=text)


def search_sessions(queryset: QuerySet[Any], text: str) -> QuerySet[Any]:
    """``queryset`` (conversations) narrowed to those matching ``text``; blank text narrows nothing.

    ``text`` is trusted to be a str of reasonable length (the bridge's filter checks it)."""
    text = text.strip()
    if not text:
        return queryset
    messages = matching_messages(text, using=queryset.db).filter(session=OuterRef("pk"))
    return queryset.filter(Q(title__icontains=text) | Exists(messages))
