"""The upload throttle: how many files one caller may upload in a time."""

from __future__ import annotations

from ..bridge.throttles import MessageCreateThrottle
from ..conf import ai_settings

__all__ = ["UploadThrottle"]


class UploadThrottle(MessageCreateThrottle):
    """``DJANGO_AI['UPLOAD_THROTTLE_RATE']`` (e.g. ``"20/min"``; None switches it off), counted per
    user, anonymous visitor or client address."""

    scope = "django_ai_upload"

    def get_rate(self) -> str | None:
        return ai_settings.UPLOAD_THROTTLE_RATE or None
