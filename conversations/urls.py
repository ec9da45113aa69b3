"""URLs of the conversations API; mount them under a prefix of your choice, e.g.
``path("api/conversations/", include("django_ai.conversations.urls"))``."""

from django.urls import path

from .realtime import views as realtime_views

app_name = "django_ai_conversations"

urlpatterns: list = [
    path("realtime/auth/", realtime_views.RealtimeAuthView.as_view(), name="realtime-auth"),
    path("realtime/events/", realtime_views.RealtimeEventsView.as_view(), name="realtime-events"),
    path("realtime/config/", realtime_views.RealtimeConfigView.as_view(), name="realtime-config"),
]
