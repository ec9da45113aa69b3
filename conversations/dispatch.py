"""Scheduling turns: how a pending user message gets answered.

The foundation answers inline (``ConversationService.send_message``); the background task path
plugs in here (see the Tasks integration).
"""

from __future__ import annotations

from typing import Any


def schedule_session(session_id: Any) -> None:
    """Make sure the session's pending messages will be answered."""
    from .runner import process_pending

    process_pending(session_id)
