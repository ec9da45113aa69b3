"""How the app's views read JSON bodies: :class:`StrictJSONParser`.

JSON bodies are UTF-8 (RFC 8259): a ``charset`` other than UTF-8 is refused with 415 rather than
decoded, and the nesting limit is measured on the decoded text, so no encoding can hide brackets
from it. Values no database can store (lone surrogates, numbers beyond a double) are a parse error
here rather than a 500 further down.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from typing import Any

from django.utils.http import parse_header_parameters
from rest_framework import exceptions as drf_exceptions
from rest_framework.parsers import JSONParser

from ..exceptions import RequestTooLarge

__all__ = ["MAX_JSON_DEPTH", "StrictJSONParser"]


class StrictJSONParser(JSONParser):
    """JSON in UTF-8 only, never more bytes than the view allows, never nested deeper than
    :data:`MAX_JSON_DEPTH`.

    The body is read with a cap (a missing or lying Content-Length cannot smuggle a bigger body),
    a ``charset`` other than UTF-8 is refused (415) instead of decoded, and the nesting is measured
    on the decoded text before the JSON parser, which recurses per level, sees it."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        parser_context = parser_context or {}
        _require_utf8(media_type)
        view = parser_context.get("view")
        limit = view.get_max_body_size() if view is not None and hasattr(view, "get_max_body_size") else None
        raw = b""
        if stream is not None:
            raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            if view is not None and hasattr(view, "get_body_too_large_error"):
                raise view.get_body_too_large_error()
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise drf_exceptions.ParseError(
                f"JSON parse error - the body is not valid UTF-8 (byte {exc.start})."
            ) from exc
        _reject_deep_nesting(text)
        try:
            # DRF decodes again, as UTF-8 whatever the request said (the charset was checked above).
            data = super().parse(io.BytesIO(raw), media_type, {**parser_context, "encoding": "utf-8"})
        except RecursionError as exc:
            raise drf_exceptions.ParseError("JSON parse error - the body is nested too deeply.") from exc
        _reject_unstorable(data)
        return data


#: Deepest array/object nesting a request body may have. The bridge's own bodies need a handful of
#: levels; the JSON parser recurses per level, and on some Python versions a deep enough body
#: overflows the C stack (a crash, not a RecursionError), so depth is checked before parsing.
MAX_JSON_DEPTH = 64

#: A JSON string (whose brackets do not nest anything) or one bracket. Unrolled and possessive,
#: and an unterminated string runs to the end of the body (the parser refuses it later): a string
#: that had to close would be tried again from each of its quotes, quadratic in a body such as
#: ``"\"\"\"...`` with no closing quote.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?|[\[\]{}]', re.DOTALL)


def _require_utf8(media_type: str | None) -> None:
    """415 for a declared charset other than UTF-8. JSON exchanged between systems is UTF-8
    (RFC 8259, section 8.1); decoding whatever a client names (cp037, UTF-16, codecs that are not
    text encodings at all) would only widen what a body can do."""
    _, params = parse_header_parameters(media_type or "")
    charset = params.get("charset")
    if charset is None or charset.strip().lower().replace("_", "-") in ("utf-8", "utf8"):
        return
    raise drf_exceptions.UnsupportedMediaType(
        media_type or "",
        detail=f"JSON bodies must be UTF-8; charset={charset[:40]!r} is not accepted. "
        "Send UTF-8, with 'charset=utf-8' or no charset.",
    )


def _reject_deep_nesting(text: str) -> None:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # too few brackets to nest that deep: no need to walk the body
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise drf_exceptions.ParseError(
                    f"JSON parse error - the body is nested more than {MAX_JSON_DEPTH} levels deep."
                )
        elif token in ("]", "}"):
            depth -= 1


def _reject_unstorable(data: Any) -> None:
    """Refuse values no database can store: lone UTF-16 surrogates such as ``"\\ud800"``, which
    JSON escapes allow, and numbers too large for a float (``1e400`` parses as infinity, which JSON
    columns refuse): a parse error here rather than a 500 further down."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise drf_exceptions.ParseError("JSON parse error - a number is too large (out of the range of a double).")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise drf_exceptions.ParseError(
                    "JSON parse error - text contains a lone surrogate escape (e.g. \\ud800), "
                    "which is not valid Unicode."
                ) from exc
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
