"""Model field paths: resolve ``session__status`` to model fields, describe fields for ``schema/``,
and say how each field's values travel in JSON.

Values a JSON number cannot carry exactly travel as strings (docs/protocol.md, "Values"):
decimals as DRF sends them (``COERCE_DECIMAL_TO_STRING``: ``"99.00"``, never the float ``99.0``);
integers beyond +-(2**53 - 1), where a JavaScript number stops being exact (a big
``BigIntegerField`` value, a snowflake id), as a string of digits rather than a number the client
rounds into another value, or another row's key; smaller ones stay numbers (a file's ``size``);
durations as ISO 8601 (``P1DT02H00M00S``), which Django parses back; UUIDs as strings. Filters
and writes accept the same strings (see ``query.clean_value``).

Private to the bridge.
"""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.fields.files import FieldFile
from django.utils.duration import duration_iso_string

from .errors import FieldNotAllowed

__all__ = ["ResolvedPath", "describe_field", "field_type", "resolve_path", "wire_converter", "wire_pk"]

#: Largest integer a JSON reader that uses doubles (JavaScript) holds exactly.
MAX_SAFE_INTEGER = 2**53 - 1


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
            return (
                last.target_field
                if hasattr(last, "target_field") and not last.many_to_many
                else last.related_model._meta.pk
            )
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
                current = cast(type[models.Model], field.related_model)  # a relation's model is a class
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


def _same(value: Any) -> Any:
    return value


def _safe_integer(value: Any) -> Any:
    if isinstance(value, int) and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return str(value)
    return value


def _string(value: Any) -> Any:
    return None if value is None else str(value)


def _duration(value: Any) -> Any:
    return None if value is None else duration_iso_string(value)


def _file_name(value: Any) -> Any:
    if isinstance(value, FieldFile):
        return value.name or None
    return value


def _decimal_converter(field: models.DecimalField) -> Callable[[Any], Any]:
    places = field.decimal_places
    exponent = decimal.Decimal(1).scaleb(-places) if places is not None else None

    def convert(value: Any) -> Any:
        if value is None:
            return None
        value = decimal.Decimal(value)
        if exponent is not None and value.is_finite():
            try:
                # As DRF renders it: always the field's decimal places ("99.00").
                value = value.quantize(
                    exponent, context=decimal.Context(prec=max(28, len(value.as_tuple().digits) + places))
                )
            except decimal.InvalidOperation:
                pass
        return format(value, "f")

    return convert


def wire_converter(field: Any) -> Callable[[Any], Any]:
    """The function turning a value of ``field`` (a relation: of the field it points to) into
    what JSON carries for it."""
    if field.is_relation:
        target = getattr(field, "target_field", None) if not field.many_to_many else None
        return wire_converter(target if target is not None else field.related_model._meta.pk)
    if isinstance(field, models.DecimalField):
        return _decimal_converter(field)
    if isinstance(field, (models.IntegerField, models.AutoField)):
        return _safe_integer
    if isinstance(field, models.DurationField):
        return _duration
    if isinstance(field, models.UUIDField):
        return _string
    if isinstance(field, models.FileField):
        return _file_name
    return _same


def wire_pk(model: type[models.Model], value: Any) -> Any:
    """How a primary key of ``model`` travels (``data`` of answers, relation values)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    return wire_converter(model._meta.pk)(value)
