"""The app's throttles, shared by the bridge, uploads and realtime views: who a request is counted
as (per user, per anonymous visitor, per client address) and at which rate. Each throttle reads its
rate from ``DJANGO_AI['THROTTLE_RATES']`` under its ``rate_scope`` (e.g. ``"30/min"``, None to
switch it off): ``message_create``, ``session_start``, ``row_action``, ``anonymous_address`` here, ``upload`` in
``files/throttles.py``. Which exposed model uses which is the model's own decision
(``ExposedModel.throttle_classes``).

Counts live in Django's default cache, as for every DRF throttle: use a shared cache (Redis,
Memcached) when you run several processes.

Client addresses: DRF's ``get_ident`` believes ``X-Forwarded-For`` when ``NUM_PROXIES`` is unset,
so a client that makes up a new header per request is a new address every time. The app's
throttles use :class:`ClientAddressMixin` instead: the socket's ``REMOTE_ADDR`` unless
``REST_FRAMEWORK['NUM_PROXIES']`` says how many proxies in front of the project append to the
header (docs/deployment.md, "Behind a proxy").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rest_framework.settings import api_settings as drf_settings
from rest_framework.throttling import SimpleRateThrottle

from ..conf import ai_settings
from ..owners import get_owner
from ..realtime.channels import anonymous_digest

if TYPE_CHECKING:
    from rest_framework.request import Request


__all__ = [
    "AnonymousAddressThrottle",
    "ClientAddressMixin",
    "MessageCreateThrottle",
    "RowActionThrottle",
    "SessionStartThrottle",
    "client_address",
]

# The logger's name predates this module (it was bridge/throttles.py): logging configurations name it.
logger = logging.getLogger("django_ai.conversations.bridge.throttles")
_warned_forwarded_for = False


def client_address(request: Request) -> str:
    """The client's address as the deployment trusts it.

    ``REMOTE_ADDR`` when ``REST_FRAMEWORK['NUM_PROXIES']`` is unset (None): a header the client
    writes itself names no one. With ``NUM_PROXIES = n`` the address is the n-th entry from the
    right of ``X-Forwarded-For``, the one the outermost trusted proxy saw (DRF's rule; 0 means no
    proxy: ``REMOTE_ADDR``).
    """
    meta = getattr(request, "META", {})
    remote = meta.get("REMOTE_ADDR") or ""
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    proxies = drf_settings.NUM_PROXIES
    if proxies is None:
        if forwarded:
            _warn_forwarded_for_ignored()
        return remote
    if proxies == 0 or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",")]
    return hops[-min(proxies, len(hops))] or remote


def _warn_forwarded_for_ignored() -> None:
    global _warned_forwarded_for
    if _warned_forwarded_for:
        return
    _warned_forwarded_for = True
    logger.warning(
        "Requests carry X-Forwarded-For, which the django_ai throttles ignore because "
        "REST_FRAMEWORK['NUM_PROXIES'] is not set: every client is counted under REMOTE_ADDR. "
        "Behind a proxy or load balancer, set NUM_PROXIES to the number of proxies in front of "
        "the project (docs/deployment.md); without one, set it to 0 to silence this."
    )


class ClientAddressMixin:
    """``get_ident`` for throttles that count per client address: see :func:`client_address`.
    Mix it in before DRF's throttle class."""

    def get_ident(self, request: Request) -> str:
        return client_address(request)


class MessageCreateThrottle(ClientAddressMixin, SimpleRateThrottle):
    """Override ``get_rate`` or ``get_cache_key`` to throttle differently (e.g. per plan)."""

    scope = "django_ai_message_create"
    #: The key of ``DJANGO_AI['THROTTLE_RATES']`` that holds this throttle's rate.
    rate_scope = "message_create"

    def get_rate(self) -> str | None:
        return ai_settings.THROTTLE_RATES.get(self.rate_scope) or None

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        owner = get_owner(request)
        if owner.user is not None:
            ident = f"user-{owner.user.pk}"
        elif owner.anonymous_id:
            ident = f"anon-{anonymous_digest(owner.anonymous_id)}"
        else:
            ident = f"addr-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class SessionStartThrottle(MessageCreateThrottle):
    """``DJANGO_AI['THROTTLE_RATES']['session_start']``: conversations started through ``start/``."""

    scope = "django_ai_session_start"
    rate_scope = "session_start"


class RowActionThrottle(MessageCreateThrottle):
    """``DJANGO_AI['THROTTLE_RATES']['row_action']``: row actions of the bridge (``POST
    models/<name>/<pk>/<action>/``, e.g. approving a tool call, which resumes a turn), per user or
    anonymous visitor, all actions together."""

    scope = "django_ai_row_action"
    rate_scope = "row_action"


class AnonymousAddressThrottle(ClientAddressMixin, SimpleRateThrottle):
    """``DJANGO_AI['THROTTLE_RATES']['anonymous_address']``: all anonymous writes (conversations
    started, messages, uploads) from one client address together.

    A visitor may present a fresh anonymous id with every request (the header is the client's to
    choose), so the per-visitor counts alone do not bound what one machine can send. Keep this
    rate well above the per-visitor ones: visitors behind one NAT share an address. Behind a
    proxy, set DRF's ``NUM_PROXIES`` so the address is the client's (:func:`client_address`).
    """

    scope = "django_ai_anonymous_address"
    rate_scope = "anonymous_address"

    def get_rate(self) -> str | None:
        return ai_settings.THROTTLE_RATES.get(self.rate_scope) or None

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if get_owner(request).user is not None:
            return None  # signed-in users are counted per user by the other throttles
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
