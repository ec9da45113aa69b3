"""Helpers of the test suite: requests as Django builds them (with a saved session and a user, or
AnonymousUser), and one agent run through a conversation."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from django_ai.conversations import ConversationAgent, register_agent
from django_ai.conversations.models import ConversationSession
from django_ai.conversations.service import ConversationService


def make_request(user: Any = None, *, session_key: str | None = None, path: str = "/chat/") -> Any:
    """A POST request with ``request.session`` (a database session, loaded from ``session_key`` when
    given, so two requests can share one visitor's session) and ``request.user``."""
    request = RequestFactory().post(path)
    request.session = SessionStore(session_key=session_key)
    request.user = user if user is not None else AnonymousUser()
    return request


def same_visitor(request: Any, user: Any = None) -> Any:
    """A later request of the visitor who sent ``request`` (same session cookie)."""
    request.session.save()
    return make_request(user or request.user, session_key=request.session.session_key)


def run_agent(
    agent_cls: type[ConversationAgent], *messages: str, context: Any = None, **kwargs: Any
) -> tuple[ConversationSession, list[dict]]:
    """Register ``agent_cls`` as ``"under-test"``, start a conversation with ``context`` and send it
    each message in turn (``kwargs`` go to every ``send_message``). Returns the session, reloaded,
    and the results of the sends."""
    register_agent("under-test", agent_cls)
    session = ConversationService.create_session("under-test", context=context)
    results = [ConversationService.send_message(session.id, m, **kwargs) for m in messages]
    session.refresh_from_db()
    return session, results
