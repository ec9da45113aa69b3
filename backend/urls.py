from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/conversations/", include("django_ai.conversations.urls")),
    path("", include("backend.demo_urls")),
]
