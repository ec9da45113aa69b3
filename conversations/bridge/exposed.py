"""An exposed model: one model the bridge serves, and the rules that guard it.

:class:`ExposedModel` is a chain of small steps a subclass overrides (``get_base_queryset``,
``get_create_defaults``, ``validate_write``, ``perform_create`` ...), as a DRF generic view is.
Besides its fields, filters and permissions it owns what is particular to its model: its
throttles (per action) and who hears of its changes (``get_change_channels``). The models the
bridge serves by name are in :mod:`.catalog`, which sets :attr:`ExposedModel.catalog` on
registration so that relations can find the exposed model at their other end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import django_filters
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models import QuerySet

from ..conf import ai_settings
from ..constants import BridgeAction, ErrorCode, ModelOperation
from ..owners import get_owner
from ..realtime.channels import owner_channel, session_channel
from .changes import conversation_ids, send_model_change
from .declaration import check_declaration
from .errors import InvalidQuery, ObjectNotFound, OperationNotAllowed
from .fields import describe_field
from .permission_base import And, BasePermission, resolve_permission
from .query_parser import Query, filter_specs
from .serialization import split_write_data, validate_write_data
from .values import clean_pk

if TYPE_CHECKING:
    from rest_framework.request import Request


__all__ = ["ExposedModel", "Hook", "RowAction", "row_action"]

#: A hook: ``hook(operation=..., instance=..., request=..., phase="before" | "after")``. "before"
#: runs inside the write's transaction before the row is saved or deleted (raise a
#: ConversationError to refuse); "after" runs inside it once the row is written.
Hook = Callable[..., None]

ACTIONS = tuple(BridgeAction)

#: The attribute :func:`row_action` sets on the methods it marks.
_ROW_ACTION_ATTR = "bridge_row_action"


@dataclass(frozen=True)
class RowAction:
    """An action on one row, served at ``POST models/<name>/<pk>/<action>/`` (see :func:`row_action`)."""

    name: str
    method_name: str
    body_keys: frozenset[str]


def row_action(
    name: str | None = None, *, body_keys: Iterable[str] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method of an :class:`ExposedModel` subclass as a row action, as DRF's ``@action``
    marks a viewset's: ``POST models/<model>/<pk>/<name>/`` (``name`` defaults to the method's).

    The method is called as ``method(request, instance, data)`` with the row the request may act
    on and the JSON object it sent, inside a transaction, and returns the row to answer with (200,
    serialized as a read of it; its ``model_change`` goes out as for an update through the
    bridge). Before it runs the bridge checks, in this order: the model-level permission for the
    action (its name is the ``action`` the permission classes are asked about: list it in
    ``OnlyActions``), that ``data`` has only ``body_keys``, and the object permission, through
    :meth:`ExposedModel.get_object` (404 for a row the caller may not act on). The method
    validates the values (a ``ConversationError`` with ``field``) and does the work; its
    throttles are ``throttle_classes[name]``. Like every write it needs the CSRF token when a
    cookie identifies the caller.
    """

    def mark(method: Callable[..., Any]) -> Callable[..., Any]:
        action_name = name or method.__name__
        if not action_name.isidentifier() or action_name in ACTIONS:
            raise ImproperlyConfigured(
                f"Row action {action_name!r}: the name must be an identifier other than {', '.join(ACTIONS)}."
            )
        setattr(method, _ROW_ACTION_ATTR, RowAction(action_name, method.__name__, frozenset(body_keys)))
        return method

    return mark


class ExposedModel:
    """One model served by the bridge and the rules that guard it.

    Every attribute can be given as a keyword argument or set on a subclass. Override
    ``get_base_queryset`` to change what the bridge starts from (e.g. ``select_related``),
    ``get_create_defaults`` / ``validate_write`` / ``perform_create`` / ``perform_update`` /
    ``perform_delete`` to change how writes happen, ``get_change_channels`` to choose who hears
    of a change. Permission decisions belong in permission classes, not in these methods.
    """

    model: type[models.Model]
    name: str = ""
    permission_classes: Sequence[Any] = ()
    read_fields: Sequence[str] = ()
    #: Fields returned when a query names none (default: all ``read_fields``).
    default_fields: Sequence[str] | None = None
    create_fields: Sequence[str] = ()
    update_fields: Sequence[str] = ()
    filterset_class: type[django_filters.FilterSet] | None = None
    orderings: Sequence[str] = ()
    default_ordering: Sequence[str] = ()
    #: Relations a query may ``include``: field name -> exposed model name.
    relations: Mapping[str, str] = {}
    default_limit: int | None = None
    max_limit: int | None = None
    hooks: Sequence[Hook] = ()
    #: DRF throttle classes per action (``{"create": [MyThrottle]}``): a request that performs the
    #: action passes these instead of DRF's ``DEFAULT_THROTTLE_CLASSES``.
    throttle_classes: Mapping[str, Sequence[type]] = {}
    #: Whether every save and delete of the model announces itself (``model_change`` from Django's
    #: model signals), whoever writes: the bridge, the admin, agent code, a task. The built-in
    #: models do. When False only writes made through the bridge do; call
    #: :meth:`announce_change` for rows your code changes.
    announce_all_saves: bool = False
    #: The catalog this model is registered in (set by ``catalog.register``); relations look up
    #: the exposed model at their other end there. None until registered.
    catalog: Any = None
    #: The row actions (:func:`row_action` methods) by name; set from the class when constructed.
    row_actions: Mapping[str, RowAction] = {}

    def __init__(
        self,
        *,
        model: type[models.Model] | None = None,
        name: str | None = None,
        permission_classes: Iterable[Any] | None = None,
        read_fields: Iterable[str] | None = None,
        default_fields: Iterable[str] | None = None,
        create_fields: Iterable[str] | None = None,
        update_fields: Iterable[str] | None = None,
        filterset_class: type[django_filters.FilterSet] | None = None,
        orderings: Iterable[str] | None = None,
        default_ordering: Iterable[str] | None = None,
        relations: Mapping[str, str] | None = None,
        default_limit: int | None = None,
        max_limit: int | None = None,
        hooks: Iterable[Hook] | None = None,
        throttle_classes: Mapping[str, Iterable[type]] | None = None,
        announce_all_saves: bool | None = None,
    ):
        if model is not None:
            self.model = model
        if not getattr(self, "model", None):
            raise ImproperlyConfigured(f"{type(self).__name__} needs a model.")
        self.name = str(name or self.name or self.model._meta.model_name)
        sequences = {
            "permission_classes": permission_classes,
            "read_fields": read_fields,
            "default_fields": default_fields,
            "create_fields": create_fields,
            "update_fields": update_fields,
            "orderings": orderings,
            "default_ordering": default_ordering,
            "hooks": hooks,
        }
        for attr, value in sequences.items():
            if value is not None:
                setattr(self, attr, tuple(value))
        if filterset_class is not None:
            self.filterset_class = filterset_class
        if relations is not None:
            self.relations = dict(relations)
        if default_limit is not None:
            self.default_limit = default_limit
        if max_limit is not None:
            self.max_limit = max_limit
        if throttle_classes is not None:
            self.throttle_classes = {str(a): tuple(c) for a, c in throttle_classes.items()}
        self.row_actions = self.get_row_actions()
        for action in self.throttle_classes:
            if action not in ACTIONS and action not in self.row_actions:
                raise ImproperlyConfigured(
                    f"{type(self).__name__}.throttle_classes names {action!r}, which is neither a bridge action "
                    f"({', '.join(ACTIONS)}) nor a row action of this model ({', '.join(self.row_actions) or 'none'})."
                )
        if announce_all_saves is not None:
            self.announce_all_saves = announce_all_saves
        self._permissions = [resolve_permission(p) for p in self.permission_classes]
        self.check()
        for permission in self._permissions:
            permission.check_model(self)

    def check(self) -> None:
        """Declaration checks: ImproperlyConfigured at registration, naming the fix."""
        pk_name = self.model._meta.pk.name
        if pk_name not in self.read_fields:
            self.read_fields = (pk_name, *self.read_fields)
        check_declaration(self)

    # Permissions.

    def get_permissions(self) -> list[BasePermission]:
        """The model's permission instances plus ``DJANGO_AI['BRIDGE_PERMISSION_CLASSES']``."""
        extra = [resolve_permission(p) for p in (ai_settings.BRIDGE_PERMISSION_CLASSES or [])]
        return [*extra, *self._permissions]

    def _combined(self) -> BasePermission | None:
        permissions = self.get_permissions()
        if not self._permissions:
            return None  # default deny: no classes of its own, no access
        return And(*permissions)

    def has_permission(self, request: Request, action: str) -> bool:
        """Model-level: may ``request`` perform ``action`` on this model at all?"""
        combined = self._combined()
        return combined is not None and combined.has_permission(request, action, self)

    def has_object_permission(self, request: Request, action: str, obj: models.Model) -> bool:
        """Object-level: may ``request`` perform ``action`` on ``obj``? (Includes the model level.)"""
        combined = self._combined()
        return (
            combined is not None
            and combined.has_permission(request, action, self)
            and combined.has_object_permission(request, action, obj, self)
        )

    def get_read_check(self, request: Request) -> Callable[[models.Model], bool] | None:
        """The object check every row read must pass, or None when ``scope_queryset`` alone
        decides reads (each permission's scope matches its object check, as the built-ins'
        do). Rows failing it are left out of query answers, ``include`` and write answers."""
        combined = self._combined()
        if combined is None or not combined.reads_need_object_check():
            return None

        def check(obj: models.Model) -> bool:
            return combined.has_object_permission(request, BridgeAction.READ, obj, self)

        return check

    def get_base_queryset(self) -> QuerySet:
        """Everything, before permissions. Override to add ``select_related`` or a soft-delete filter."""
        return self.model._default_manager.all()

    def get_queryset(self, request: Request, action: str = BridgeAction.READ) -> QuerySet:
        """The rows ``request`` may ``action`` (permission-scoped)."""
        queryset = self.get_base_queryset()
        combined = self._combined()
        if combined is None or not combined.has_permission(request, action, self):
            return queryset.none()
        return combined.scope_queryset(request, action, queryset, self)

    def filter_queryset(self, request: Request, queryset: QuerySet, query: Query) -> QuerySet:
        """The rows a query answers from: ``queryset`` is the read scope with the query's own
        filters applied. Override to add a default scope that depends on what the query asks
        (the built-in ``message`` answers the active path unless the query names a version
        field). Only queries pass here: reads by pk (``get_object``, row actions, includes)
        do not."""
        return queryset

    def get_object(self, request: Request, action: str, pk: Any) -> models.Model:
        """The row ``pk`` if ``request`` may ``action`` it, else ObjectNotFound (never 403, so ids
        of other owners' rows cannot be probed)."""
        value = clean_pk(self, pk)
        queryset = self.get_queryset(request, action)
        obj = queryset.filter(pk=value).first()
        if obj is None or not self.has_object_permission(request, action, obj):
            raise ObjectNotFound(f"No {self.name} with id {pk!s:.64} exists.")
        return obj

    def get_fields(self, request: Request, action: str) -> list[str]:
        """Fields ``request`` may read (``read``) or set (``create`` / ``update``)."""
        declared = {
            BridgeAction.READ: self.read_fields,
            BridgeAction.CREATE: self.create_fields,
            BridgeAction.UPDATE: self.update_fields,
        }.get(BridgeAction(action), ())
        combined = self._combined()
        narrowed = combined.get_fields(request, action, self) if combined is not None else ()
        if narrowed is None:
            fields = list(declared)
        else:
            allowed = set(narrowed)
            fields = [f for f in declared if f in allowed]
        if action == BridgeAction.READ:
            pk_name = self.model._meta.pk.name
            if pk_name not in fields:
                fields.insert(0, pk_name)
        return fields

    def allowed_actions(self, request: Request) -> list[str]:
        """Actions the request may perform at the model level (for ``schema/``)."""
        allowed = []
        for action in ACTIONS:
            if action == BridgeAction.CREATE and not self.create_fields:
                continue
            if action == BridgeAction.UPDATE and not self.update_fields:
                continue
            if self.has_permission(request, action):
                allowed.append(str(action))
        return allowed

    # Row actions: POST models/<name>/<pk>/<action>/ (row_action marks the methods).

    @classmethod
    def get_row_actions(cls) -> dict[str, RowAction]:
        """The row actions of this class (methods marked with :func:`row_action`), by name."""
        found: dict[str, RowAction] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                action = getattr(value, _ROW_ACTION_ATTR, None)
                if isinstance(action, RowAction):
                    found = {n: a for n, a in found.items() if a.method_name != attr}
                    found[action.name] = action
        return found

    def run_row_action(self, request: Request, name: str, pk: Any, data: Any) -> models.Model:
        """Run the row action ``name`` on the row ``pk``; the row to answer with (see :func:`row_action`)."""
        action = self.row_actions.get(name)
        if action is None:
            raise ObjectNotFound(f"{self.name} rows have no action {name!s:.64}.")
        if not self.has_permission(request, name):
            raise OperationNotAllowed(f"You may not {name} {self.name} rows.")
        if not isinstance(data, dict):
            raise InvalidQuery("The request body must be a JSON object.", code=ErrorCode.INVALID_BODY)
        for key in data:
            if key not in action.body_keys:
                raise InvalidQuery(f"Unknown key {str(key)[:64]!r}.", code=ErrorCode.UNKNOWN_KEY, field=str(key)[:64])
        with transaction.atomic():
            instance = self.get_object(request, name, pk)
            result: models.Model = getattr(self, action.method_name)(request, instance, data)
            # Clients' live querysets hear of it as of any bridge write (update of the row).
            self._announce_write(request, ModelOperation.UPDATE, result, result.pk)
        return result

    def get_throttles(self, action: str) -> list[Any] | None:
        """The throttles a request performing ``action`` passes (instances), or None for the
        view's own (DRF's ``DEFAULT_THROTTLE_CLASSES``). Override for throttles that depend on
        more than the action."""
        classes = self.throttle_classes.get(str(action))
        return None if classes is None else [throttle() for throttle in classes]

    # Relations: the exposed models at the other end, found in the catalog this one is in.

    def get_exposed_for(self, model: type[models.Model]) -> ExposedModel | None:
        """The exposed model serving ``model`` in this one's catalog (None: the bridge does not
        serve it, so clients can neither read nor set rows of it through a relation)."""
        return self.catalog.for_model(model) if self.catalog is not None else None

    def get_related(self, field_name: str) -> ExposedModel | None:
        """The exposed model a relation field leads to: the one ``relations`` names, else the one
        serving the related model."""
        name = self.relations.get(field_name)
        if name is None:
            related_model = self.model._meta.get_field(field_name).related_model
            return self.get_exposed_for(related_model) if related_model is not None else None
        return self.catalog.get(name) if self.catalog is not None else None

    # Limits.

    def get_default_limit(self) -> int:
        return min(self.default_limit or ai_settings.QUERY_DEFAULT_LIMIT, self.get_max_limit())

    def get_max_limit(self) -> int:
        return min(self.max_limit or ai_settings.QUERY_MAX_LIMIT, ai_settings.QUERY_MAX_LIMIT)

    # Writes. The views call create_or_replay / update / delete; each runs in one transaction.

    def get_create_defaults(self, request: Request, data: dict[str, Any]) -> dict[str, Any]:
        """Values set on a new row whatever the client sent (e.g. the owner, a forced type)."""
        return {}

    def validate_write(
        self, request: Request, action: str, data: dict[str, Any], instance: models.Model | None
    ) -> dict[str, Any]:
        """Check and adjust validated ``data`` before it is applied; raise a ConversationError
        (with ``field``) to refuse. ``instance`` is None for creates."""
        return data

    def perform_create(self, request: Request, instance: models.Model, many: dict[str, Any]) -> None:
        instance.save()
        for name, values in many.items():
            getattr(instance, name).set(values)

    def perform_update(
        self, request: Request, instance: models.Model, changed: list[str], many: dict[str, Any]
    ) -> None:
        update_fields = list(changed)
        if any(f.name == "updated_at" for f in instance._meta.concrete_fields):
            update_fields.append("updated_at")
        if changed:
            instance.save(update_fields=update_fields)
        for name, values in many.items():
            getattr(instance, name).set(values)

    def perform_delete(self, request: Request, instance: models.Model) -> None:
        instance.delete()

    def run_hooks(self, *, operation: str, instance: models.Model, request: Request, phase: str) -> None:
        for hook in self.hooks:
            hook(operation=operation, instance=instance, request=request, phase=phase)

    def create_or_replay(self, request: Request, data: Any) -> tuple[models.Model, bool]:
        """``(row, replayed)``: the new row, or, when this request repeats an earlier create
        (a retry after a lost answer), the row that one stored and True. The default never
        replays; the built-in message model does, on the request's ``X-Operation-Id``."""
        return self.create(request, data), False

    def create(self, request: Request, data: Any) -> models.Model:
        self._require(request, BridgeAction.CREATE)
        validated = validate_write_data(self, request, BridgeAction.CREATE, data, instance=None)
        validated = self.validate_write(request, BridgeAction.CREATE, validated, None)
        plain, many = split_write_data(self, validated)
        plain.update(self.get_create_defaults(request, validated))
        instance = self.model(**plain)
        if not self.has_object_permission(request, BridgeAction.CREATE, instance):
            raise OperationNotAllowed(f"You may not create this {self.name}.")
        with transaction.atomic():
            self.run_hooks(operation=BridgeAction.CREATE, instance=instance, request=request, phase="before")
            self.perform_create(request, instance, many)
            self.run_hooks(operation=BridgeAction.CREATE, instance=instance, request=request, phase="after")
            self._announce_write(request, ModelOperation.CREATE, instance, instance.pk)
        return instance

    def update(self, request: Request, pk: Any, data: Any) -> models.Model:
        self._require(request, BridgeAction.UPDATE)
        with transaction.atomic():
            instance = self.get_object(request, BridgeAction.UPDATE, pk)
            validated = validate_write_data(self, request, BridgeAction.UPDATE, data, instance=instance)
            validated = self.validate_write(request, BridgeAction.UPDATE, validated, instance)
            plain, many = split_write_data(self, validated)
            for name, value in plain.items():
                setattr(instance, name, value)
            if not self.has_object_permission(request, BridgeAction.UPDATE, instance):
                raise OperationNotAllowed(f"You may not change this {self.name} that way.")
            self.run_hooks(operation=BridgeAction.UPDATE, instance=instance, request=request, phase="before")
            # Plain values are the model's own fields (relations to many are in ``many``).
            changed = [cast(models.Field, self.model._meta.get_field(n)).attname for n in plain]
            self.perform_update(request, instance, changed, many)
            self.run_hooks(operation=BridgeAction.UPDATE, instance=instance, request=request, phase="after")
            self._announce_write(request, ModelOperation.UPDATE, instance, instance.pk)
        return instance

    def delete(self, request: Request, pk: Any) -> None:
        self._require(request, BridgeAction.DELETE)
        with transaction.atomic():
            instance = self.get_object(request, BridgeAction.DELETE, pk)
            pk_value = instance.pk  # Django clears it when the row is deleted
            self.run_hooks(operation=BridgeAction.DELETE, instance=instance, request=request, phase="before")
            self.perform_delete(request, instance)
            self.run_hooks(operation=BridgeAction.DELETE, instance=instance, request=request, phase="after")
            self._announce_write(request, ModelOperation.DELETE, instance, pk_value)

    def _require(self, request: Request, action: str) -> None:
        if (action == BridgeAction.CREATE and not self.create_fields) or (
            action == BridgeAction.UPDATE and not self.update_fields
        ):
            raise OperationNotAllowed(
                f"{self.name} rows cannot be {action}d through the bridge.", code=ErrorCode.OPERATION_NOT_ALLOWED
            )
        if not self.has_permission(request, action):
            raise OperationNotAllowed(f"You may not {action} {self.name} rows.")

    # model_change: what live querysets of this model listen for.

    def get_change_channels(self, request: Request | None, instance: models.Model) -> list[str]:
        """The channels the ``model_change`` of a change to ``instance`` goes to. ``request`` is
        the bridge request that wrote it, or None (a save announced from model signals, or by
        code of yours).

        By default: the writer's owner channel, and the channel of each conversation the row
        points to (a foreign key to ``ConversationSession``), where the SDK's ``live()`` listens
        when its queryset filters on ``session``. Override to reach others too (rows a staff
        member changes for their owner) or to send none."""
        channels: list[str | None] = []
        if request is not None:
            owner = get_owner(request)
            channels.append(
                owner_channel(
                    user_id=owner.user.pk if owner.user is not None else None, anonymous_id=owner.anonymous_id or ""
                )
            )
        channels += [session_channel(session_id) for session_id in conversation_ids(instance)]
        return [c for c in dict.fromkeys(channels) if c]

    def announce_change(self, request: Request | None, operation: str, instance: models.Model, pk: Any) -> None:
        """Send ``model_change`` (this model's name, ``pk``, the request's ``X-Operation-Id``) on
        :meth:`get_change_channels` once the current transaction commits. Call it for rows your
        code changes when the model does not ``announce_all_saves``."""
        send_model_change(
            model=self.name,
            operation=operation,
            pk=pk,
            channels=self.get_change_channels(request, instance),
            session_id=next(iter(conversation_ids(instance)), None),
        )

    def _announce_write(self, request: Request | None, operation: str, instance: models.Model, pk: Any) -> None:
        # A model that announces all saves heard of this one from its signal already.
        if not self.announce_all_saves:
            self.announce_change(request, operation, instance, pk)

    # schema/

    def describe(self, request: Request) -> dict[str, Any]:
        """This model's part of ``schema/`` for ``request``."""
        read = self.get_fields(request, BridgeAction.READ)
        fields = {}
        for name in read:
            field = self.model._meta.get_field(name)
            related = None
            if field.is_relation and self.catalog is not None:
                related = self.catalog.name_for_model(field.related_model)
            fields[name] = describe_field(field, related)
        return {
            "primary_key": self.model._meta.pk.name,
            "fields": fields,
            "default_fields": list(self.default_fields) if self.default_fields is not None else read,
            "create_fields": self.get_fields(request, BridgeAction.CREATE),
            "update_fields": self.get_fields(request, BridgeAction.UPDATE),
            "filters": {name: sorted(lookups) for name, lookups in filter_specs(self).items()},
            "orderings": list(self.orderings),
            "default_ordering": list(self.default_ordering),
            "relations": dict(self.relations),
            "default_limit": self.get_default_limit(),
            "max_limit": self.get_max_limit(),
            "actions": self.allowed_actions(request),
            "row_actions": [name for name in self.row_actions if self.has_permission(request, name)],
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} for {self.model._meta.label}>"
