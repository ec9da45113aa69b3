"""The ORM bridge: frontends query and change conversation models over HTTP, every access
decided by permission classes (see docs/bridge.md and docs/protocol.md).

Public surface::

    from django_ai.conversations.bridge import ExposedModel, expose, get_exposed, exposed_models
    from django_ai.conversations.bridge.permissions import BasePermission, IsOwner, IsStaff

Where things are: :mod:`.exposed` (one exposed model and its steps), :mod:`.catalog` (the exposed
models by name), :mod:`.builtins` (session, message, widget, file), :mod:`.permissions`,
:mod:`.query_parser` / :mod:`.values` / :mod:`.query` (a query checked, then run),
:mod:`.serialization` (rows out, writes in), :mod:`.changes` / :mod:`.model_signals`
(``model_change``), :mod:`.throttles`, :mod:`.views`. The HTTP layer the views stand on (base view,
JSON parsing, error envelope) is :mod:`django_ai.conversations.api`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExposedModel", "bridge_registry", "expose", "exposed_models", "get_exposed"]

_CATALOG_NAMES = frozenset({"expose", "get_exposed", "exposed_models", "bridge_registry"})


def __getattr__(name: str) -> Any:
    # Lazy (Django app loading): the catalog imports the models, while the documented submodules
    # (bridge.permissions, bridge.throttles, bridge.base) stay importable before the app registry
    # is ready, e.g. from a project's asgi.py or settings.
    if name == "ExposedModel":
        from .exposed import ExposedModel

        return ExposedModel
    if name in _CATALOG_NAMES:
        from . import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
