"""Permission classes of the bridge.

A permission answers four questions about a request and an exposed model; override only what your
rule is about (the defaults allow everything, like DRF's ``BasePermission``):

``has_permission(request, action, exposed)``
    May this request perform ``action`` (``read``/``create``/``update``/``delete``) on the model at all?
``scope_queryset(request, action, queryset, exposed)``
    Which rows may it ``action``? Return ``queryset`` filtered. Reads, updates and deletes only ever
    see rows of the scoped queryset; anything else is a 404.
``has_object_permission(request, action, obj, exposed)``
    May it ``action`` this one row? For ``create`` ``obj`` is the unsaved instance built from the
    request, so the check sees the related rows it would point to.
``get_fields(request, action, exposed)``
    Which fields may it read / set? ``None`` means "no opinion"; a collection narrows the exposed
    model's own field lists (results are intersected, never widened).

Reads honour ``has_object_permission`` too: a class that overrides it is asked about every row a
query, an ``include`` or a write's answer would return, and rows it refuses are left out, unless the
class declares ``scope_matches_object_permission = True`` (its ``scope_queryset`` keeps exactly the
rows its object check allows for ``read``, as ``IsOwner`` does), which lets the database do all the
work. See :meth:`BasePermission.reads_need_object_check`.

Classes (or instances) compose like DRF's: ``IsOwner & ~ReadOnly``, ``IsOwner | IsStaff``.

- ``A & B``: both must allow; scopes are applied one after the other; field lists intersect.
- ``A | B``: either may allow; the scope is the union of the scopes of the operands that allow the
  action; field lists of the allowing operands are united.
- ``~A``: inverts the answers and the scope (rows outside A's scope); it has no opinion on fields.

An exposed model without permission classes allows nothing (default deny).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from django.db.models import Model, QuerySet

from ..constants import BridgeAction
from ..owners import get_owner, owns

if TYPE_CHECKING:
    from .registry import ExposedModel

__all__ = [
    "BasePermission",
    "AllowAny",
    "DenyAll",
    "IsAuthenticated",
    "IsStaff",
    "ReadOnly",
    "OnlyActions",
    "IsOwner",
    "resolve_permission",
]


class _ComposableMeta(type):
    """Lets permission *classes* compose with & | ~ (``IsOwner | IsStaff``)."""

    def __and__(cls, other: Any) -> And:
        return And(resolve_permission(cls), resolve_permission(other))

    def __or__(cls, other: Any) -> Or:
        return Or(resolve_permission(cls), resolve_permission(other))

    def __invert__(cls) -> Not:
        return Not(resolve_permission(cls))

    def __rand__(cls, other: Any) -> And:
        return And(resolve_permission(other), resolve_permission(cls))

    def __ror__(cls, other: Any) -> Or:
        return Or(resolve_permission(other), resolve_permission(cls))


class BasePermission(metaclass=_ComposableMeta):
    """Base class of bridge permissions. Override the methods your rule is about."""

    #: Set to True when, for ``read``, ``scope_queryset`` keeps exactly the rows
    #: ``has_object_permission`` allows (both test the same rule). Reads then skip the per-row
    #: check. Leave it False when unsure: the check is then run on every row read. The declaration
    #: covers only the methods of the class that makes it (or its bases): a subclass overriding
    #: either method again must declare it again.
    scope_matches_object_permission: bool = False

    def _overrides_object_check(self) -> bool:
        return type(self).has_object_permission is not BasePermission.has_object_permission

    def _declares_matching_scope(self) -> bool:
        if not self.scope_matches_object_permission:
            return False
        if "scope_matches_object_permission" in vars(self):
            return True
        mro = type(self).__mro__

        def defined_at(attr: str) -> int:
            return next(i for i, cls in enumerate(mro) if attr in vars(cls))

        flag = defined_at("scope_matches_object_permission")
        return flag <= defined_at("has_object_permission") and flag <= defined_at("scope_queryset")

    def reads_need_object_check(self) -> bool:
        """Whether rows of the read scope must still pass ``has_object_permission`` one by one.

        True when the class overrides ``has_object_permission`` without declaring
        ``scope_matches_object_permission``. Override only in a composing permission."""
        return self._overrides_object_check() and not self._declares_matching_scope()

    def read_scope_is_exact(self) -> bool:
        """Whether the read scope is exactly the rows ``has_object_permission`` allows (what
        ``~`` needs to invert a scope without checking rows). Override only in a composing permission."""
        if self._declares_matching_scope():
            return True
        return not self._overrides_object_check() and type(self).scope_queryset is BasePermission.scope_queryset

    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        return True

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset

    def has_object_permission(self, request: Any, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return True

    def get_fields(self, request: Any, action: str, exposed: ExposedModel) -> Collection[str] | None:
        return None

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
        from django.utils.module_loading import import_string

        value = import_string(value)
    if isinstance(value, type) and issubclass(value, BasePermission):
        return value()
    if isinstance(value, BasePermission):
        return value
    raise TypeError(
        f"{value!r} is not a bridge permission: use a subclass (or instance) of "
        "django_ai.conversations.bridge.permissions.BasePermission."
    )


class And(BasePermission):
    def __init__(self, *operands: BasePermission):
        self.operands = operands

    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        return all(op.has_permission(request, action, exposed) for op in self.operands)

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        for op in self.operands:
            queryset = op.scope_queryset(request, action, queryset, exposed)
        return queryset

    def has_object_permission(self, request: Any, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return all(op.has_object_permission(request, action, obj, exposed) for op in self.operands)

    def reads_need_object_check(self) -> bool:
        # A row in the chained scope is in every operand's scope: each operand whose scope is
        # sound passes it, so only the others need asking.
        return any(op.reads_need_object_check() for op in self.operands)

    def read_scope_is_exact(self) -> bool:
        return all(op.read_scope_is_exact() for op in self.operands)

    def get_fields(self, request: Any, action: str, exposed: ExposedModel) -> Collection[str] | None:
        result: set[str] | None = None
        for op in self.operands:
            fields = op.get_fields(request, action, exposed)
            if fields is not None:
                result = set(fields) if result is None else result & set(fields)
        return result

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.operands)) + ")"


class Or(BasePermission):
    def __init__(self, *operands: BasePermission):
        self.operands = operands

    def _allowing(self, request: Any, action: str, exposed: ExposedModel) -> list[BasePermission]:
        return [op for op in self.operands if op.has_permission(request, action, exposed)]

    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        return bool(self._allowing(request, action, exposed))

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        scopes = [op.scope_queryset(request, action, queryset, exposed) for op in self._allowing(request, action, exposed)]
        if not scopes:
            return queryset.none()
        combined = scopes[0]
        for scope in scopes[1:]:
            combined = combined | scope
        return combined

    def has_object_permission(self, request: Any, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return any(
            op.has_object_permission(request, action, obj, exposed)
            for op in self._allowing(request, action, exposed)
        )

    def reads_need_object_check(self) -> bool:
        # A row of the united scope is in the scope of one allowing operand, which passes it when
        # that operand's scope is sound.
        return any(op.reads_need_object_check() for op in self.operands)

    def read_scope_is_exact(self) -> bool:
        return all(op.read_scope_is_exact() for op in self.operands)

    def get_fields(self, request: Any, action: str, exposed: ExposedModel) -> Collection[str] | None:
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

    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        return not self.operand.has_permission(request, action, exposed)

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        inner = self.operand.scope_queryset(request, action, exposed.get_base_queryset(), exposed)
        return queryset.exclude(pk__in=inner.values("pk"))

    def has_object_permission(self, request: Any, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return not self.operand.has_object_permission(request, action, obj, exposed)

    def reads_need_object_check(self) -> bool:
        # Rows outside the operand's scope may still pass its object check (and so fail this one)
        # unless the operand's scope is exactly what its check allows.
        return not self.operand.read_scope_is_exact()

    def read_scope_is_exact(self) -> bool:
        return self.operand.read_scope_is_exact()

    def __repr__(self) -> str:
        return f"~{self.operand!r}"


class AllowAny(BasePermission):
    """Allows everything; combine it with something that narrows, or use it for public data."""


class DenyAll(BasePermission):
    scope_matches_object_permission = True
    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        return False

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset.none()

    def has_object_permission(self, request: Any, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return False


class IsAuthenticated(BasePermission):
    """Only logged-in users (anonymous visitors are refused)."""

    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated)

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset if self.has_permission(request, action, exposed) else queryset.none()


class IsStaff(BasePermission):
    """Opt-in full access for active staff users: ``IsOwner | IsStaff``.

    Not part of any built-in registration: staff see only their own conversations unless a project
    adds this class (see docs/bridge.md)."""

    scope_matches_object_permission = True

    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset if self.has_permission(request, action, exposed) else queryset.none()

    def has_object_permission(self, request: Any, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return self.has_permission(request, action, exposed)


class ReadOnly(BasePermission):
    """Allows only ``read``."""

    scope_matches_object_permission = True

    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        return action == BridgeAction.READ

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset if action == BridgeAction.READ else queryset.none()

    def has_object_permission(self, request: Any, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return action == BridgeAction.READ


class OnlyActions(BasePermission):
    """Allows only the listed actions: ``OnlyActions("read", "update")``."""

    scope_matches_object_permission = True

    def __init__(self, *actions: str):
        self.actions = frozenset(str(BridgeAction(a)) for a in actions)

    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        return str(action) in self.actions

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset if str(action) in self.actions else queryset.none()

    def has_object_permission(self, request: Any, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return str(action) in self.actions

    def __repr__(self) -> str:
        return f"OnlyActions({', '.join(sorted(self.actions))})"


class IsOwner(BasePermission):
    """Rows owned by the request's owner: a user, or an anonymous visitor by their id.

    ``path`` leads from the exposed model to the row carrying ``user`` and ``anonymous_id``:
    ``""`` for sessions and files (they carry them), ``"session"`` for messages and widgets.
    Reads by a visitor without any id see nothing; writes need a known owner.
    """

    #: The scope filters on the same owner columns ``has_object_permission`` compares.
    scope_matches_object_permission = True

    def __init__(self, path: str = ""):
        self.path = path

    def _prefix(self) -> str:
        return f"{self.path}__" if self.path else ""

    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        return action == BridgeAction.READ or get_owner(request).is_known

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        owner = get_owner(request)
        prefix = self._prefix()
        if owner.user is not None:
            return queryset.filter(**{f"{prefix}user": owner.user.pk})
        if owner.anonymous_id:
            return queryset.filter(**{f"{prefix}user__isnull": True, f"{prefix}anonymous_id": owner.anonymous_id})
        return queryset.none()

    def owning_row(self, obj: Model) -> Any:
        target: Any = obj
        for part in self.path.split("__") if self.path else []:
            target = getattr(target, part, None)
            if target is None:
                return None
        return target

    def has_object_permission(self, request: Any, action: str, obj: Model, exposed: ExposedModel) -> bool:
        owner = get_owner(request)
        row = self.owning_row(obj)
        return row is not None and owner.is_known and owns(owner, row)

    def __repr__(self) -> str:
        return f"IsOwner(path={self.path!r})"
