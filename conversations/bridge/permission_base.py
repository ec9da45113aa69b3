"""The contract of a bridge permission (:class:`BasePermission`) and how permissions compose
(``&``, ``|``, ``~``). The permission classes themselves are in :mod:`.permissions`, which
re-exports this module's public names.

A permission answers, for a request and an :class:`~.exposed.ExposedModel`:

``has_permission(request, action, exposed)``
    May it perform ``action`` (``read``/``create``/``update``/``delete``) on the model at all?
``has_object_permission(request, action, obj, exposed)``
    May it ``action`` this one row? For ``create`` ``obj`` is the unsaved instance built from the
    request. Reads ask it too, for every row they return (see below).
``scope_queryset(request, action, queryset, exposed)``
    Which rows may it ``action``? Return ``queryset`` filtered. Rows outside the scope are never
    read, changed or deleted (a 404, like an id that does not exist).
``get_fields(request, action, exposed)``
    Which fields may it read / set? ``None`` means "no opinion"; a collection narrows the exposed
    model's own field lists (results are intersected, never widened).

The defaults allow everything, as DRF's do. A row is readable when it is in the read scope *and*
passes ``has_object_permission`` for ``read``. Asking the object check about every row read costs
a Python call per row, so a class whose ``scope_queryset`` keeps exactly the rows its
``has_object_permission`` allows for ``read`` says so with ``scope_matches_object_permission =
True``, and reads leave the work to the database. The attribute means what it says on every class:
a subclass that redefines either method gets False again unless its own body declares it
(:meth:`BasePermission.__init_subclass__`), so a stricter check is never skipped by inheritance.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from django.db.models import Model, QuerySet
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from rest_framework.request import Request

    from .exposed import ExposedModel

__all__ = ["And", "BasePermission", "Not", "Or", "resolve_permission"]

#: Redefining one of these in a class body withdraws an inherited ``scope_matches_object_permission``.
_RULE_METHODS = ("has_object_permission", "scope_queryset")


class _ComposableMeta(type):
    """Lets permission *classes* compose with & | ~ (``IsOwner | IsStaff``)."""

    def __and__(cls, other: Any) -> And:
        return And(resolve_permission(cls), resolve_permission(other))

    def __or__(cls, other: Any) -> Or:  # type: ignore[override]  # type's | builds unions of types
        return Or(resolve_permission(cls), resolve_permission(other))

    def __invert__(cls) -> Not:
        return Not(resolve_permission(cls))

    def __rand__(cls, other: Any) -> And:
        return And(resolve_permission(other), resolve_permission(cls))

    def __ror__(cls, other: Any) -> Or:  # type: ignore[override]
        return Or(resolve_permission(other), resolve_permission(cls))


class BasePermission(metaclass=_ComposableMeta):
    """Base class of bridge permissions. Override the methods your rule is about."""

    #: True when, for ``read``, ``scope_queryset`` keeps exactly the rows ``has_object_permission``
    #: allows (both test the same rule): reads then skip the per-row check. Leave it False when
    #: unsure: the check then runs on every row read.
    scope_matches_object_permission: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        body = vars(cls)
        if "scope_matches_object_permission" not in body and any(name in body for name in _RULE_METHODS):
            # The inherited declaration was about the base's rule, not this class's new one.
            cls.scope_matches_object_permission = False

    def has_permission(self, request: Request, action: str, exposed: ExposedModel) -> bool:
        return True

    def scope_queryset(self, request: Request, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset

    def has_object_permission(self, request: Request, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return True

    def get_fields(self, request: Request, action: str, exposed: ExposedModel) -> Collection[str] | None:
        return None

    def check_model(self, exposed: ExposedModel) -> None:
        """Called when a model is exposed with this permission: raise ImproperlyConfigured naming
        the fix when the permission cannot work on ``exposed.model`` (a field path it needs that the
        model lacks), so the mistake shows at start-up, not at the first request."""

    # What reads must do, derived from the declaration; composing permissions answer for their
    # operands. Not part of the contract a permission class implements.

    def reads_need_object_check(self) -> bool:
        """Whether rows of the read scope must still pass ``has_object_permission`` one by one."""
        return self._has_object_rule() and not self.scope_matches_object_permission

    def read_scope_is_exact(self) -> bool:
        """Whether the read scope is exactly the rows ``has_object_permission`` allows (what
        ``~`` needs to invert a scope without checking rows)."""
        if self.scope_matches_object_permission:
            return True
        return not self._has_object_rule() and type(self).scope_queryset is BasePermission.scope_queryset

    def _has_object_rule(self) -> bool:
        return type(self).has_object_permission is not BasePermission.has_object_permission

    def __and__(self, other: Any) -> And:
        return And(self, resolve_permission(other))

    def __or__(self, other: Any) -> Or:
        return Or(self, resolve_permission(other))

    def __invert__(self) -> Not:
        return Not(self)

    def __rand__(self, other: Any) -> And:
        return And(resolve_permission(other), self)

    def __ror__(self, other: Any) -> Or:
        return Or(resolve_permission(other), self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def resolve_permission(value: Any) -> BasePermission:
    """A permission instance from a class, an instance or a dotted path."""
    if isinstance(value, str):
        value = import_string(value)
    if isinstance(value, type) and issubclass(value, BasePermission):
        return value()
    if isinstance(value, BasePermission):
        return value
    raise TypeError(
        f"{value!r} is not a bridge permission: use a subclass (or instance) of "
        "django_ai.conversations.bridge.permissions.BasePermission."
    )


class _Composite(BasePermission):
    """A permission made of others (``&``, ``|``): each operand checks the model it guards."""

    def __init__(self, *operands: BasePermission):
        self.operands = operands

    def check_model(self, exposed: ExposedModel) -> None:
        for op in self.operands:
            op.check_model(exposed)


class And(_Composite):
    def has_permission(self, request: Request, action: str, exposed: ExposedModel) -> bool:
        return all(op.has_permission(request, action, exposed) for op in self.operands)

    def scope_queryset(self, request: Request, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        for op in self.operands:
            queryset = op.scope_queryset(request, action, queryset, exposed)
        return queryset

    def has_object_permission(self, request: Request, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return all(op.has_object_permission(request, action, obj, exposed) for op in self.operands)

    def reads_need_object_check(self) -> bool:
        # A row in the chained scope is in every operand's scope: each operand whose scope is
        # sound passes it, so only the others need asking.
        return any(op.reads_need_object_check() for op in self.operands)

    def read_scope_is_exact(self) -> bool:
        return all(op.read_scope_is_exact() for op in self.operands)

    def get_fields(self, request: Request, action: str, exposed: ExposedModel) -> Collection[str] | None:
        result: set[str] | None = None
        for op in self.operands:
            fields = op.get_fields(request, action, exposed)
            if fields is not None:
                result = set(fields) if result is None else result & set(fields)
        return result

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.operands)) + ")"


class Or(_Composite):
    def _allowing(self, request: Request, action: str, exposed: ExposedModel) -> list[BasePermission]:
        return [op for op in self.operands if op.has_permission(request, action, exposed)]

    def has_permission(self, request: Request, action: str, exposed: ExposedModel) -> bool:
        return bool(self._allowing(request, action, exposed))

    def scope_queryset(self, request: Request, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        scopes = [
            op.scope_queryset(request, action, queryset, exposed) for op in self._allowing(request, action, exposed)
        ]
        if not scopes:
            return queryset.none()
        combined = scopes[0]
        for scope in scopes[1:]:
            combined = combined | scope
        return combined

    def has_object_permission(self, request: Request, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return any(
            op.has_object_permission(request, action, obj, exposed) for op in self._allowing(request, action, exposed)
        )

    def reads_need_object_check(self) -> bool:
        # A row of the united scope is in the scope of one allowing operand, which passes it when
        # that operand's scope is sound.
        return any(op.reads_need_object_check() for op in self.operands)

    def read_scope_is_exact(self) -> bool:
        return all(op.read_scope_is_exact() for op in self.operands)

    def get_fields(self, request: Request, action: str, exposed: ExposedModel) -> Collection[str] | None:
        result: set[str] = set()
        for op in self._allowing(request, action, exposed):
            fields = op.get_fields(request, action, exposed)
            if fields is None:
                return None
            result |= set(fields)
        return result

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.operands)) + ")"


class Not(BasePermission):
    def __init__(self, operand: BasePermission):
        self.operand = operand

    def check_model(self, exposed: ExposedModel) -> None:
        self.operand.check_model(exposed)

    def has_permission(self, request: Request, action: str, exposed: ExposedModel) -> bool:
        return not self.operand.has_permission(request, action, exposed)

    def scope_queryset(self, request: Request, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        inner = self.operand.scope_queryset(request, action, exposed.get_base_queryset(), exposed)
        return queryset.exclude(pk__in=inner.values("pk"))

    def has_object_permission(self, request: Request, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return not self.operand.has_object_permission(request, action, obj, exposed)

    def reads_need_object_check(self) -> bool:
        # Rows outside the operand's scope may still pass its object check (and so fail this one)
        # unless the operand's scope is exactly what its check allows.
        return not self.operand.read_scope_is_exact()

    def read_scope_is_exact(self) -> bool:
        return self.operand.read_scope_is_exact()

    def __repr__(self) -> str:
        return f"~{self.operand!r}"
