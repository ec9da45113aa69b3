"""The errors the bridge raises on purpose (each a
:class:`~django_ai.conversations.exceptions.ConversationError`, so the app's handler,
:func:`django_ai.conversations.api.errors.exception_handler`, answers it in the error envelope).
"""

from __future__ import annotations

from ..api.errors import MultipleErrors
from ..constants import ErrorCode
from ..exceptions import ConversationError

__all__ = [
    "BridgeError",
    "UnknownModel",
    "ObjectNotFound",
    "InvalidQuery",
    "FieldNotAllowed",
    "OperationNotAllowed",
    "OperationIdReused",
    "MultipleErrors",
]


class BridgeError(ConversationError):
    """Base class of the errors the bridge raises on purpose."""

    default_code = ErrorCode.INVALID_REQUEST
    default_detail = "The request is not valid."


class UnknownModel(BridgeError, LookupError):
    status_code = 404
    default_code = ErrorCode.UNKNOWN_MODEL
    default_detail = "No model is exposed under that name."


class ObjectNotFound(BridgeError, LookupError):
    """The row does not exist, or the caller may not see it (the two are never told apart)."""

    status_code = 404
    default_code = ErrorCode.NOT_FOUND
    default_detail = "The object does not exist."


class InvalidQuery(BridgeError, ValueError):
    default_code = ErrorCode.INVALID_QUERY
    default_detail = "The query is not valid."


class FieldNotAllowed(BridgeError):
    default_code = ErrorCode.FIELD_NOT_ALLOWED
    default_detail = "This field may not be used here."


class OperationNotAllowed(BridgeError):
    status_code = 403
    default_code = ErrorCode.PERMISSION_DENIED
    default_detail = "You may not perform this operation."


class OperationIdReused(BridgeError):
    """An ``X-Operation-Id`` already used for a different write: a retry must repeat its request."""

    status_code = 409
    default_code = ErrorCode.OPERATION_ID_REUSED
    default_detail = "This X-Operation-Id was already used for another request."
