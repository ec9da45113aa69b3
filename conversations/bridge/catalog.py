"""The models the bridge serves, by name: :data:`exposed_models`.

Exposing a model is one registration::

    from django_ai.conversations.bridge import expose
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

or subclass :class:`~.exposed.ExposedModel` and override its ``get_*`` / ``perform_*`` steps, then
``exposed_models.register(MyExposed())``. The built-in names ``session``, ``message``, ``widget``
and ``file`` are registered on first use (see :mod:`~django_ai.conversations.bridge.builtins`).
(``bridge_registry``, the name docs/bridge.md used first, is the same object.)
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from .builtins import builtin_exposed_models
from .errors import UnknownModel
from .exposed import ExposedModel

__all__ = ["ExposedModelCatalog", "bridge_registry", "expose", "exposed_models", "get_exposed"]


class ExposedModelCatalog:
    """Name -> :class:`~.exposed.ExposedModel`. The built-in registrations load on first use."""

    def __init__(self) -> None:
        self._exposed: dict[str, ExposedModel] = {}
        self._by_model: dict[type[models.Model], tuple[ExposedModel, ...]] = {}
        self._lock = threading.RLock()
        self._builtins_loaded = False

    def _ensure_builtins(self) -> None:
        if self._builtins_loaded:
            return
        with self._lock:
            if self._builtins_loaded:
                return
            for exposed in builtin_exposed_models():
                if exposed.name not in self._exposed:
                    self._add(exposed)
            self._builtins_loaded = True

    def _add(self, exposed: ExposedModel) -> None:
        exposed.catalog = self
        self._exposed[exposed.name] = exposed
        self._index()

    def _index(self) -> None:
        by_model: dict[type[models.Model], list[ExposedModel]] = {}
        for exposed in self._exposed.values():
            by_model.setdefault(exposed.model, []).append(exposed)
        self._by_model = {model: tuple(found) for model, found in by_model.items()}

    def register(self, exposed: ExposedModel, *, replace: bool = True) -> ExposedModel:
        """Serve ``exposed`` under ``exposed.name`` (replacing a built-in of that name is allowed)."""
        if not isinstance(exposed, ExposedModel):
            raise ImproperlyConfigured(f"{exposed!r} is not an ExposedModel instance.")
        self._ensure_builtins()
        with self._lock:
            if not replace and exposed.name in self._exposed:
                raise ImproperlyConfigured(f"A model is already exposed as {exposed.name!r}.")
            self._add(exposed)
        return exposed

    def unregister(self, name: str) -> None:
        self._ensure_builtins()
        with self._lock:
            self._exposed.pop(name, None)
            self._index()

    def get(self, name: Any) -> ExposedModel:
        self._ensure_builtins()
        exposed = self._exposed.get(name) if isinstance(name, str) else None
        if exposed is None:
            raise UnknownModel(f"No model is exposed as {str(name)[:64]!r}.")
        return exposed

    def names(self) -> list[str]:
        self._ensure_builtins()
        return sorted(self._exposed)

    def serving(self, model: type[models.Model]) -> tuple[ExposedModel, ...]:
        """Every registration of ``model`` (a model may be exposed under several names)."""
        self._ensure_builtins()
        return self._by_model.get(model, ())

    def for_model(self, model: type[models.Model]) -> ExposedModel | None:
        """The first registration of ``model``, or None."""
        found = self.serving(model)
        return found[0] if found else None

    def name_for_model(self, model: type[models.Model]) -> str | None:
        exposed = self.for_model(model)
        return exposed.name if exposed is not None else None

    def reset(self) -> None:
        """Forget every registration; the built-ins come back on next use (for tests)."""
        with self._lock:
            self._exposed.clear()
            self._by_model = {}
            self._builtins_loaded = False


exposed_models = ExposedModelCatalog()

#: The name docs/bridge.md first gave :data:`exposed_models` (the same object).
bridge_registry = exposed_models


def expose(model: type[models.Model], **options: Any) -> ExposedModel:
    """Expose ``model`` through the bridge in one call (keyword options of :class:`ExposedModel`)."""
    exposed_cls = options.pop("exposed_class", ExposedModel)
    return exposed_models.register(exposed_cls(model=model, **options))


def get_exposed(name: str) -> ExposedModel:
    """The exposed model called ``name``; UnknownModel (404) when none is."""
    return exposed_models.get(name)
