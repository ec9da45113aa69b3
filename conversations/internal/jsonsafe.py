"""What a JSONField can store on every supported database."""

from __future__ import annotations

import json
from typing import Any


def json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored in a JSONField everywhere, or None when it can.

    Refused: values ``json`` cannot encode, NaN and infinities, and NUL characters (PostgreSQL's
    jsonb rejects them).
    """
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"it is not JSON-serialisable ({exc})"
    except RecursionError:
        return "it is nested too deeply"
    if _has_nul(value):
        return "it contains a NUL character"
    return None


def _has_nul(value: Any) -> bool:
    # A loop, not recursion: values may come from request bodies.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False
