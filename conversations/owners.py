"""Who owns a conversation: an authenticated user, or an anonymous visitor known by a
high-entropy id kept in their Django session (or sent by a stateless client in a header)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .conf import ai_settings

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request

__all__ = ["Owner", "ensure_anonymous_id", "get_owner", "new_anonymous_id", "owns", "valid_anonymous_id"]

ANONYMOUS_ID_PREFIX = "anon_"
#: What may follow the prefix: URL-safe base64, as ``secrets.token_urlsafe`` writes it. ASCII only
#: (``str.isalnum`` would also accept letters and digits of every other script).
_ANONYMOUS_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


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
    """Whether ``value`` has the format of the ids this app issues (``anon_`` and URL-safe
    base64, 32 to 128 characters in all)."""
    return (
        isinstance(value, str)
        and value.startswith(ANONYMOUS_ID_PREFIX)
        and 32 <= len(value) <= 128
        and all(c in _ANONYMOUS_ID_CHARS for c in value[len(ANONYMOUS_ID_PREFIX) :])
    )


def header_anonymous_id(request: HttpRequest | Request | None) -> str:
    """The raw value of the ``ANONYMOUS_ID_HEADER`` the request carries ('' when none), valid or not."""
    header = ai_settings.ANONYMOUS_ID_HEADER
    meta_key = "HTTP_" + header.upper().replace("-", "_")
    value = getattr(request, "META", {}).get(meta_key, "")
    return value if isinstance(value, str) else ""


def session_anonymous_id(request: HttpRequest | Request | None) -> str:
    """The anonymous id kept in the request's Django session, or ''."""
    session = getattr(request, "session", None) if request is not None else None
    if session is None:
        return ""
    value = session.get(ai_settings.ANONYMOUS_ID_SESSION_KEY)
    # Written by the server only: any non-empty id is trusted.
    return value if isinstance(value, str) and 0 < len(value) <= 128 else ""


def _authenticated_user(request: HttpRequest | Request | None) -> Any:
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return user
    return None


def request_anonymous_id(request: HttpRequest | Request | None) -> str:
    """The anonymous id the request carries (Django session first, then the header), or ''."""
    if request is None:
        return ""
    stored = session_anonymous_id(request)
    if stored:
        return stored
    value = header_anonymous_id(request)
    # Sent by the client: only ids in the format this app issues (256 random bits) are accepted
    # (the app's views answer any other value with 400 invalid_anonymous_id, see BridgeAPIView).
    return value if valid_anonymous_id(value) else ""


def get_owner(request: HttpRequest | Request | None = None, user: Any = None) -> Owner:
    """The owner a request (or an explicit user) acts as."""
    if user is not None and getattr(user, "is_authenticated", False):
        return Owner(user=user)
    authenticated = _authenticated_user(request)
    if authenticated is not None:
        return Owner(user=authenticated)
    return Owner(anonymous_id=request_anonymous_id(request))


def ensure_anonymous_id(request: HttpRequest | Request | None) -> str:
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
