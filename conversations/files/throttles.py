"""The upload throttle: how many files one caller may upload in a time."""

from __future__ import annotations

from ..api.throttling import MessageCreateThrottle

__all__ = ["UploadThrottle"]


class UploadThrottle(MessageCreateThrottle):
    """``DJANGO_AI['THROTTLE_RATES']['upload']`` (e.g. ``"20/min"``; None switches it off; the older
    ``UPLOAD_THROTTLE_RATE`` sets it too), counted per user, anonymous visitor or client address."""

    scope = "django_ai_upload"
    rate_scope = "upload"
