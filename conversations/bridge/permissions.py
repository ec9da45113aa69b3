"""Permission classes of the bridge: who may read and change the rows of an exposed model.

The contract a class implements (``has_permission``, ``has_object_permission``,
``scope_queryset``, ``get_fields``, and ``scope_matches_object_permission`` for fast reads) is
:class:`BasePermission`'s, in :mod:`.permission_base` and re-exported here; docs/bridge.md,
"Permission classes", explains it. Classes (or instances) compose like DRF's:
``IsOwner & ~ReadOnly``, ``IsOwner | IsStaff``.

- ``A & B``: both must allow; scopes are applied one after the other; field lists intersect.
- ``A | B``: either may allow; the scope is the union of the scopes of the operands that allow the
  action; field lists of the allowing operands are united.
- ``~A``: inverts the answers and the scope (rows outside A's scope); it has no opinion on fields.

An exposed model without permission classes allows nothing (default deny).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db.models import Model, QuerySet

from ..constants import BridgeAction
from ..owners import get_owner, owns
from .permission_base import And, BasePermission, Not, Or, resolve_permission

if TYPE_CHECKING:
    from rest_framework.request import Request

    from .exposed import ExposedModel

__all__ = [
    "AllowAny",
    "And",
    "BasePermission",
    "DenyAll",
    "IsAuthenticated",
    "IsOwner",
    "IsStaff",
    "Not",
    "OnlyActions",
    "Or",
    "ReadOnly",
    "resolve_permission",
]


class AllowAny(BasePermission):
    """Allows everything; combine it with something that narrows, or use it for public data."""


class DenyAll(BasePermission):
    """Allows nothing (what an exposed model without permission classes does anyway)."""

    scope_matches_object_permission = True

    def has_permission(self, request: Request, action: str, exposed: ExposedModel) -> bool:
        return False

    def scope_queryset(self, request: Request, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset.none()

    def has_object_permission(self, request: Request, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return False


class IsAuthenticated(BasePermission):
    """Only logged-in users (anonymous visitors are refused)."""

    def has_permission(self, request: Request, action: str, exposed: ExposedModel) -> bool:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated)

    def scope_queryset(self, request: Request, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset if self.has_permission(request, action, exposed) else queryset.none()


class IsStaff(BasePermission):
    """Opt-in full access for active staff users: ``IsOwner | IsStaff``.

    Not part of any built-in registration: staff see only their own conversations unless a project
    adds this class (see docs/bridge.md)."""

    scope_matches_object_permission = True

    def has_permission(self, request: Request, action: str, exposed: ExposedModel) -> bool:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)

    def scope_queryset(self, request: Request, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset if self.has_permission(request, action, exposed) else queryset.none()

    def has_object_permission(self, request: Request, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return self.has_permission(request, action, exposed)


class ReadOnly(BasePermission):
    """Allows only ``read``."""

    scope_matches_object_permission = True

    def has_permission(self, request: Request, action: str, exposed: ExposedModel) -> bool:
        return action == BridgeAction.READ

    def scope_queryset(self, request: Request, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset if action == BridgeAction.READ else queryset.none()

    def has_object_permission(self, request: Request, action: str, obj: Model, exposed: ExposedModel) -> bool:
        return action == BridgeAction.READ


class OnlyActions(BasePermission):
    """Allows only the listed actions: ``OnlyActions("read", "update")``; a row action by its
    name (``OnlyActions("read", "approve")``, see ``bridge.exposed.row_action``)."""

    scope_matches_object_permission = True

    def __init__(self, *actions: str):
        for action in actions:
            if not isinstance(action, str) or not action.isidentifier():
                raise ValueError(
                    f"OnlyActions({action!r}): {action!r} is not a valid action: name a bridge action "
                    f"({', '.join(BridgeAction)}) or a row action."
                )
        self.actions = frozenset(str(a) for a in actions)

    def check_model(self, exposed: ExposedModel) -> None:
        known = {*BridgeAction, *exposed.row_actions}
        unknown = sorted(self.actions - known)
        if unknown:
            raise ImproperlyConfigured(
                f"{self!r} on exposed model {exposed.name!r}: {', '.join(map(repr, unknown))} is neither a bridge "
                f"action ({', '.join(BridgeAction)}) nor a row action of the model "
                f"({', '.join(exposed.row_actions) or 'it has none'})."
            )

    def has_permission(self, request: Request, action: str, exposed: ExposedModel) -> bool:
        return str(action) in self.actions

    def scope_queryset(self, request: Request, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        return queryset if str(action) in self.actions else queryset.none()

    def has_object_permission(self, request: Request, action: str, obj: Model, exposed: ExposedModel) -> bool:
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
            current = cast(type[Model], field.related_model)  # a foreign key's model is a class
        if issubclass(current, user_model):
            resolved = (True, tuple(hops))
        else:
            names = {f.name for f in current._meta.get_fields()}
            user_field = current._meta.get_field("user") if "user" in names else None
            if not (
                user_field is not None
                and user_field.many_to_one
                and isinstance(user_field.related_model, type)
                and issubclass(user_field.related_model, user_model)
                and "anonymous_id" in names
            ):
                where = (
                    f"the path {self.path!r} ends at {current._meta.label}"
                    if self.path
                    else f"{current._meta.label} itself"
                )
                raise self._improper(
                    model, f"{where}, which is neither the user model nor a model with `user` and `anonymous_id` fields"
                )
            resolved = (False, tuple(hops))
        self._resolved[model] = resolved
        return resolved

    def _improper(self, model: type[Model], reason: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(
            f"{self!r} cannot find who owns a {model._meta.label} row: {reason}. Give the path of "
            f'foreign keys from {model.__name__} to the user who owns a row (e.g. IsOwner(path="owner") '
            "for owner = models.ForeignKey(settings.AUTH_USER_MODEL, ...)), or to a model with `user` and "
            '`anonymous_id` fields such as a conversation session (IsOwner(path="session")).'
        )

    def _lookup(self, to_user: bool, suffix: str) -> str:
        if to_user:
            return self.path or "pk"
        return f"{self.path}__{suffix}" if self.path else suffix

    def has_permission(self, request: Request, action: str, exposed: ExposedModel) -> bool:
        return action == BridgeAction.READ or get_owner(request).is_known

    def scope_queryset(self, request: Request, action: str, queryset: QuerySet, exposed: ExposedModel) -> QuerySet:
        to_user, _ = self._resolve(queryset.model)
        owner = get_owner(request)
        if owner.user is not None:
            return queryset.filter(**{self._lookup(to_user, "user"): owner.user.pk})
        if owner.anonymous_id and not to_user:
            return queryset.filter(
                **{self._lookup(False, "user__isnull"): True, self._lookup(False, "anonymous_id"): owner.anonymous_id}
            )
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

    def has_object_permission(self, request: Request, action: str, obj: Model, exposed: ExposedModel) -> bool:
        owner = get_owner(request)
        to_user, _ = self._resolve(type(obj))
        if to_user:
            user_id = self.owning_user_id(obj)
            return owner.user is not None and user_id is not None and user_id == owner.user.pk
        row = self.owning_row(obj)
        return row is not None and owner.is_known and owns(owner, row)

    def __repr__(self) -> str:
        return f"IsOwner(path={self.path!r})"
