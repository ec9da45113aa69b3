"""The documented alias of the bridge's ``model_change`` modules (docs/bridge.md named
``realtime.sync`` as where the built-in models announce their changes): the operation id and the
sending are in :mod:`django_ai.conversations.bridge.changes`, the model signals in
:mod:`django_ai.conversations.bridge.model_signals`. Only re-exports."""

from ..bridge.changes import current_operation_id, operation
from ..bridge.model_signals import announce_instance as emit_model_change
from ..bridge.model_signals import connect

__all__ = ["connect", "current_operation_id", "emit_model_change", "operation"]
