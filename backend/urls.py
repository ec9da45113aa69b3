from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/conversations/", include("django_ai.conversations.urls")),
    # The demo serves its own static files whatever DEBUG is (runserver does so only with DEBUG,
    # uvicorn never): the page and the SDK bundle work the same with DEBUG off. A real project
    # serves them with its web server or WhiteNoise after collectstatic.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
    path("", include("backend.demo_urls")),
]
