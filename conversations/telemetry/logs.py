"""The ids a log line of a turn carries (docs/observability.md, "Structured logging").

:func:`log_context` sets ids (``conversation_id``, ``message_id``, ``file_id``) for the code that
runs within it: the runner enters it around a turn, the extraction task around a file, and the
agent's helper thread runs in a copy of the turn's context. :class:`TurnContextFilter`, attached
to a handler, puts the ids on every record that handler sees (an empty string for an id not set),
so a format string or :class:`JsonLinesFormatter` can name them. Only the standard library.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

__all__ = ["FIELDS", "JsonLinesFormatter", "TurnContextFilter", "current_ids", "log_context", "new_error_id"]

#: The ids every record gets from :class:`TurnContextFilter`.
FIELDS = ("conversation_id", "message_id", "file_id")

_NONE: Mapping[str, str] = MappingProxyType({})
_ids: ContextVar[Mapping[str, str]] = ContextVar("django_ai_log_ids", default=_NONE)


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Within the block the ids given (None values are ignored) join those of an enclosing block;
    the enclosing ones are back when it ends."""
    added = {name: str(value) for name, value in ids.items() if value is not None}
    token = _ids.set(MappingProxyType({**_ids.get(), **added}))
    try:
        yield
    finally:
        _ids.reset(token)


def current_ids() -> dict[str, str]:
    """The ids set by the enclosing :func:`log_context` blocks."""
    return dict(_ids.get())


class TurnContextFilter(logging.Filter):
    """Sets ``conversation_id``, ``message_id`` and ``file_id`` (and any other id given to
    :func:`log_context`) on each record: the current ones, or "" when none is set. A value the
    record already has (``extra={...}``) is kept. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _ids.get()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, ids.get(name, ""))
        for name, value in ids.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the ids of
    :class:`TurnContextFilter`, ``error_id`` when the record has one, the traceback as
    ``exc_info`` text and the stack as ``stack_info`` text when there is one. Non-ASCII text is
    written as is (UTF-8), escaped only when it could not be encoded (a lone surrogate)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*FIELDS, "error_id"):
            value = getattr(record, name, "")
            if value:
                line[name] = str(value)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        text = json.dumps(line, ensure_ascii=False)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                # A lone surrogate (e.g. an undecodable file name): escaped, or the stream refuses the line.
                text = json.dumps(line)
        return text


def new_error_id() -> str:
    """A short random id for one failure: logged with it (``extra={"error_id": ...}``) and stored
    where an operator finds it (the failed turn's system notice), to find the log line again."""
    return secrets.token_hex(6)
