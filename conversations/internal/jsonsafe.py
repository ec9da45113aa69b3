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
    if _has_nul(value):
        return "it contains a NUL character"
    return None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False
