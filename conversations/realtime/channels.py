"""Channel names.

``private-conversation-session-<session uuid>`` carries one conversation's events;
``private-conversation-owner-user-<user pk>`` / ``private-conversation-owner-anon-<digest>`` carry
``model_change`` events for an owner's list of sessions. The anonymous id itself never appears in a
channel name: a digest of it does.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from ..constants import OWNER_CHANNEL_PREFIX, SESSION_CHANNEL_PREFIX


def session_channel(session_id: Any) -> str:
    return f"{SESSION_CHANNEL_PREFIX}{session_id}"


def anonymous_digest(anonymous_id: str) -> str:
    return hashlib.sha256(f"django-ai-owner:{anonymous_id}".encode()).hexdigest()[:40]


def owner_channel(*, user_id: Any = None, anonymous_id: str = "") -> str | None:
    if user_id is not None:
        return f"{OWNER_CHANNEL_PREFIX}user-{user_id}"
    if anonymous_id:
        return f"{OWNER_CHANNEL_PREFIX}anon-{anonymous_digest(anonymous_id)}"
    return None


def owner_channel_for_session(session: Any) -> str | None:
    return owner_channel(user_id=session.user_id, anonymous_id=session.anonymous_id)


@dataclass(frozen=True)
class ParsedChannel:
    kind: str  # "session" | "owner-user" | "owner-anon"
    value: str


def parse_channel(name: str) -> ParsedChannel | None:
    """Parse a channel name; None when it is not one of ours or is malformed."""
    if not isinstance(name, str) or len(name) > 200:
        return None
    if name.startswith(SESSION_CHANNEL_PREFIX):
        raw = name[len(SESSION_CHANNEL_PREFIX) :]
        try:
            parsed = uuid.UUID(raw)
        except ValueError:
            return None
        if str(parsed) != raw:
            return None
        return ParsedChannel("session", raw)
    if name.startswith(OWNER_CHANNEL_PREFIX + "user-"):
        raw = name[len(OWNER_CHANNEL_PREFIX + "user-") :]
        if raw and raw.isascii() and raw.replace("-", "").isalnum():
            return ParsedChannel("owner-user", raw)
        return None
    if name.startswith(OWNER_CHANNEL_PREFIX + "anon-"):
        raw = name[len(OWNER_CHANNEL_PREFIX + "anon-") :]
        if len(raw) == 40 and all(c in "0123456789abcdef" for c in raw):
            return ParsedChannel("owner-anon", raw)
        return None
    return None
