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

__all__ = ["AnonymousAddressThrottle", "MessageCreateThrottle", "SessionStartThrottle"]


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


class SessionStartThrottle(MessageCreateThrottle):
    """``DJANGO_AI['SESSION_START_THROTTLE_RATE']``: conversations started through ``start/``."""

    scope = "django_ai_session_start"

    def get_rate(self) -> str | None:
        return ai_settings.SESSION_START_THROTTLE_RATE or None


class AnonymousAddressThrottle(SimpleRateThrottle):
    """``DJANGO_AI['ANONYMOUS_ADDRESS_THROTTLE_RATE']``: all anonymous writes (conversations
    started, messages, uploads) from one client address together.

    A visitor may present a fresh anonymous id with every request (the header is the client's to
    choose), so the per-visitor counts alone do not bound what one machine can send. Keep this
    rate well above the per-visitor ones: visitors behind one NAT share an address. Behind a
    proxy, set DRF's ``NUM_PROXIES`` so the address is the client's.
    """

    scope = "django_ai_anonymous_address"

    def get_rate(self) -> str | None:
        return ai_settings.ANONYMOUS_ADDRESS_THROTTLE_RATE or None

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if get_owner(request).user is not None:
            return None  # signed-in users are counted per user by the other throttles
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
