"""The error envelope of every HTTP view of the app.

Every error answer is ``{"errors": [{"code": ..., "message": ..., "field": ...}]}`` (``field`` only
when one field is at fault). :func:`exception_handler` builds it from

- :class:`~django_ai.conversations.exceptions.ConversationError` (its ``status_code``, ``code``,
  ``message``, ``field``),
- Django REST framework's ``APIException`` family (validation errors become one entry per field),
- Django's ``Http404``, ``PermissionDenied``, ``RequestDataTooBig`` (413), ``TooManyFieldsSent`` /
  ``TooManyFilesSent`` and the other malformed-request errors (``BadRequest``,
  ``SuspiciousOperation``: 400, the latter logged on ``django.security.<name>`` as Django does).

Anything else is a bug: the handler returns None, DRF re-raises, and Django logs a real 500.
Views get the handler from :class:`~django_ai.conversations.api.views.BaseAPIView`; projects do
not need to change ``REST_FRAMEWORK['EXCEPTION_HANDLER']``. A new wire error code is an
:class:`~django_ai.conversations.constants.ErrorCode` member and a ``ConversationError`` subclass
(``conversations/exceptions.py``), not a change here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from ..constants import ErrorCode
from ..exceptions import ConversationError, MultipleErrors, RequestTooLarge

__all__ = ["error_response", "exception_handler"]

# The logger's name predates this package: logging configurations of projects name it.
logger = logging.getLogger("django_ai.conversations.bridge")


#: The code of a DRF exception that names none, by status.
_DRF_CODES = {
    400: ErrorCode.INVALID,
    401: ErrorCode.NOT_AUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    413: ErrorCode.REQUEST_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.THROTTLED,
}


def _flatten(detail: Any, field: str | None, default_code: str) -> Iterator[dict[str, Any]]:
    """Turn DRF's nested ``detail`` (dicts of lists of ErrorDetail) into envelope entries."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key in ("non_field_errors", "detail") and field is None:
                yield from _flatten(value, None, default_code)
            else:
                sub = str(key) if field is None else f"{field}.{key}"
                yield from _flatten(value, sub, default_code)
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            # A list of messages about one field stays on that field; a list of nested objects
            # (e.g. many=True) gets the index in the path.
            if isinstance(value, (dict, list)):
                yield from _flatten(value, f"{field}.{index}" if field else str(index), default_code)
            else:
                yield from _flatten(value, field, default_code)
    else:
        entry: dict[str, Any] = {
            "code": getattr(detail, "code", None) or default_code,
            "message": str(detail),
        }
        if field:
            entry["field"] = field
        yield entry


def _detailed_errors(exc: ConversationError) -> list[dict[str, Any]]:
    """One entry per item of ``exc.errors`` when it has them (e.g. ContextValidationError)."""
    entries = []
    for item in getattr(exc, "errors", None) or []:
        if not isinstance(item, dict):
            continue
        entry: dict[str, Any] = {"code": exc.code, "message": str(item.get("message") or exc.message)}
        if item.get("field"):
            entry["field"] = str(item["field"])
        entries.append(entry)
    return entries


def error_response(errors: list[dict[str, Any]], status: int, headers: dict[str, str] | None = None) -> Response:
    """A DRF Response carrying the envelope; use it where a view answers an error itself."""
    return Response({"errors": errors}, status=status, headers=headers)


def _django_error(exc: Exception) -> Response | None:
    """The envelope for the errors Django raises while it reads a malformed body."""
    if isinstance(exc, RequestDataTooBig):
        return error_response([RequestTooLarge().as_dict()], 413)
    if isinstance(exc, TooManyFieldsSent):
        return error_response([{"code": ErrorCode.TOO_MANY_FIELDS, "message": str(exc)}], 400)
    if isinstance(exc, TooManyFilesSent):
        message = f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files; send one file per upload."
        return error_response([{"code": ErrorCode.TOO_MANY_FILES, "message": message}], 400)
    if isinstance(exc, (BadRequest, SuspiciousOperation)):
        # Raised while Django reads a malformed body (e.g. a form in a charset other than UTF-8,
        # a multipart body that makes its parser loop): a 400 like Django's own, in the envelope.
        if isinstance(exc, SuspiciousOperation):
            logging.getLogger(f"django.security.{type(exc).__name__}").error(str(exc))
        message = "The request is malformed: " + str(exc)[:200]
        return error_response([{"code": ErrorCode.BAD_REQUEST, "message": message}], 400)
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``-compatible: the envelope for known errors, None for bugs."""
    if isinstance(exc, MultipleErrors):
        set_rollback()
        return error_response(exc.as_dicts(), exc.status_code)
    if isinstance(exc, ConversationError):
        errors = _detailed_errors(exc) or [exc.as_dict()]
        if exc.status_code >= 500:
            logger.error("%s answered with %s: %s", type(exc).__name__, exc.status_code, exc.message, exc_info=exc)
        set_rollback()
        return error_response(errors, exc.status_code)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    else:
        answer = _django_error(exc)
        if answer is not None:
            set_rollback()
            return answer
    if isinstance(exc, drf_exceptions.APIException):
        headers: dict[str, str] = {}
        # Only some DRF exceptions carry them (NotAuthenticated, Throttled), as DRF's handler reads them.
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)
        if wait:
            headers["Retry-After"] = str(int(wait))
        default_code = getattr(exc, "default_code", None) or _DRF_CODES.get(exc.status_code, ErrorCode.ERROR)
        # ErrorDetail strings carry their own code; validation errors become one entry per field.
        errors = list(_flatten(exc.detail, None, default_code))
        if not errors:
            errors = [{"code": default_code, "message": str(exc)}]
        set_rollback()
        return error_response(errors, exc.status_code, headers)
    return None
