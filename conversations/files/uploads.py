"""Saving an upload: the checks, the bytes in storage, the File row, its extraction scheduled.

:func:`save_upload` is what ``POST files/`` (views.py) runs once it knows the caller, and what a
project calls from its own form view or import script. What is checked, in this order, each with
an error in the envelope and nothing stored when one fails:

- size: at most ``MAX_UPLOAD_SIZE``, and not empty (the view also refuses a body that is too
  large before reading it);
- type: decided from the content (sniffing.py), never from the client's name or header, and
  compared with ``ALLOWED_UPLOAD_TYPES``;
- owner: the user, or an anonymous visitor with an id.

The bytes are stored through Django's storage API (``File.file``; any storage backend) under a
random name; the original name is kept in ``File.filename`` only.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from ..conf import ai_settings
from ..constants import ErrorCode
from ..exceptions import FileTooLarge, InvalidUpload, UnsupportedFileType
from ..models import ConversationSession, File
from ..owners import Owner
from .extraction.tasks import schedule_extraction
from .sniffing import SNIFF_BYTES, is_allowed_type, sniff_content_type

__all__ = ["file_too_large", "human_size", "save_upload"]


def human_size(size: float) -> str:
    """``1000 bytes``, ``19.5 KB``, ``20 MB``: a size as a person reads it in a message."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:g} {unit}" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1024
    return f"{size} bytes"


def file_too_large(limit: int) -> FileTooLarge:
    """The 413 for an upload over ``limit`` bytes, on the ``file`` field (the view refuses a body
    that is too large with it too)."""
    return FileTooLarge(f"The file is larger than the limit of {human_size(limit)}.", field="file")


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


def save_upload(uploaded: UploadedFile, *, owner: Owner, session: ConversationSession | None = None) -> File:
    """Validate ``uploaded`` and store it as a File of ``owner``; extraction is scheduled for when
    the transaction commits.

    Raises :class:`~django_ai.conversations.exceptions.InvalidUpload`, ``FileTooLarge`` or
    ``UnsupportedFileType``; nothing is stored then. Usable outside the HTTP view
    (e.g. from your own form view).
    """
    limit = int(ai_settings.MAX_UPLOAD_SIZE)
    size = uploaded.size or 0
    if size <= 0:
        raise InvalidUpload("The file is empty.", code=ErrorCode.EMPTY_FILE, field="file")
    if size > limit:
        raise file_too_large(limit)
    filename = _clean_filename(uploaded.name or "")
    uploaded.seek(0)
    head = uploaded.read(SNIFF_BYTES)
    content_type = sniff_content_type(head, filename)
    if not is_allowed_type(content_type):
        raise UnsupportedFileType(f"Files of type {content_type} are not accepted here.", field="file")
    digest = hashlib.sha256()
    for chunk in uploaded.chunks():
        digest.update(chunk)
    if not owner.is_known:
        raise InvalidUpload("The upload has no owner: log in or start a conversation first.", code=ErrorCode.NO_OWNER)
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
        if row.file.name:
            row.file.storage.delete(row.file.name)
        raise
    return row
