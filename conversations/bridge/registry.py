"""Transitional alias of :mod:`.catalog` for importers not yet updated during the issue-12
refactor (``realtime/auth.py``, ``files/views.py``); remove once they import ``bridge.catalog``
(or ``from django_ai.conversations.bridge import get_exposed``). Only re-exports."""

from .catalog import bridge_registry, expose, exposed_models, get_exposed
from .exposed import ExposedModel

__all__ = ["ExposedModel", "bridge_registry", "expose", "exposed_models", "get_exposed"]
