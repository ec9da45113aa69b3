"""URLs of the conversations API; mount them under a prefix of your choice, e.g.
``path("api/conversations/", include("django_ai.conversations.urls"))``."""

from django.urls import path

from .bridge import views as bridge_views
from .realtime import views as realtime_views
from .uploads import UploadView

app_name = "django_ai_conversations"

urlpatterns: list = [
    path("start/", bridge_views.StartView.as_view(), name="start"),
    path("schema/", bridge_views.SchemaView.as_view(), name="schema"),
    path("cancel/", bridge_views.CancelView.as_view(), name="cancel"),
    path("models/<str:name>/query/", bridge_views.QueryView.as_view(), name="model-query"),
    path("models/<str:name>/", bridge_views.ModelCreateView.as_view(), name="model-create"),
    path("models/<str:name>/<str:pk>/", bridge_views.ModelDetailView.as_view(), name="model-detail"),
    path("files/", UploadView.as_view(), name="files"),
    path("realtime/auth/", realtime_views.RealtimeAuthView.as_view(), name="realtime-auth"),
    path("realtime/events/", realtime_views.RealtimeEventsView.as_view(), name="realtime-events"),
    path("realtime/config/", realtime_views.RealtimeConfigView.as_view(), name="realtime-config"),
]
