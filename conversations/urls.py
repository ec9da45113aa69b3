"""URLs of the conversations API; mount them under a prefix of your choice, e.g.
``path("api/conversations/", include("django_ai.conversations.urls"))``.

Every path answers with or without its trailing slash (the documented form has it): a POST or PATCH
without it would otherwise meet Django's ``APPEND_SLASH`` redirect, which cannot keep a body. Any
other path under the app's own top-level paths (``models/a/b/c/``, ``realtime/nope/``) is a JSON 404
in the error envelope, not Django's HTML page.
"""

from collections.abc import Callable
from typing import Any

from django.urls import URLPattern, URLResolver, include, path, re_path

from .bridge import views as bridge_views
from .files.views import UploadView
from .realtime import views as realtime_views

app_name = "django_ai_conversations"


def _routes(route: str, view: Callable[..., Any], name: str) -> list[URLPattern]:
    # The named pattern (what reverse() gives) keeps the slash; the other one only matches.
    return [path(route, view, name=name), path(route.removesuffix("/"), view)]


urlpatterns: list[URLPattern | URLResolver] = [
    *_routes("start/", bridge_views.StartView.as_view(), "start"),
    *_routes("schema/", bridge_views.SchemaView.as_view(), "schema"),
    *_routes("cancel/", bridge_views.CancelView.as_view(), "cancel"),
    *_routes("models/<str:name>/query/", bridge_views.QueryView.as_view(), "model-query"),
    *_routes("models/<str:name>/", bridge_views.ModelCreateView.as_view(), "model-create"),
    *_routes("models/<str:name>/<str:pk>/", bridge_views.ModelDetailView.as_view(), "model-detail"),
    *_routes("models/<str:name>/<str:pk>/<str:action>/", bridge_views.ModelActionView.as_view(), "model-action"),
    *_routes("files/", UploadView.as_view(), "files"),
    *_routes("realtime/auth/", realtime_views.RealtimeAuthView.as_view(), "realtime-auth"),
    *_routes("realtime/events/", realtime_views.RealtimeEventsView.as_view(), "realtime-events"),
    *_routes("realtime/config/", realtime_views.RealtimeConfigView.as_view(), "realtime-config"),
    path("ai-sdk/", include("django_ai.conversations.ai_sdk.urls")),
    # Last: anything else under this app's own top-level paths. Not every path: a project that
    # mounts these URLs at its root would lose its own URLs listed after them.
    re_path(
        r"^(?:start|schema|cancel|models|files|realtime|ai-sdk)(?:/.*)?$",
        bridge_views.NotFoundView.as_view(),
        name="not-found",
    ),
]
