"""The demo chat page at ``/``: one HTML page plus static files, built only on the TypeScript SDK
(its browser bundle is the app's static file ``django_ai/conversations/client.js``, which the wheel
ships; in a checkout ``./dev demo`` builds it)."""

from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import path, reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from django_ai.conversations.owners import ensure_anonymous_id

SDK_BUNDLE = "django_ai/conversations/client.js"


@ensure_csrf_cookie
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        # Known from the first request: the live session list has its channel at once.
        ensure_anonymous_id(request)
    config = {
        "apiBase": reverse("django_ai_conversations:start").rsplit("start/", 1)[0],
        "sdk": static(SDK_BUNDLE),
        "user": request.user.get_username() if request.user.is_authenticated else None,
        "loginUrl": f"{reverse('admin:login')}?next=/",
        "logoutUrl": reverse("admin:logout"),
    }
    return render(request, "demo/index.html", {"config": config, "sdk_missing": finders.find(SDK_BUNDLE) is None})


urlpatterns = [path("", home, name="demo-home")]
