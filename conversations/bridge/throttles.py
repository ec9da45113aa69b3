"""Throttling of message creation: ``DJANGO_AI['MESSAGE_CREATE_THROTTLE_RATE']`` (e.g. ``"30/min"``,
None to switch it off), per user, or per anonymous visitor, or per client address.

Counts live in Django's default cache, as for every DRF throttle: use a shared cache (Redis,
Memcached) when you run several processes.
"""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import SimpleRateThrottle

from ..conf import ai_settings
from ..owners import get_owner
from ..realtime.channels import anonymous_digest

__all__ = ["MessageCreateThrottle"]


class MessageCreateThrottle(SimpleRateThrottle):
    """Override ``get_rate`` or ``get_cache_key`` to throttle differently (e.g. per plan)."""

    scope = "django_ai_message_create"

    def get_rate(self) -> str | None:
        return ai_settings.MESSAGE_CREATE_THROTTLE_RATE or None

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        owner = get_owner(request)
        if owner.user is not None:
            ident = f"user-{owner.user.pk}"
        elif owner.anonymous_id:
            ident = f"anon-{anonymous_digest(owner.anonymous_id)}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
