"""The errors the bridge raises on purpose. They are defined with every other wire error in
:mod:`django_ai.conversations.exceptions` (each a ``ConversationError`` with an ``ErrorCode``, so
the app's handler, :func:`django_ai.conversations.api.errors.exception_handler`, answers it in
the error envelope); this module names the bridge's. Only re-exports.
"""

from ..exceptions import (
    BridgeError,
    FieldNotAllowed,
    InvalidQuery,
    MultipleErrors,
    ObjectNotFound,
    OperationIdReused,
    OperationNotAllowed,
    UnknownModel,
)

__all__ = [
    "BridgeError",
    "FieldNotAllowed",
    "InvalidQuery",
    "MultipleErrors",
    "ObjectNotFound",
    "OperationIdReused",
    "OperationNotAllowed",
    "UnknownModel",
]
