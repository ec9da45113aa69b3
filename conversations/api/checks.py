"""System checks of the HTTP side: which client address the throttles count.

``django_ai.W050``: DRF's own ``get_ident`` believes ``X-Forwarded-For`` while
``REST_FRAMEWORK['NUM_PROXIES']`` is unset, so a client that writes a new header per request is a
new address every time and per-address limits no longer bound it. The app's throttles never do
that (:func:`~django_ai.conversations.api.throttling.client_address`); throttle classes of the
project that keep DRF's rule do, and this check names them.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.utils.module_loading import import_string
from rest_framework.settings import api_settings as drf_settings
from rest_framework.throttling import BaseThrottle

from .throttling import ClientAddressMixin


def _trusts_forwarded_for(throttle: Any) -> bool:
    if not (isinstance(throttle, type) and issubclass(throttle, BaseThrottle)):
        return False
    if issubclass(throttle, ClientAddressMixin):
        return False
    return throttle.get_ident is BaseThrottle.get_ident


@checks.register("django_ai")
def check_throttle_client_address(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if drf_settings.NUM_PROXIES is not None:
        return []
    trusting: list[str] = []
    for throttle in drf_settings.DEFAULT_THROTTLE_CLASSES:
        if isinstance(throttle, str):
            try:
                throttle = import_string(throttle)
            except ImportError:
                continue  # DRF reports a bad path itself when the class is used
        if _trusts_forwarded_for(throttle):
            trusting.append(f"{throttle.__module__}.{throttle.__qualname__}")
    if not trusting:
        return []
    return [
        checks.Warning(
            "REST_FRAMEWORK['DEFAULT_THROTTLE_CLASSES'] count clients by an address taken from the "
            "X-Forwarded-For header, which any client can make up, because NUM_PROXIES is not set: "
            f"{', '.join(trusting)}.",
            hint="Set REST_FRAMEWORK['NUM_PROXIES'] to the number of proxies in front of the project "
            "(0 when clients connect directly); see docs/deployment.md, 'Behind a proxy'.",
            id="django_ai.W050",
        )
    ]
