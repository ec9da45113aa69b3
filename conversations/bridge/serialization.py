"""Rows out (reads) and validated data in (writes).

Reads: :class:`RowWriter` turns a model instance into a plain dict of the fields the caller may
read: each value as JSON carries it (:func:`~.fields.wire_converter`: decimals, big integers,
durations and UUIDs as strings; the JSON renderer formats dates), foreign keys as the related pk,
many-to-many fields as a list of pks. It never calls ``str(obj)``.

Writes: :func:`validate_write_data` refuses keys the caller may not set, then validates the rest
with a Django REST framework ``ModelSerializer`` built for the request, whose relation fields only
accept rows the caller may read (so a foreign key to another owner's row is "does not exist").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from django.db import models
from rest_framework import serializers

from ..api.parsing import MAX_JSON_DEPTH
from ..constants import BridgeAction, ErrorCode
from .errors import FieldNotAllowed, InvalidQuery, MultipleErrors
from .fields import wire_converter

if TYPE_CHECKING:
    from rest_framework.request import Request

    from .exposed import ExposedModel

__all__ = ["RowWriter", "split_write_data", "validate_write_data"]

#: Most values a list field (e.g. a message's ``files``) may carry in one write.
MAX_LIST_VALUES = 20


class RowWriter:
    """Serializes instances of one exposed model for one set of fields (build once per query)."""

    def __init__(
        self,
        exposed: ExposedModel,
        fields: Sequence[str],
        *,
        related_checks: Mapping[str, Callable[[models.Model], bool]] | None = None,
    ):
        self.fields = list(fields)
        opts = exposed.model._meta
        checks = related_checks or {}
        self._getters: list[tuple[str, Callable[[models.Model], Any]]] = []
        for name in self.fields:
            field = opts.get_field(name)
            self._getters.append((name, self._getter(field, checks.get(name))))

    @staticmethod
    def _getter(field: Any, check: Callable[[models.Model], bool] | None = None) -> Callable[[models.Model], Any]:
        convert = wire_converter(field)
        if field.many_to_many:
            name = field.name

            def many(obj: models.Model) -> Any:
                # ``check``: the related model's read check (its rows the caller may not read are left out).
                return [convert(row.pk) for row in getattr(obj, name).all() if check is None or check(row)]

            return many
        attname = field.attname
        return lambda obj: convert(getattr(obj, attname))

    def __call__(self, obj: models.Model) -> dict[str, Any]:
        return {name: getter(obj) for name, getter in self._getters}


def concrete_attnames(exposed: ExposedModel, fields: Sequence[str]) -> list[str]:
    """The columns to load for ``fields`` (for ``QuerySet.only``)."""
    opts = exposed.model._meta
    names = [opts.pk.attname]
    for name in fields:
        field = opts.get_field(name)
        if field.concrete and not field.many_to_many and field.name not in names:
            names.append(field.name)
    return names


def _relation_target(
    exposed: ExposedModel, request: Request, model: type[models.Model]
) -> tuple[Any, Callable[[models.Model], bool] | None]:
    """(the rows a relation field may point to, the read check they must pass too)."""
    related = exposed.get_exposed_for(model)
    if related is None:
        # A relation to a model the bridge does not serve cannot be set by clients.
        return model._default_manager.none(), None
    return related.get_queryset(request, BridgeAction.READ), related.get_read_check(request)


class _ReadableRelatedField(serializers.PrimaryKeyRelatedField):
    """A primary key of a row the caller may read: in the related model's read scope and, when
    its permissions need it, passing their object check (else "does not exist", like any id)."""

    def __init__(self, *, read_check: Callable[[models.Model], bool] | None = None, **kwargs: Any):
        self.read_check = read_check
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        obj = super().to_internal_value(data)
        if self.read_check is not None and not self.read_check(obj):
            self.fail("does_not_exist", pk_value=data)
        return obj


class _StrictUUIDField(serializers.UUIDField):
    """A UUID sent as a JSON string: DRF's UUIDField would read ``5`` (or ``true``) as
    ``00000000-0000-0000-0000-000000000005`` and answer that such a row does not exist."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class _StrictDurationField(serializers.DurationField):
    """A duration sent as a string (ISO 8601 as the bridge sends it, ``P1DT02H00M00S``, or
    Django's ``1 02:00:00``): DRF's DurationField would read the number ``5`` as five seconds,
    a form reads and filters never use."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid", format="ISO 8601 (P1DT02H00M00S) or [DD] [HH:[MM:]]ss[.uuuuuu]")
        return super().to_internal_value(data)


#: DRF serializer fields replaced by stricter ones for every exposed model's writes.
_STRICT_FIELDS: dict[type, type] = {
    serializers.UUIDField: _StrictUUIDField,
    serializers.DurationField: _StrictDurationField,
}


class _TextOnly:
    """Text fields take JSON strings only: DRF's ``CharField`` would store ``5`` as ``"5"``."""

    default_error_messages = {"invalid": "Not a valid string."}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


_TEXT_ONLY_CLASSES: dict[type, type] = {}


def _text_only(field_class: type) -> type:
    found = _TEXT_ONLY_CLASSES.get(field_class)
    if found is None:
        found = type(f"TextOnly{field_class.__name__}", (_TextOnly, field_class), {})
        _TEXT_ONLY_CLASSES[field_class] = found
    return found


class _BridgeModelSerializer(serializers.ModelSerializer):
    """The base of the write serializers: every text column of every exposed model refuses
    non-string values (numbers, booleans) with a 400 on that field, and so do UUID and duration
    columns (a number is no UUID, and no duration either: they travel as strings)."""

    def build_standard_field(self, field_name: str, model_field: Any) -> tuple[type, dict[str, Any]]:
        field_class, kwargs = super().build_standard_field(field_name, model_field)
        field_class = _STRICT_FIELDS.get(field_class, field_class)
        text_column = isinstance(model_field, (models.CharField, models.TextField))
        if issubclass(field_class, serializers.CharField) or (
            text_column and issubclass(field_class, serializers.ChoiceField)
        ):
            field_class = _text_only(field_class)
        return field_class, kwargs


def _serializer_class(
    exposed: ExposedModel, request: Request, fields: Sequence[str]
) -> type[serializers.ModelSerializer]:
    opts = exposed.model._meta
    attrs: dict[str, Any] = {}
    for name in fields:
        # The declaration refuses reverse relations: every exposed field is a model field.
        field = cast(models.Field, opts.get_field(name))
        if not field.is_relation:
            continue
        related_model = cast(type[models.Model], field.related_model)  # a relation's model is a class
        related_pk = related_model._meta.pk
        pk_field = _StrictUUIDField() if isinstance(related_pk, models.UUIDField) else None
        queryset, read_check = _relation_target(exposed, request, related_model)
        if field.many_to_many:
            attrs[name] = _ReadableRelatedField(
                queryset=queryset,
                read_check=read_check,
                many=True,
                required=False,
                pk_field=pk_field,
            )
        else:
            attrs[name] = _ReadableRelatedField(
                queryset=queryset,
                read_check=read_check,
                required=not (field.null or field.blank or field.has_default()),
                allow_null=field.null,
                pk_field=pk_field,
            )
    # Text is stored as sent: DRF would strip leading/trailing whitespace (indented code, poems).
    extra_kwargs = {
        name: {"trim_whitespace": False}
        for name in fields
        if isinstance(model_field := opts.get_field(name), (models.CharField, models.TextField))
        and not model_field.choices
        and name not in attrs
    }
    meta = type("Meta", (), {"model": exposed.model, "fields": list(fields), "extra_kwargs": extra_kwargs})
    attrs["Meta"] = meta
    return type(f"{exposed.model.__name__}BridgeSerializer", (_BridgeModelSerializer,), attrs)


def _reject_unstorable_value(value: Any, path: str, errors: list[Any]) -> None:
    """One error for a value that holds a NUL character or nests deeper than the parser allows.

    A loop, not recursion: the depth is the client's to choose, and the serializer's JSON fields
    (``json.dumps``) recurse per level, so depth is bounded here too, whoever built the data."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                errors.append(
                    FieldNotAllowed("Text may not contain NUL characters.", code=ErrorCode.INVALID, field=path)
                )
                return
        elif isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                errors.append(
                    FieldNotAllowed(
                        f"Values may nest at most {MAX_JSON_DEPTH} levels deep.", code=ErrorCode.INVALID, field=path
                    )
                )
                return
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def validate_write_data(
    exposed: ExposedModel, request: Request, action: str, data: Any, *, instance: models.Model | None
) -> dict[str, Any]:
    """Validated values for a create (``instance`` None) or a partial update."""
    if not isinstance(data, dict):
        raise InvalidQuery("The request body must be a JSON object of field values.", code=ErrorCode.INVALID_BODY)
    allowed = exposed.get_fields(request, action)
    errors: list[Any] = []
    for key in data:
        if key not in allowed:
            errors.append(FieldNotAllowed(f"{key!s:.64} cannot be set on {action}.", field=str(key)[:64]))
    if errors:
        raise MultipleErrors(errors)
    for key, value in data.items():
        _reject_unstorable_value(value, key, errors)
        if isinstance(value, list) and len(value) > MAX_LIST_VALUES:
            errors.append(
                FieldNotAllowed(f"At most {MAX_LIST_VALUES} values.", code=ErrorCode.TOO_MANY_VALUES, field=key)
            )
    if errors:
        raise MultipleErrors(errors)
    if action == BridgeAction.UPDATE and not data:
        raise InvalidQuery("Nothing to change: send the fields to update.", code=ErrorCode.EMPTY_UPDATE)
    serializer_cls = _serializer_class(exposed, request, allowed if action == BridgeAction.CREATE else list(data))
    serializer = serializer_cls(instance=instance, data=data, partial=action == BridgeAction.UPDATE)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def split_write_data(exposed: ExposedModel, validated: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values for the row itself, many-to-many values set after save)."""
    opts = exposed.model._meta
    plain: dict[str, Any] = {}
    many: dict[str, Any] = {}
    for name, value in validated.items():
        if opts.get_field(name).many_to_many:
            many[name] = value
        else:
            plain[name] = value
    return plain, many
