"""``POST files/``: upload a file; its text is extracted in the background.

The request is multipart with the file in the field ``file`` and, optionally, ``session`` (the id of
one of the caller's conversations). The answer is 201 with the new ``file`` row, normalized as the
bridge answers writes. Then extraction runs as a task (pending -> processing -> done | failed, each
step a ``model_change`` event), and the file can be attached to a user message (``files``).

What is checked, in this order, each with an error in the envelope:

- size: a body larger than the limit is refused from its Content-Length before it is read, and an
  upload whose bytes pass the limit is stopped while it streams in (413 ``file_too_large``);
- type: decided from the content's first bytes (magic numbers via ``filetype``, then a text check),
  never from the client's name or header, and compared with ``ALLOWED_UPLOAD_TYPES``
  (415 ``unsupported_file_type``): an executable named ``photo.png`` is an executable;
- owner: the user, or the anonymous visitor (an id is issued and kept in their Django session).

The bytes are stored through Django's storage API (``File.file``; any storage backend) under a random
name; the original name is kept in ``File.filename`` only.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import unicodedata
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.db import transaction
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from .bridge.base import BridgeAPIView
from .bridge.errors import OperationNotAllowed
from .bridge.throttles import AnonymousAddressThrottle, MessageCreateThrottle
from .conf import ai_settings
from .constants import BridgeAction, SessionStatus
from .exceptions import ConversationError, SessionNotActive, SessionNotFound
from .models import ConversationSession, File
from .owners import Owner, ensure_anonymous_id, get_owner, owns

__all__ = [
    "FileTooLarge",
    "InvalidUpload",
    "UnsupportedFileType",
    "UploadThrottle",
    "UploadView",
    "is_allowed_type",
    "save_upload",
    "sniff_content_type",
]

logger = logging.getLogger("django_ai.conversations.uploads")

#: Room for the multipart envelope (boundaries, part headers, the ``session`` field) on top of
#: the file itself when the body size is checked from Content-Length.
MULTIPART_OVERHEAD = 64 * 1024
SNIFF_BYTES = 8192


class FileTooLarge(ConversationError):
    status_code = 413
    default_code = "file_too_large"
    default_detail = "The file is too large."


class UnsupportedFileType(ConversationError):
    status_code = 415
    default_code = "unsupported_file_type"
    default_detail = "Files of this type are not accepted."


class InvalidUpload(ConversationError):
    default_code = "invalid_upload"
    default_detail = "The upload is not valid."


def _human_size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:g} {unit}" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} bytes"


def _too_large(limit: int) -> FileTooLarge:
    return FileTooLarge(f"The file is larger than the limit of {_human_size(limit)}.", field="file")


_TEXT_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_TEXT_BY_EXTENSION = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".html": "text/html",
    ".htm": "text/html",
    ".json": "application/json",
}


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    if head.startswith(_TEXT_BOMS):
        return True
    if b"\x00" in head:
        return False
    sample = head
    # The head may end inside a multi-byte character: try without up to 3 trailing bytes.
    for cut in range(4):
        try:
            (sample[: len(sample) - cut] if cut else sample).decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    # Legacy 8-bit text: allow printable bytes and common whitespace only.
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls == 0


def sniff_content_type(head: bytes, filename: str = "") -> str:
    """The MIME type of content starting with ``head`` (the first few KB).

    Binary formats are recognised by their signature; text is recognised as text and then named
    by its extension (``.csv`` -> ``text/csv``) or markup (``<!doctype html``). Unknown binary
    content is ``application/octet-stream``. The client's claimed type is never used.
    """
    import filetype

    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime)
    if not _looks_like_text(head):
        return "application/octet-stream"
    stripped = head.lstrip(b"".join(_TEXT_BOMS) + b" \t\r\n").lower()
    if stripped.startswith((b"<!doctype html", b"<html")) or b"<html" in stripped[:1024]:
        return "text/html"
    if stripped.startswith(b"{\\rtf"):
        return "application/rtf"
    extension = os.path.splitext(filename or "")[1].lower()
    by_extension = _TEXT_BY_EXTENSION.get(extension)
    if by_extension == "application/json" and not stripped.startswith((b"{", b"[")):
        by_extension = None
    if by_extension == "text/html":
        by_extension = None  # HTML is recognised by its markup above, not by its name
    return by_extension or "text/plain"


def is_allowed_type(content_type: str) -> bool:
    """Whether ``ALLOWED_UPLOAD_TYPES`` accepts ``content_type`` (entries may be ``"image/*"``;
    None accepts every type)."""
    allowed = ai_settings.ALLOWED_UPLOAD_TYPES
    if allowed is None:
        return True
    content_type = content_type.lower()
    for entry in allowed:
        entry = str(entry).lower()
        if entry == content_type or (entry.endswith("/*") and content_type.startswith(entry[:-1])):
            return True
    return False


def _clean_filename(name: str) -> str:
    name = os.path.basename((name or "").replace("\\", "/"))
    name = "".join(c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] != "C").strip()
    if not name or name in (".", ".."):
        return "upload"
    if len(name) > 255:
        stem, ext = os.path.splitext(name)
        ext = ext[:16]
        name = stem[: 255 - len(ext)] + ext
    return name


class _SizeLimitHandler(FileUploadHandler):
    """Stops an upload as soon as its bytes pass the limit, whatever Content-Length said."""

    def __init__(self, request: Any, limit: int):
        super().__init__(request)
        self.limit = limit
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            raise _too_large(self.limit)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def save_upload(uploaded: UploadedFile, *, owner: Owner, session: ConversationSession | None = None) -> File:
    """Validate ``uploaded`` and store it as a File of ``owner``; extraction is scheduled for when
    the transaction commits.

    Raises :class:`InvalidUpload`, :class:`FileTooLarge` or :class:`UnsupportedFileType`; nothing
    is stored then. Usable outside the HTTP view (e.g. from your own form view).
    """
    from .extraction import schedule_extraction

    limit = int(ai_settings.MAX_UPLOAD_SIZE)
    size = uploaded.size or 0
    if size <= 0:
        raise InvalidUpload("The file is empty.", code="empty_file", field="file")
    if size > limit:
        raise _too_large(limit)
    filename = _clean_filename(uploaded.name or "")
    uploaded.seek(0)
    head = uploaded.read(SNIFF_BYTES)
    content_type = sniff_content_type(head, filename)
    if not is_allowed_type(content_type):
        raise UnsupportedFileType(
            f"Files of type {content_type} are not accepted here.", field="file"
        )
    digest = hashlib.sha256()
    for chunk in uploaded.chunks():
        digest.update(chunk)
    if not owner.is_known:
        raise InvalidUpload("The upload has no owner: log in or start a conversation first.", code="no_owner")
    row = File(
        user=owner.user,
        anonymous_id="" if owner.user is not None else owner.anonymous_id,
        session=session,
        filename=filename,
        content_type=content_type,
        size=size,
        sha256=digest.hexdigest(),
    )
    # The bytes go to storage first (outside the transaction: storage is not transactional);
    # if the row cannot be saved they are removed again, so no orphan stays behind.
    row.file.save(filename, uploaded, save=False)
    try:
        with transaction.atomic():
            row.save()
            schedule_extraction(row.pk)
    except BaseException:
        row.file.storage.delete(row.file.name)
        raise
    return row


class UploadThrottle(MessageCreateThrottle):
    """``DJANGO_AI['UPLOAD_THROTTLE_RATE']`` (e.g. ``"20/min"``; None switches it off), counted per
    user, anonymous visitor or client address."""

    scope = "django_ai_upload"

    def get_rate(self) -> str | None:
        return ai_settings.UPLOAD_THROTTLE_RATE or None


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
        return _too_large(int(ai_settings.MAX_UPLOAD_SIZE))

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
        from .bridge.permissions import resolve_permission
        from .bridge.registry import get_exposed

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
        value = request.data.get("session")
        if value in (None, ""):
            return None
        import uuid

        try:
            pk = uuid.UUID(str(value))
        except ValueError as exc:
            raise SessionNotFound("The conversation does not exist.", field="session") from exc
        session = ConversationSession.objects.filter(pk=pk).first()
        # Another owner's conversation is reported exactly like a missing one.
        if session is None or not owns(owner, session):
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
            raise InvalidUpload("Send the file in the multipart field 'file'.", code="required", field="file")
        if len(files) > 1:
            raise InvalidUpload("Send one file per request.", code="too_many_files", field="file")
        owner = self.get_owner_for_upload(request)
        session = self.get_session(request, owner)
        row = save_upload(files[0], owner=owner, session=session)
        from django.middleware.csrf import get_token

        from .bridge.query import serialize_instance
        from .bridge.registry import get_exposed

        # Cookie clients need the CSRF token for their next writes.
        get_token(request._request)
        row.refresh_from_db()
        return Response(serialize_instance(get_exposed("file"), request, row), status=status.HTTP_201_CREATED)
