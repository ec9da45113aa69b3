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

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
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

    def check_model(self, exposed: ExposedModel) -> None:
        """Called when a model is exposed with this permission: raise ImproperlyConfigured naming
        the fix when the permission cannot work on ``exposed.model`` (a field path it needs that the
        model lacks), so the mistake shows at start-up, not at the first request."""

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

    def check_model(self, exposed: ExposedModel) -> None:
        for op in self.operands:
            op.check_model(exposed)

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

    def check_model(self, exposed: ExposedModel) -> None:
        for op in self.operands:
            op.check_model(exposed)

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

    def check_model(self, exposed: ExposedModel) -> None:
        self.operand.check_model(exposed)

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

    ``path`` leads, through foreign keys (``__`` between hops), from the exposed model to either

    - the user who owns the row: ``IsOwner(path="owner")`` for ``owner = ForeignKey(User)``
      (``path=""`` on the user model itself: each user reads their own row). Anonymous visitors
      own no such rows;
    - or a row carrying ``user`` and ``anonymous_id``, as conversations do: ``""`` for sessions
      and files, ``"session"`` for messages, widgets and models of yours that point to a session.

    The path is checked when the model is exposed (ImproperlyConfigured naming the fix). Reads by a
    visitor without any id see nothing; writes need a known owner.
    """

    #: The scope filters on the same owner columns ``has_object_permission`` compares.
    scope_matches_object_permission = True

    def __init__(self, path: str = ""):
        self.path = path
        self._resolved: dict[type[Model], tuple[bool, tuple[Any, ...]]] = {}

    def check_model(self, exposed: ExposedModel) -> None:
        self._resolve(exposed.model)

    def _resolve(self, model: type[Model]) -> tuple[bool, tuple[Any, ...]]:
        """``(to_user, hops)``: whether the path ends at the user model, and its fields."""
        cached = self._resolved.get(model)
        if cached is not None:
            return cached
        user_model = get_user_model()
        hops: list[Any] = []
        current = model
        for part in self.path.split("__") if self.path else []:
            try:
                field = current._meta.get_field(part)
            except FieldDoesNotExist:
                raise self._improper(model, f"{current._meta.label} has no field {part!r}") from None
            if not (field.concrete and (field.many_to_one or field.one_to_one)):
                raise self._improper(model, f"{current._meta.label}.{part} is not a foreign key or one-to-one field")
            hops.append(field)
            current = field.related_model
        if issubclass(current, user_model):
            resolved = (True, tuple(hops))
        else:
            names = {f.name for f in current._meta.get_fields()}
            user_field = current._meta.get_field("user") if "user" in names else None
            if not (
                user_field is not None
                and user_field.many_to_one
                and issubclass(user_field.related_model, user_model)
                and "anonymous_id" in names
            ):
                where = f"the path {self.path!r} ends at {current._meta.label}" if self.path else f"{current._meta.label} itself"
                raise self._improper(model, f"{where}, which is neither the user model nor a model with `user` and `anonymous_id` fields")
            resolved = (False, tuple(hops))
        self._resolved[model] = resolved
        return resolved

    def _improper(self, model: type[Model], reason: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(
            f"{self!r} cannot find who owns a {model._meta.label} row: {reason}. Give the path of "
            f"foreign keys from {model.__name__} to the user who owns a row (e.g. IsOwner(path=\"owner\") "
            "for owner = models.ForeignKey(settings.AUTH_USER_MODEL, ...)), or to a model with `user` and "
            "`anonymous_id` fields such as a conversation session (IsOwner(path=\"session\"))."
        )

    def _lookup(self, to_user: bool, suffix: str) -> str:
        if to_user:
            return self.path or "pk"
        return f"{self.path}__{suffix}" if self.path else suffix

    def has_permission(self, request: Any, action: str, exposed: ExposedModel) -> bool:
        return action == BridgeAction.READ or get_owner(request).is_known

    def scope_queryset(self, request: Any, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        to_user, _ = self._resolve(queryset.model)
        owner = get_owner(request)
        if owner.user is not None:
            return queryset.filter(**{self._lookup(to_user, "user"): owner.user.pk})
        if owner.anonymous_id and not to_user:
            return queryset.filter(**{self._lookup(False, "user__isnull"): True, self._lookup(False, "anonymous_id"): owner.anonymous_id})
        return queryset.none()

    def owning_row(self, obj: Model) -> Any:
        """The row carrying ``user`` and ``anonymous_id`` that ``obj`` belongs to (None when the
        path ends at the user model: see :meth:`owning_user_id`)."""
        to_user, hops = self._resolve(type(obj))
        if to_user:
            return None
        target: Any = obj
        for field in hops:
            target = getattr(target, field.name, None)
            if target is None:
                return None
        return target

    def owning_user_id(self, obj: Model) -> Any:
        """The pk of the user who owns ``obj`` when the path ends at the user model."""
        _, hops = self._resolve(type(obj))
        if not hops:
            return obj.pk
        target: Any = obj
        for field in hops[:-1]:
            target = getattr(target, field.name, None)
            if target is None:
                return None
        return getattr(target, hops[-1].attname, None)

    def has_object_permission(self, request: Any, action: str, obj: Model, exposed: ExposedModel) -> bool:
        owner = get_owner(request)
        to_user, _ = self._resolve(type(obj))
        if to_user:
            user_id = self.owning_user_id(obj)
            return owner.user is not None and user_id is not None and user_id == owner.user.pk
        row = self.owning_row(obj)
        return row is not None and owner.is_known and owns(owner, row)

    def __repr__(self) -> str:
        return f"IsOwner(path={self.path!r})"
