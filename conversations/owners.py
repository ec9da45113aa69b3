"""Who owns a conversation: an authenticated user, or an anonymous visitor known by a
high-entropy id kept in their Django session (or sent by a stateless client in a header)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from .conf import ai_settings

__all__ = ["Owner", "get_owner", "new_anonymous_id", "ensure_anonymous_id", "owns"]

ANONYMOUS_ID_PREFIX = "anon_"


@dataclass(frozen=True)
class Owner:
    user: Any = None
    anonymous_id: str = ""

    @property
    def is_user(self) -> bool:
        return self.user is not None

    @property
    def is_known(self) -> bool:
        return self.user is not None or bool(self.anonymous_id)


def new_anonymous_id() -> str:
    """A fresh anonymous id: 256 random bits."""
    return ANONYMOUS_ID_PREFIX + secrets.token_urlsafe(32)


def valid_anonymous_id(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value.startswith(ANONYMOUS_ID_PREFIX)
        and 32 <= len(value) <= 128
        and all(c.isalnum() or c in "-_" for c in value[len(ANONYMOUS_ID_PREFIX):])
    )


def _authenticated_user(request: Any) -> Any:
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return user
    return None


def request_anonymous_id(request: Any) -> str:
    """The anonymous id the request carries (Django session first, then the header), or ''."""
    if request is None:
        return ""
    session = getattr(request, "session", None)
    if session is not None:
        value = session.get(ai_settings.ANONYMOUS_ID_SESSION_KEY)
        # Written by the server only: any non-empty id is trusted.
        if isinstance(value, str) and 0 < len(value) <= 128:
            return value
    header = ai_settings.ANONYMOUS_ID_HEADER
    meta_key = "HTTP_" + header.upper().replace("-", "_")
    value = getattr(request, "META", {}).get(meta_key, "")
    # Sent by the client: only ids in the format this app issues (256 random bits) are accepted.
    return value if valid_anonymous_id(value) else ""


def get_owner(request: Any = None, user: Any = None) -> Owner:
    """The owner a request (or an explicit user) acts as."""
    if user is not None and getattr(user, "is_authenticated", False):
        return Owner(user=user)
    authenticated = _authenticated_user(request)
    if authenticated is not None:
        return Owner(user=authenticated)
    return Owner(anonymous_id=request_anonymous_id(request))


def ensure_anonymous_id(request: Any) -> str:
    """The request's anonymous id, creating one and storing it in the Django session if needed."""
    existing = request_anonymous_id(request)
    if existing:
        return existing
    value = new_anonymous_id()
    session = getattr(request, "session", None)
    if session is not None:
        session[ai_settings.ANONYMOUS_ID_SESSION_KEY] = value
    return value


def owns(owner: Owner, obj: Any) -> bool:
    """Whether ``owner`` owns ``obj`` (anything with ``user_id`` and ``anonymous_id``)."""
    if owner.user is not None:
        return obj.user_id is not None and obj.user_id == owner.user.pk
    if not owner.anonymous_id or obj.user_id is not None or not obj.anonymous_id:
        return False
    return hmac.compare_digest(str(obj.anonymous_id).encode(), owner.anonymous_id.encode())
