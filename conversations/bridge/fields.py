"""Model field paths: resolve ``session__status`` to model fields, describe fields for ``schema/``.

Private to the bridge.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models

from .errors import FieldNotAllowed

__all__ = ["ResolvedPath", "resolve_path", "field_type", "describe_field", "pk_string"]


@dataclass(frozen=True)
class ResolvedPath:
    path: str
    fields: tuple[Any, ...]
    #: Whether the path crosses a to-many relation (rows may repeat: the query needs DISTINCT).
    many: bool

    @property
    def last(self) -> Any:
        return self.fields[-1]

    @property
    def value_field(self) -> Any:
        """The field whose values a filter on this path compares with (a relation's target pk)."""
        last = self.last
        if last.is_relation:
            return last.target_field if hasattr(last, "target_field") and not last.many_to_many else last.related_model._meta.pk
        return last


def resolve_path(model: type[models.Model], path: str) -> ResolvedPath:
    """Resolve a ``__``-separated path of fields (no lookups). Raises FieldNotAllowed."""
    if not isinstance(path, str) or not path or len(path) > 200:
        raise FieldNotAllowed(f"{path!r} is not a field path.", field=str(path)[:200])
    current = model
    fields: list[Any] = []
    many = False
    parts = path.split("__")
    for index, part in enumerate(parts):
        try:
            field = current._meta.get_field(part)
        except FieldDoesNotExist as exc:
            raise FieldNotAllowed(f"Unknown field {path!r}.", field=path) from exc
        fields.append(field)
        if field.is_relation:
            if field.many_to_many or field.one_to_many:
                many = True
            if index < len(parts) - 1:
                current = field.related_model
        elif index < len(parts) - 1:
            raise FieldNotAllowed(f"Unknown field {path!r}.", field=path)
    return ResolvedPath(path, tuple(fields), many)


def field_type(field: Any) -> str:
    """The JSON-level type name of a model field, for ``schema/``."""
    if field.many_to_many or field.one_to_many:
        return "relations"
    if field.is_relation:
        return "relation"
    internal = field.get_internal_type()
    return {
        "UUIDField": "uuid",
        "CharField": "string",
        "TextField": "string",
        "SlugField": "string",
        "EmailField": "string",
        "URLField": "string",
        "FileField": "string",
        "ImageField": "string",
        "GenericIPAddressField": "string",
        "IntegerField": "integer",
        "BigIntegerField": "integer",
        "SmallIntegerField": "integer",
        "PositiveIntegerField": "integer",
        "PositiveBigIntegerField": "integer",
        "PositiveSmallIntegerField": "integer",
        "AutoField": "integer",
        "BigAutoField": "integer",
        "SmallAutoField": "integer",
        "FloatField": "number",
        "DecimalField": "decimal",
        "BooleanField": "boolean",
        "NullBooleanField": "boolean",
        "DateTimeField": "datetime",
        "DateField": "date",
        "TimeField": "time",
        "DurationField": "duration",
        "JSONField": "json",
    }.get(internal, "string")


def describe_field(field: Any, related_name: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {"type": field_type(field), "null": bool(getattr(field, "null", False))}
    if field.is_relation:
        info["related"] = related_name
    max_length = getattr(field, "max_length", None)
    if max_length and not field.is_relation and not isinstance(field, models.UUIDField):
        info["max_length"] = max_length
    choices = getattr(field, "choices", None)
    if choices:
        info["choices"] = [value for value, _label in field.flatchoices]
    if getattr(field, "primary_key", False):
        info["primary_key"] = True
    return info


def pk_string(value: Any) -> Any:
    """How a primary key travels: UUIDs as strings, integers as numbers."""
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
