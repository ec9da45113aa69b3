"""URLs of the conversations API; mount them under a prefix of your choice, e.g.
``path("api/conversations/", include("django_ai.conversations.urls"))``."""

app_name = "django_ai_conversations"

urlpatterns: list = []
