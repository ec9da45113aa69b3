"""The rules a user message's text follows, wherever it comes from (``send_message``, an edit)."""

from __future__ import annotations

from typing import Any

from .conf import ai_settings
from .exceptions import InvalidMessage

__all__ = ["clean_message_text"]


def clean_message_text(message: Any, *, field: str = "message") -> str:
    """``message`` if it can be a user message's text: a non-blank str of at most
    ``MAX_MESSAGE_LENGTH`` characters without NUL; else ``InvalidMessage`` naming ``field``."""
    if not isinstance(message, str):
        raise InvalidMessage(f"{field} must be a str, not {type(message).__name__}.", field=field)
    if not message.strip():
        raise InvalidMessage(f"{field} is empty.", field=field)
    limit = ai_settings.MAX_MESSAGE_LENGTH
    if len(message) > limit:
        raise InvalidMessage(f"{field} is longer than {limit} characters.", field=field)
    if "\x00" in message:
        # PostgreSQL cannot store NUL characters in text.
        raise InvalidMessage(f"{field} contains a NUL character.", field=field)
    return message
