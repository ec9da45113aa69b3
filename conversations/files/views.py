"""``POST files/``: upload a file; its text is extracted in the background.

The request is multipart with the file in the field ``file`` and, optionally, ``session`` (the id of
one of the caller's conversations). The answer is 201 with the new ``file`` row, normalized as the
bridge answers writes. Then extraction runs as a task (pending -> processing -> done | failed, each
step a ``model_change`` event), and the file can be attached to a user message (``files``).

The view decides who uploads and where to (permissions, the owner, the conversation) and keeps the
body within ``MAX_UPLOAD_SIZE`` while it is read: refused from its Content-Length before it is
read, and stopped while it streams in when its bytes pass the limit anyway (413
``file_too_large``). The checks of the file itself and its storage are :func:`~.uploads.save_upload`.
"""

from __future__ import annotations

import uuid
from typing import cast

from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, QueryDict
from django.middleware.csrf import get_token
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from ..api.views import BaseAPIView as BridgeAPIView
from ..bridge.catalog import get_exposed
from ..bridge.errors import OperationNotAllowed
from ..bridge.permissions import resolve_permission
from ..bridge.query import serialize_instance
from ..bridge.throttles import AnonymousAddressThrottle
from ..conf import ai_settings
from ..constants import BridgeAction, ErrorCode, SessionStatus
from ..exceptions import ConversationError, InvalidUpload, SessionNotActive, SessionNotFound
from ..models import ConversationSession
from ..owners import Owner, ensure_anonymous_id, get_owner, owns
from .throttles import UploadThrottle
from .uploads import file_too_large, save_upload

__all__ = ["UploadView"]

#: Room for the multipart envelope (boundaries, part headers, the ``session`` field) on top of
#: the file itself when the body size is checked from Content-Length.
MULTIPART_OVERHEAD = 64 * 1024


class _SizeLimitHandler(FileUploadHandler):
    """Stops an upload as soon as its bytes pass the limit, whatever Content-Length said."""

    def __init__(self, request: HttpRequest, limit: int):
        super().__init__(request)
        self.limit = limit
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            raise file_too_large(self.limit)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


class UploadView(BridgeAPIView):
    """``POST files/``: store an uploaded file and start its text extraction.

    Override :meth:`get_owner_for_upload` to store files for someone else than the caller, or
    :meth:`check_upload_permission` for other rules about who may upload; projects can also close
    uploads with ``DJANGO_AI['BRIDGE_PERMISSION_CLASSES']`` (checked for ``create`` on ``file``).
    """

    parser_classes = [MultiPartParser]
    throttle_classes = [UploadThrottle, AnonymousAddressThrottle]

    def get_max_body_size(self) -> int | None:
        return int(ai_settings.MAX_UPLOAD_SIZE) + MULTIPART_OVERHEAD

    def get_body_too_large_error(self) -> ConversationError:
        return file_too_large(int(ai_settings.MAX_UPLOAD_SIZE))

    def check_body_size(self, request: Request) -> None:
        limit = int(ai_settings.MAX_UPLOAD_SIZE)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except (TypeError, ValueError) as exc:
            raise InvalidUpload("Content-Length is not a number.") from exc
        if length > limit + MULTIPART_OVERHEAD:
            raise self.get_body_too_large_error()
        # Stop a body that grows past the limit while it is read (no or a wrong Content-Length).
        request._request.upload_handlers.insert(0, _SizeLimitHandler(request._request, limit))

    def check_upload_permission(self, request: Request) -> None:
        exposed = get_exposed("file")
        for permission in ai_settings.BRIDGE_PERMISSION_CLASSES or []:
            if not resolve_permission(permission).has_permission(request, BridgeAction.CREATE, exposed):
                raise OperationNotAllowed("You may not upload files.")

    def get_owner_for_upload(self, request: Request) -> Owner:
        owner = get_owner(request)
        if not owner.is_known:
            # This upload would give the browser an anonymous id in its session cookie: the same
            # protection as a cookie visitor's writes, or a cross-site form could plant a file in
            # a victim's session (a multipart POST needs no CORS preflight).
            self.check_csrf(request)
            owner = Owner(anonymous_id=ensure_anonymous_id(request._request))
        return owner

    def get_session(self, request: Request, owner: Owner) -> ConversationSession | None:
        value = cast("QueryDict", request.data).get("session")  # MultiPartParser's data
        if value in (None, ""):
            return None
        try:
            pk = uuid.UUID(str(value))
        except ValueError as exc:
            raise SessionNotFound("The conversation does not exist.", field="session") from exc
        session = ConversationSession.objects.filter(pk=pk).first()
        # Another owner's conversation is reported exactly like a missing one.
        if session is None or session.status == SessionStatus.DELETED or not owns(owner, session):
            raise SessionNotFound("The conversation does not exist.", field="session")
        if session.status != SessionStatus.ACTIVE:
            # As for messages: nothing joins a conversation that is over (its file could never be
            # attached to a message there).
            raise SessionNotActive(
                f"This conversation is {session.status}; start a new one to continue.", field="session"
            )
        return session

    def post(self, request: Request) -> Response:
        self.check_upload_permission(request)
        files = request.FILES.getlist("file")
        if not files:
            raise InvalidUpload("Send the file in the multipart field 'file'.", code=ErrorCode.REQUIRED, field="file")
        if len(files) > 1:
            raise InvalidUpload("Send one file per request.", code=ErrorCode.TOO_MANY_FILES, field="file")
        owner = self.get_owner_for_upload(request)
        session = self.get_session(request, owner)
        row = save_upload(files[0], owner=owner, session=session)
        # Cookie clients need the CSRF token for their next writes.
        get_token(request._request)
        row.refresh_from_db()
        return Response(serialize_instance(get_exposed("file"), request, row), status=status.HTTP_201_CREATED)
