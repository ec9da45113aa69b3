"""The demo's ASGI application (``uvicorn backend.asgi:application``).

Django's application wrapped in :class:`~django_ai.conversations.asgi.BodySizeLimitMiddleware`,
so bodies over the app's limits are refused before Django stores them (docs/deployment.md).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")

from django.core.asgi import get_asgi_application

django_application = get_asgi_application()

from django_ai.conversations.asgi import BodySizeLimitMiddleware  # noqa: E402

application = BodySizeLimitMiddleware(django_application)
