"""The documented alias of :mod:`django_ai.conversations.api.throttling` (docs/deployment.md names
``bridge.throttles.ClientAddressMixin``; projects name these classes in
``REST_FRAMEWORK['DEFAULT_THROTTLE_CLASSES']``): the throttles belong to the app's HTTP layer,
shared by the bridge, uploads and realtime views. Only re-exports."""

from ..api.throttling import (
    AnonymousAddressThrottle,
    ClientAddressMixin,
    MessageCreateThrottle,
    SessionStartThrottle,
    client_address,
)

__all__ = [
    "AnonymousAddressThrottle",
    "ClientAddressMixin",
    "MessageCreateThrottle",
    "SessionStartThrottle",
    "client_address",
]
