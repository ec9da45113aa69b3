"""The documented alias of the upload modules of :mod:`django_ai.conversations.files`: it only
re-exports.

``from django_ai.conversations.uploads import save_upload`` (docs/files.md) keeps working; new code
imports from ``files.uploads`` (save_upload), ``files.views`` (UploadView), ``files.sniffing``,
``files.throttles``, and the errors from ``exceptions``.
"""

from __future__ import annotations

from .exceptions import FileTooLarge, InvalidUpload, UnsupportedFileType
from .files.sniffing import is_allowed_type, sniff_content_type
from .files.throttles import UploadThrottle
from .files.uploads import save_upload
from .files.views import UploadView

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
