"""``model_change`` from Django's model signals, for the exposed models that announce every save
(``ExposedModel.announce_all_saves``: the built-ins, and any model of yours that sets it).

One receiver per signal, for every model: a save of a model the bridge does not serve costs a
dictionary lookup. Each registration of the saved model that announces all saves sends its own
``model_change`` (:meth:`~.exposed.ExposedModel.announce_change`, with no request) on the channels
it chooses. :func:`connect` runs once, from the app's ``ready()``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save

from ..constants import ModelOperation
from .catalog import exposed_models

__all__ = ["announce_instance", "announce_saved", "announcements_paused", "connect"]

_paused: contextvars.ContextVar[bool] = contextvars.ContextVar("django_ai_announcements_paused", default=False)


@contextmanager
def announcements_paused() -> Iterator[None]:
    """Within the block, saves and deletes send no ``model_change``: for bulk work on rows no client
    can see any more (``purge_conversations`` deleting conversations their owners deleted), which
    would otherwise queue one event per row."""
    token = _paused.set(True)
    try:
        yield
    finally:
        _paused.reset(token)


def announce_instance(instance: models.Model, operation: ModelOperation | str) -> None:
    """Send ``model_change`` for ``instance`` from every registration of its model (each on its
    own channels), once the current transaction commits: for code that changed a row and says so."""
    for exposed in exposed_models.serving(type(instance)):
        exposed.announce_change(None, operation, instance, instance.pk)


def announce_saved(instance: models.Model, operation: ModelOperation) -> None:
    """What a model signal sends: ``model_change`` from the registrations of the saved model that
    announce all saves (none within :func:`announcements_paused`)."""
    if _paused.get():
        return
    for exposed in exposed_models.serving(type(instance)):
        if exposed.announce_all_saves:
            exposed.announce_change(None, operation, instance, instance.pk)


def _on_save(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if not raw:  # fixtures being loaded are no one's change
        announce_saved(instance, ModelOperation.CREATE if created else ModelOperation.UPDATE)


def _on_delete(sender: Any, instance: Any, **kwargs: Any) -> None:
    announce_saved(instance, ModelOperation.DELETE)


def _on_m2m_changed(sender: Any, instance: Any, action: str, reverse: bool, **kwargs: Any) -> None:
    # A row whose own many-to-many field changed (a message's files) reads differently now.
    if not reverse and action in ("post_add", "post_remove", "post_clear"):
        announce_saved(instance, ModelOperation.UPDATE)


def connect() -> None:
    post_save.connect(_on_save, dispatch_uid="django_ai_model_change_save")
    post_delete.connect(_on_delete, dispatch_uid="django_ai_model_change_delete")
    m2m_changed.connect(_on_m2m_changed, dispatch_uid="django_ai_model_change_m2m")
