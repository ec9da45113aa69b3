"""Exposed models: which models the bridge serves, and under which rules.

Exposing a model is one registration::

    from django_ai.conversations.bridge import ExposedModel, expose
    from django_ai.conversations.bridge.permissions import IsOwner

    expose(
        Note,
        name="note",
        permission_classes=[IsOwner(path="session")],
        read_fields=["id", "session", "text", "created_at"],
        create_fields=["session", "text"],
        update_fields=["text"],
        filterset_class=NoteFilterSet,            # a django-filter FilterSet: paths + lookups
        orderings=["created_at", "id"],
        relations={"session": "session"},         # includable relations -> exposed model name
    )

or subclass :class:`ExposedModel` and override its ``get_*`` / ``perform_*`` steps, then
``bridge_registry.register(MyExposed())``. The built-in names ``session``, ``message``, ``widget``
and ``file`` are registered on first use (see :mod:`~django_ai.conversations.bridge.builtins`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models import ForeignObjectRel, QuerySet

from ..conf import ai_settings
from ..constants import BridgeAction, EventName, ModelOperation
from ..models import ConversationSession
from ..owners import get_owner
from ..realtime import publish
from ..realtime.channels import owner_channel, session_channel
from ..realtime.sync import current_operation_id
from .errors import FieldNotAllowed, ObjectNotFound, OperationNotAllowed, UnknownModel
from .fields import describe_field, resolve_path
from .permissions import And, BasePermission, resolve_permission

__all__ = ["ExposedModel", "BridgeRegistry", "bridge_registry", "expose", "get_exposed", "Hook"]

#: A hook: ``hook(operation=..., instance=..., request=..., phase="before" | "after")``. "before"
#: runs inside the write's transaction before the row is saved or deleted (raise a
#: ConversationError to refuse); "after" runs inside it once the row is written.
Hook = Callable[..., None]

ACTIONS = tuple(BridgeAction)


class ExposedModel:
    """One model served by the bridge and the rules that guard it.

    Every attribute can be given as a keyword argument or set on a subclass. Override
    ``get_base_queryset`` to change what the bridge starts from (e.g. ``select_related``),
    ``get_create_defaults`` / ``validate_write`` / ``perform_create`` / ``perform_update`` /
    ``perform_delete`` to change how writes happen. Permission decisions belong in permission
    classes, not in these methods.
    """

    model: type[models.Model]
    name: str = ""
    permission_classes: Sequence[Any] = ()
    read_fields: Sequence[str] = ()
    #: Fields returned when a query names none (default: all ``read_fields``).
    default_fields: Sequence[str] | None = None
    create_fields: Sequence[str] = ()
    update_fields: Sequence[str] = ()
    filterset_class: type | None = None
    orderings: Sequence[str] = ()
    default_ordering: Sequence[str] = ()
    #: Relations a query may ``include``: field name -> exposed model name.
    relations: Mapping[str, str] = {}
    default_limit: int | None = None
    max_limit: int | None = None
    hooks: Sequence[Hook] = ()

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
        filterset_class: type | None = None,
        orderings: Iterable[str] | None = None,
        default_ordering: Iterable[str] | None = None,
        relations: Mapping[str, str] | None = None,
        default_limit: int | None = None,
        max_limit: int | None = None,
        hooks: Iterable[Hook] | None = None,
    ):
        if model is not None:
            self.model = model
        if not getattr(self, "model", None):
            raise ImproperlyConfigured(f"{type(self).__name__} needs a model.")
        self.name = name or self.name or self.model._meta.model_name
        if permission_classes is not None:
            self.permission_classes = tuple(permission_classes)
        for attr, value in (
            ("read_fields", read_fields),
            ("default_fields", default_fields),
            ("create_fields", create_fields),
            ("update_fields", update_fields),
            ("orderings", orderings),
            ("default_ordering", default_ordering),
            ("hooks", hooks),
        ):
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
        self._permissions = [resolve_permission(p) for p in self.permission_classes]
        self.check()
        for permission in self._permissions:
            permission.check_model(self)

    # Declaration checks: fail at registration, naming the fix.

    def check(self) -> None:
        opts = self.model._meta
        label = f"Exposed model {self.name!r} ({opts.label})"
        pk_name = opts.pk.name
        if pk_name not in self.read_fields:
            self.read_fields = (pk_name, *self.read_fields)
        for attr in ("read_fields", "create_fields", "update_fields"):
            for name in getattr(self, attr):
                try:
                    field = opts.get_field(name)
                except Exception as exc:
                    raise ImproperlyConfigured(f"{label}: {attr} names {name!r}, which is not a field.") from exc
                if isinstance(field, ForeignObjectRel):
                    raise ImproperlyConfigured(f"{label}: {attr} names the reverse relation {name!r}; expose it from the other side.")
                if attr != "read_fields" and (not field.editable or field.primary_key):
                    raise ImproperlyConfigured(f"{label}: {attr} names {name!r}, which is not editable.")
        if self.default_fields is not None and not set(self.default_fields) <= set(self.read_fields):
            raise ImproperlyConfigured(f"{label}: default_fields must be a subset of read_fields.")
        for path in (*self.orderings, *(o.lstrip("-") for o in self.default_ordering)):
            try:
                resolved = resolve_path(self.model, path)
            except FieldNotAllowed as exc:
                raise ImproperlyConfigured(f"{label}: ordering {path!r} is not a field path.") from exc
            if resolved.many or resolved.last.is_relation and not resolved.last.concrete:
                raise ImproperlyConfigured(f"{label}: ordering {path!r} crosses a to-many relation.")
        for o in self.default_ordering:
            if o.lstrip("-") not in self.orderings:
                raise ImproperlyConfigured(f"{label}: default_ordering {o!r} is not in orderings.")
        for field_name in self.relations:
            try:
                field = opts.get_field(field_name)
            except Exception as exc:
                raise ImproperlyConfigured(f"{label}: relation {field_name!r} is not a field.") from exc
            if not field.is_relation or isinstance(field, ForeignObjectRel):
                raise ImproperlyConfigured(f"{label}: relation {field_name!r} must be a forward relation field.")
        if self.filterset_class is not None:
            meta_model = getattr(getattr(self.filterset_class, "_meta", None), "model", None)
            if meta_model is not None and meta_model is not self.model:
                raise ImproperlyConfigured(f"{label}: filterset_class is for {meta_model._meta.label}.")

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

    def has_permission(self, request: Any, action: str) -> bool:
        """Model-level: may ``request`` perform ``action`` on this model at all?"""
        combined = self._combined()
        return combined is not None and combined.has_permission(request, action, self)

    def has_object_permission(self, request: Any, action: str, obj: models.Model) -> bool:
        """Object-level: may ``request`` perform ``action`` on ``obj``? (Includes the model level.)"""
        combined = self._combined()
        return (
            combined is not None
            and combined.has_permission(request, action, self)
            and combined.has_object_permission(request, action, obj, self)
        )

    def get_read_check(self, request: Any) -> Callable[[models.Model], bool] | None:
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

    def get_queryset(self, request: Any, action: str = BridgeAction.READ) -> QuerySet:
        """The rows ``request`` may ``action`` (permission-scoped)."""
        queryset = self.get_base_queryset()
        combined = self._combined()
        if combined is None or not combined.has_permission(request, action, self):
            return queryset.none()
        return combined.scope_queryset(request, action, queryset, self)

    def get_object(self, request: Any, action: str, pk: Any) -> models.Model:
        """The row ``pk`` if ``request`` may ``action`` it, else ObjectNotFound (never 403, so ids
        of other owners' rows cannot be probed)."""
        from .query import clean_pk

        value = clean_pk(self, pk)
        queryset = self.get_queryset(request, action)
        obj = queryset.filter(pk=value).first()
        if obj is None or not self.has_object_permission(request, action, obj):
            raise ObjectNotFound(f"No {self.name} with id {pk!s:.64} exists.")
        return obj

    def get_fields(self, request: Any, action: str) -> list[str]:
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

    def allowed_actions(self, request: Any) -> list[str]:
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

    # Limits.

    def get_default_limit(self) -> int:
        return min(self.default_limit or ai_settings.QUERY_DEFAULT_LIMIT, self.get_max_limit())

    def get_max_limit(self) -> int:
        return min(self.max_limit or ai_settings.QUERY_MAX_LIMIT, ai_settings.QUERY_MAX_LIMIT)

    # Writes. The views call create / update / delete; each runs in one transaction.

    def get_create_defaults(self, request: Any, data: dict[str, Any]) -> dict[str, Any]:
        """Values set on a new row whatever the client sent (e.g. the owner, a forced type)."""
        return {}

    def validate_write(self, request: Any, action: str, data: dict[str, Any], instance: models.Model | None) -> dict[str, Any]:
        """Check and adjust validated ``data`` before it is applied; raise a ConversationError
        (with ``field``) to refuse. ``instance`` is None for creates."""
        return data

    def perform_create(self, request: Any, instance: models.Model, many: dict[str, Any]) -> None:
        instance.save()
        for name, values in many.items():
            getattr(instance, name).set(values)

    def perform_update(self, request: Any, instance: models.Model, changed: list[str], many: dict[str, Any]) -> None:
        update_fields = list(changed)
        if any(f.name == "updated_at" for f in instance._meta.concrete_fields):
            update_fields.append("updated_at")
        if changed:
            instance.save(update_fields=update_fields)
        for name, values in many.items():
            getattr(instance, name).set(values)

    def perform_delete(self, request: Any, instance: models.Model) -> None:
        instance.delete()

    def run_hooks(self, *, operation: str, instance: models.Model, request: Any, phase: str) -> None:
        for hook in self.hooks:
            hook(operation=operation, instance=instance, request=request, phase=phase)

    # model_change: what live querysets of this model listen for.

    def get_change_channels(self, request: Any, instance: models.Model) -> list[str]:
        """The channels the ``model_change`` of a bridge write to ``instance`` goes to: the
        writer's owner channel, and the channel of each conversation the row points to (a foreign
        key to ``ConversationSession``), where the SDK's ``live()`` listens by default.

        Override to reach others too (rows a staff member changes for their owner) or to send
        none. Only writes through the bridge announce themselves; send ``model_change`` yourself
        for rows your code changes (``announce_change``)."""
        owner = get_owner(request)
        channels = [owner_channel(user_id=owner.user.pk if owner.user is not None else None, anonymous_id=owner.anonymous_id or "")]
        channels += [session_channel(session_id) for session_id in _conversation_ids(instance)]
        return [c for c in dict.fromkeys(channels) if c]

    def announce_change(self, request: Any, operation: str, instance: models.Model, pk: Any) -> None:
        """Send ``model_change`` (this model's name, ``pk``, the request's ``X-Operation-Id``) on
        :meth:`get_change_channels` once the current transaction commits."""
        channels = self.get_change_channels(request, instance)
        if not channels:
            return
        payload = {
            "model": self.name,
            "operation": str(ModelOperation(operation)),
            "pks": [str(pk)],
            "operation_id": current_operation_id.get(),
        }

        session_id = next(iter(_conversation_ids(instance)), None)

        def send() -> None:
            for channel in channels:
                publish(EventName.MODEL_CHANGE, session_id=session_id, channel=channel, **payload)

        transaction.on_commit(send, robust=True)

    def create(self, request: Any, data: Any) -> models.Model:
        from .serialization import split_write_data, validate_write_data

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
            self.announce_change(request, ModelOperation.CREATE, instance, instance.pk)
        return instance

    def update(self, request: Any, pk: Any, data: Any) -> models.Model:
        from .serialization import split_write_data, validate_write_data

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
            changed = [self.model._meta.get_field(n).attname for n in plain]
            self.perform_update(request, instance, changed, many)
            self.run_hooks(operation=BridgeAction.UPDATE, instance=instance, request=request, phase="after")
            self.announce_change(request, ModelOperation.UPDATE, instance, instance.pk)
        return instance

    def delete(self, request: Any, pk: Any) -> None:
        self._require(request, BridgeAction.DELETE)
        with transaction.atomic():
            instance = self.get_object(request, BridgeAction.DELETE, pk)
            pk_value = instance.pk  # Django clears it when the row is deleted
            self.run_hooks(operation=BridgeAction.DELETE, instance=instance, request=request, phase="before")
            self.perform_delete(request, instance)
            self.run_hooks(operation=BridgeAction.DELETE, instance=instance, request=request, phase="after")
            self.announce_change(request, ModelOperation.DELETE, instance, pk_value)

    def _require(self, request: Any, action: str) -> None:
        if action == BridgeAction.CREATE and not self.create_fields or action == BridgeAction.UPDATE and not self.update_fields:
            raise OperationNotAllowed(f"{self.name} rows cannot be {action}d through the bridge.", code="operation_not_allowed")
        if not self.has_permission(request, action):
            raise OperationNotAllowed(f"You may not {action} {self.name} rows.")

    # schema/

    def describe(self, request: Any) -> dict[str, Any]:
        """This model's part of ``schema/`` for ``request``."""
        from .query import filter_specs

        read = self.get_fields(request, BridgeAction.READ)
        fields = {}
        for name in read:
            field = self.model._meta.get_field(name)
            related = None
            if field.is_relation:
                related = bridge_registry.name_for_model(field.related_model)
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
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} for {self.model._meta.label}>"


def _conversation_ids(instance: models.Model) -> list[Any]:
    """The conversations a row points to (its foreign keys to ConversationSession)."""
    ids = []
    for field in instance._meta.concrete_fields:
        if field.is_relation and field.related_model is ConversationSession:
            value = getattr(instance, field.attname)
            if value is not None:
                ids.append(value)
    return ids


class BridgeRegistry:
    """Name -> :class:`ExposedModel`. The built-in registrations load on first use."""

    def __init__(self) -> None:
        self._exposed: dict[str, ExposedModel] = {}
        self._lock = threading.RLock()
        self._builtins_loaded = False

    def _ensure_builtins(self) -> None:
        if self._builtins_loaded:
            return
        with self._lock:
            if self._builtins_loaded:
                return
            from .builtins import builtin_exposed_models

            for exposed in builtin_exposed_models():
                self._exposed.setdefault(exposed.name, exposed)
            self._builtins_loaded = True

    def register(self, exposed: ExposedModel, *, replace: bool = True) -> ExposedModel:
        """Serve ``exposed`` under ``exposed.name`` (replacing a built-in of that name is allowed)."""
        if not isinstance(exposed, ExposedModel):
            raise ImproperlyConfigured(f"{exposed!r} is not an ExposedModel instance.")
        self._ensure_builtins()
        with self._lock:
            if not replace and exposed.name in self._exposed:
                raise ImproperlyConfigured(f"A model is already exposed as {exposed.name!r}.")
            self._exposed[exposed.name] = exposed
        return exposed

    def unregister(self, name: str) -> None:
        self._ensure_builtins()
        with self._lock:
            self._exposed.pop(name, None)

    def get(self, name: Any) -> ExposedModel:
        self._ensure_builtins()
        exposed = self._exposed.get(name) if isinstance(name, str) else None
        if exposed is None:
            raise UnknownModel(f"No model is exposed as {str(name)[:64]!r}.")
        return exposed

    def names(self) -> list[str]:
        self._ensure_builtins()
        return sorted(self._exposed)

    def name_for_model(self, model: type[models.Model]) -> str | None:
        self._ensure_builtins()
        for name, exposed in self._exposed.items():
            if exposed.model is model:
                return name
        return None

    def reset(self) -> None:
        """Forget every registration; the built-ins come back on next use (for tests)."""
        with self._lock:
            self._exposed.clear()
            self._builtins_loaded = False


bridge_registry = BridgeRegistry()


def expose(model: type[models.Model], **options: Any) -> ExposedModel:
    """Expose ``model`` through the bridge in one call (keyword options of :class:`ExposedModel`)."""
    exposed_cls = options.pop("exposed_class", ExposedModel)
    return bridge_registry.register(exposed_cls(model=model, **options))


def get_exposed(name: str) -> ExposedModel:
    """The exposed model called ``name``; UnknownModel (404) when none is."""
    return bridge_registry.get(name)
