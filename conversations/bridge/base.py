"""The documented alias of :mod:`django_ai.conversations.api.views` (docs/bridge.md names
``bridge.base.BridgeAPIView``): the base view of the app's API views lives in the app's HTTP layer,
``conversations/api/``. Only re-exports."""

from ..api.parsing import MAX_JSON_DEPTH, StrictJSONParser
from ..api.views import ASGI_LIMIT_SCOPE_KEY
from ..api.views import BaseAPIView as BridgeAPIView

__all__ = ["ASGI_LIMIT_SCOPE_KEY", "MAX_JSON_DEPTH", "BridgeAPIView", "StrictJSONParser"]
