"""The ORM bridge: frontends query and change conversation models over HTTP, every access
decided by permission classes (see docs/bridge.md and docs/protocol.md).

Public surface::

    from django_ai.conversations.bridge import ExposedModel, expose, get_exposed, bridge_registry
    from django_ai.conversations.bridge.permissions import BasePermission, IsOwner, IsStaff
    from django_ai.conversations.bridge.base import BridgeAPIView          # base of API views
    from django_ai.conversations.bridge.errors import exception_handler   # the error envelope
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExposedModel", "expose", "get_exposed", "bridge_registry"]


def __getattr__(name: str) -> Any:
    # Lazy: the registry imports models, and this package is imported by the URLconf.
    if name in __all__:
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
