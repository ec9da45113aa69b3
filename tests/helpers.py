"""Requests as Django builds them: with a saved session and a user (or AnonymousUser)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory


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
