"""Versions of a conversation: regenerate a reply, edit and resend a message, switch versions.

STUB (issue 14 groundwork): the signatures below are the contract the bridge, the service and the
SDK are written against; the implementation replaces the bodies. docs/versions.md says what each
does; /work/briefs/design14.md is the full design.

The conversation is a tree of user messages: a user message's ``parent`` is the user message
before it on its path (filled in lazily by :func:`materialize_parents`), and the versions of a
message are the siblings that share its ``version_group``. The active path starts at the most
recently chosen root and follows, at each message, its most recently chosen child
(``selected_at``, else ``timestamp``). Rows on it have ``active=True``: the user messages and every
row whose ``reply_to`` is one of them (agent replies, tool steps, widget messages, notices); rows
with neither a path nor a ``reply_to`` (a greeting) are always active.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..models import ConversationMessage, ConversationSession

__all__ = ["PathChange", "activate_version", "edit", "materialize_parents", "recompute_path", "regenerate"]


@dataclass
class PathChange:
    """What a change of the active path did: the rows that left it and joined it (all kinds, for
    ``model_change``), the user messages whose unfinished turns were superseded, and the Context
    (stored JSON) the new path ends with (None: unknown, the session's is left as it is)."""

    deactivated: list[Any] = field(default_factory=list)
    activated: list[Any] = field(default_factory=list)
    superseded: list[Any] = field(default_factory=list)
    end_context: dict[str, Any] | None = None


def materialize_parents(session_id: Any) -> None:
    """Give every active user message of the session sent since the last version change its
    ``parent`` (the active user message before it, in timestamp order). Call it under the
    session's lock, before any change of the path."""
    raise NotImplementedError


def recompute_path(session: ConversationSession) -> PathChange:
    """Recompute the active path from ``selected_at`` and write the ``active`` flags that changed
    (user messages and their reply rows); unfinished turns of user messages that left the path are
    superseded (pending / awaiting approval: cancelled at once; running: asked to stop with reason
    ``"superseded"``). Inside the caller's transaction; events go on commit."""
    raise NotImplementedError


def regenerate(
    message_id: Any, *, session: ConversationSession | None = None, operation_id: str = ""
) -> ConversationMessage:
    """Answer a user message again (``message_id``: the user message, or any row replying to it)
    from the Context its turn started from: a new version of it (``revision="regenerate"``, same
    text and files) is created on the active path and its turn scheduled; the earlier reply and
    whatever followed it stay, as an inactive version. Applies the agent's concurrency policy.
    Ownership is the caller's business (the bridge's permission classes, the service's owner
    check). Returns the new user message (``pending``)."""
    raise NotImplementedError


def edit(
    message_id: Any,
    *,
    content: str,
    files: Iterable[Any] | None = None,
    session: ConversationSession | None = None,
    operation_id: str = "",
) -> ConversationMessage:
    """A new version of the user message ``message_id`` with ``content`` (and ``files``: None keeps
    the original's, a list replaces them), answered from the Context the original's turn started
    from. As :func:`regenerate` otherwise."""
    raise NotImplementedError


def activate_version(message_id: Any, *, session: ConversationSession | None = None) -> ConversationMessage:
    """Make the version ``message_id`` (a user message, or a row replying to one) the active one:
    the path follows it (and below it, the versions last chosen there), and the session's Context
    becomes the one that path ends with. Refused with ``TurnInProgress`` while a turn of the
    conversation runs. Returns the user message."""
    raise NotImplementedError
