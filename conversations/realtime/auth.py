"""Who may subscribe to a channel. Used by ``realtime/auth/`` (Pusher) and ``realtime/events/`` (SSE).

- ``private-conversation-session-<uuid>``: the session must be readable by the request through the
  bridge's session permission classes (``bridge.catalog.get_exposed("session").get_queryset``);
  when the session model is not exposed, only its owner (user or anonymous visitor) may read it.
  A session that does not exist, or that its owner deleted, is 404; one the request may not read
  is 403.
- ``private-conversation-owner-...``: only the requester's own owner channel.
- Anything else, including malformed names: 403.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from ..bridge.catalog import get_exposed
from ..constants import BridgeAction, BuiltinModel, SessionStatus
from ..exceptions import ChannelForbidden, InvalidChannel, SessionNotFound
from ..models import ConversationSession
from ..owners import get_owner, owns
from .channels import ParsedChannel, owner_channel, parse_channel

if TYPE_CHECKING:
    from rest_framework.request import Request


__all__ = [
    "ChannelForbidden",
    "InvalidChannel",
    "authorize_channel",
    "requester_owner_channel",
]


def requester_owner_channel(request: Request) -> str | None:
    """The owner channel of the user or anonymous visitor making ``request`` (None if unknown)."""
    owner = get_owner(request)
    if owner.user is not None:
        return owner_channel(user_id=owner.user.pk)
    return owner_channel(anonymous_id=owner.anonymous_id)


def _exposed_session() -> Any:
    try:
        return get_exposed(BuiltinModel.SESSION)
    except LookupError:  # the project took the session model off the bridge: owners only
        return None


def _check_session(request: Request, session_id: str) -> None:
    exposed = _exposed_session()
    if exposed is not None:
        row = exposed.get_queryset(request, BridgeAction.READ).filter(pk=session_id).first()
        if row is not None and exposed.has_object_permission(request, BridgeAction.READ, row):
            return
        # A deleted conversation is missing, even to its owner (the bridge leaves it out too).
        if ConversationSession.objects.filter(pk=session_id).exclude(status=SessionStatus.DELETED).exists():
            raise ChannelForbidden("You may not read this conversation.")
        raise SessionNotFound()
    session = (
        ConversationSession.objects.filter(pk=session_id)
        .exclude(status=SessionStatus.DELETED)
        .only("pk", "user_id", "anonymous_id")
        .first()
    )
    if session is None:
        raise SessionNotFound()
    if not owns(get_owner(request), session):
        raise ChannelForbidden("You may not read this conversation.")


def authorize_channel(request: Request, channel_name: Any) -> ParsedChannel:
    """Raise unless ``request`` may subscribe to ``channel_name``; returns the parsed name.

    Raises :class:`InvalidChannel` (403) for names that are not ours or malformed,
    :class:`~django_ai.conversations.exceptions.SessionNotFound` (404) for unknown sessions and
    :class:`ChannelForbidden` (403) for channels of someone else.
    """
    parsed = parse_channel(channel_name)
    if parsed is None:
        raise InvalidChannel()
    if parsed.kind == "session":
        _check_session(request, parsed.value)
        return parsed
    own = requester_owner_channel(request)
    if own is None or not hmac.compare_digest(own.encode(), str(channel_name).encode()):
        raise ChannelForbidden("You may only subscribe to your own owner channel.")
    return parsed
