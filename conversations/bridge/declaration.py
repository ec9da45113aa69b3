"""Declaration checks of an exposed model: a mistake in ``expose(...)`` stops start-up with an
ImproperlyConfigured that names the fix, never the first request."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db.models import ForeignObjectRel

from .errors import FieldNotAllowed
from .fields import resolve_path

__all__ = ["check_declaration"]


def check_declaration(exposed: Any) -> None:
    """Check the fields, orderings, relations and FilterSet ``exposed`` declares."""
    opts = exposed.model._meta
    label = f"Exposed model {exposed.name!r} ({opts.label})"
    for attr in ("read_fields", "create_fields", "update_fields"):
        for name in getattr(exposed, attr):
            try:
                field = opts.get_field(name)
            except FieldDoesNotExist as exc:
                raise ImproperlyConfigured(f"{label}: {attr} names {name!r}, which is not a field.") from exc
            if isinstance(field, ForeignObjectRel):
                raise ImproperlyConfigured(
                    f"{label}: {attr} names the reverse relation {name!r}; expose it from the other side."
                )
            if attr != "read_fields" and (not field.editable or field.primary_key):
                raise ImproperlyConfigured(f"{label}: {attr} names {name!r}, which is not editable.")
    if exposed.default_fields is not None and not set(exposed.default_fields) <= set(exposed.read_fields):
        raise ImproperlyConfigured(f"{label}: default_fields must be a subset of read_fields.")
    _check_orderings(exposed, label)
    for field_name in exposed.relations:
        try:
            field = opts.get_field(field_name)
        except FieldDoesNotExist as exc:
            raise ImproperlyConfigured(f"{label}: relation {field_name!r} is not a field.") from exc
        if not field.is_relation or isinstance(field, ForeignObjectRel):
            raise ImproperlyConfigured(f"{label}: relation {field_name!r} must be a forward relation field.")
    if exposed.filterset_class is not None:
        meta_model = getattr(getattr(exposed.filterset_class, "_meta", None), "model", None)
        if meta_model is not None and meta_model is not exposed.model:
            raise ImproperlyConfigured(f"{label}: filterset_class is for {meta_model._meta.label}.")


def _check_orderings(exposed: Any, label: str) -> None:
    for path in (*exposed.orderings, *(o.lstrip("-") for o in exposed.default_ordering)):
        try:
            resolved = resolve_path(exposed.model, path)
        except FieldNotAllowed as exc:
            raise ImproperlyConfigured(f"{label}: ordering {path!r} is not a field path.") from exc
        if resolved.many or (resolved.last.is_relation and not resolved.last.concrete):
            raise ImproperlyConfigured(f"{label}: ordering {path!r} crosses a to-many relation.")
    for o in exposed.default_ordering:
        if o.lstrip("-") not in exposed.orderings:
            raise ImproperlyConfigured(f"{label}: default_ordering {o!r} is not in orderings.")
