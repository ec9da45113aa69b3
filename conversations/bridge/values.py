"""Values a client sends, checked against the model field they are for (strict JSON types, range,
length) so that bad input is a 400 naming the field, never a database error. Filters
(:mod:`.query_parser`) and primary keys from URLs use them; writes are checked by the serializer
of :mod:`.serialization`, which accepts the same forms (docs/protocol.md, "Values").
"""

from __future__ import annotations

import datetime
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.utils import timezone

from .errors import BridgeError, InvalidQuery, ObjectNotFound

if TYPE_CHECKING:
    from .exposed import ExposedModel

__all__ = ["check_text", "clean_pk", "clean_value"]

#: An integer written as a JSON string (big integers travel so): an optional minus, 1-20 digits.
INTEGER_STRING = re.compile(r"-?[0-9]{1,20}")


def check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise InvalidQuery("Text values may not contain NUL characters.", field=where)


def clean_value(model_field: Any, value: Any, where: str, *, text_lookup: bool = False) -> Any:
    """One filter value, checked against ``model_field`` (strict JSON types, range, length)."""
    if value is None:
        raise InvalidQuery("null is only allowed with the isnull lookup.", field=where)
    if isinstance(value, (dict, list)):
        raise InvalidQuery("Expected a single value.", field=where)
    if isinstance(value, str):
        check_text(value, where)
    if text_lookup:
        if not isinstance(value, str):
            raise InvalidQuery("Expected a string.", field=where)
        if len(value) > 1000:
            raise InvalidQuery("The text is too long (1000 characters at most).", field=where)
        return value
    internal = model_field.get_internal_type()
    try:
        if isinstance(model_field, models.BooleanField):
            if not isinstance(value, bool):
                raise InvalidQuery("Expected true or false.", field=where)
            return value
        if isinstance(value, bool):
            raise InvalidQuery(f"Expected a {internal} value, not a boolean.", field=where)
        if isinstance(model_field, (models.IntegerField, models.AutoField)) or internal.endswith("AutoField"):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, str) and INTEGER_STRING.fullmatch(value):
                # The form big integers travel in (and a pk taken from a URL): "9007199254740993".
                value = int(value)
            if not isinstance(value, int):
                raise InvalidQuery("Expected an integer (a JSON number, or a string of digits).", field=where)
            model_field.run_validators(value)
            return value
        if isinstance(model_field, models.FloatField):
            if not isinstance(value, (int, float)):
                raise InvalidQuery("Expected a number.", field=where)
            return float(value)
        if isinstance(model_field, models.DecimalField):
            if not isinstance(value, (int, float, str)):
                raise InvalidQuery("Expected a number.", field=where)
            try:
                result = Decimal(str(value))
            except InvalidOperation as exc:
                raise InvalidQuery("Expected a number.", field=where) from exc
            if not result.is_finite():
                raise InvalidQuery("Expected a finite number.", field=where)
            return model_field.to_python(result)
        if isinstance(model_field, models.UUIDField):
            if not isinstance(value, str):
                raise InvalidQuery("Expected a UUID string.", field=where)
            try:
                return uuid.UUID(value)
            except ValueError as exc:
                raise InvalidQuery("Expected a UUID.", field=where) from exc
        if isinstance(model_field, models.DateTimeField):
            if not isinstance(value, str):
                raise InvalidQuery("Expected an ISO 8601 date-time string.", field=where)
            parsed = model_field.to_python(value)
            if parsed is None:
                raise InvalidQuery("Expected an ISO 8601 date-time.", field=where)
            if timezone.is_naive(parsed):
                parsed = timezone.make_aware(parsed, datetime.UTC)
            try:
                # The database compares in UTC: a value at the ends of the calendar may not fit.
                parsed.astimezone(datetime.UTC)
            except OverflowError as exc:
                raise InvalidQuery("The date-time is out of range.", field=where) from exc
            return parsed
        if isinstance(model_field, (models.DateField, models.TimeField, models.DurationField)):
            if not isinstance(value, str):
                raise InvalidQuery("Expected an ISO 8601 string.", field=where)
            parsed = model_field.to_python(value)
            if parsed is None:
                raise InvalidQuery("Expected an ISO 8601 value.", field=where)
            return parsed
        if isinstance(model_field, models.JSONField):
            return value
        # Text-like fields.
        if not isinstance(value, str):
            raise InvalidQuery("Expected a string.", field=where)
        max_length = getattr(model_field, "max_length", None)
        if max_length and len(value) > max_length:
            raise InvalidQuery(f"Longer than this field can be ({max_length}).", field=where)
        return value
    except DjangoValidationError as exc:
        raise InvalidQuery("; ".join(exc.messages) or "Invalid value.", field=where) from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidQuery("Invalid value.", field=where) from exc


def clean_pk(exposed: ExposedModel, value: Any) -> Any:
    """A primary key from a URL or body, or ObjectNotFound (a malformed id is just not found)."""
    pk_field = exposed.model._meta.pk
    try:
        if isinstance(pk_field, (models.IntegerField, models.AutoField)) and isinstance(value, str):
            if not value.isascii() or not value.isdigit() or len(value) > 19:
                raise ValueError(value)
            value = int(value)
        return clean_value(pk_field, value, "pk")
    except (BridgeError, ValueError) as exc:
        raise ObjectNotFound(f"No {exposed.name} with id {str(value)[:64]} exists.") from exc
