"""The demo chat page at ``/``: one HTML page plus static files, built only on the TypeScript SDK
(its browser bundle is the app's static file ``django_ai/conversations/client.js``, which the wheel
ships; in a checkout ``./dev demo`` builds it).

Also the React and Vue examples (``examples/``, docs/examples.md) at ``/examples/react/`` and
``/examples/vue/``: their build output (``examples/<folder>/dist/``, made by
``frontend_client/scripts/build-examples.mjs``, not in git), served from the API's origin so the
session cookie and CSRF work as for the demo page."""

from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import SuspiciousFileOperation
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import path, reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.static import serve

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


EXAMPLES_DIR: Path = settings.BASE_DIR / "examples"
# The URL name of each example and its folder under examples/.
EXAMPLES = {"react": "react-chat", "vue": "vue-chat"}
EXAMPLES_BUILD = "node frontend_client/scripts/build-examples.mjs"


def example_dist(name: str) -> Path:
    if name not in EXAMPLES:
        raise Http404("No such example.")
    return EXAMPLES_DIR / EXAMPLES[name] / "dist"


@ensure_csrf_cookie
def example_page(request: HttpRequest, name: str) -> HttpResponse:
    dist = example_dist(name)
    if not request.user.is_authenticated:
        # As the demo page: the live conversation list has its channel from the first request.
        ensure_anonymous_id(request)
    try:
        page = (dist / "index.html").read_bytes()
    except FileNotFoundError:
        message = f"The {name} example is not built. Run `{EXAMPLES_BUILD}` in the checkout, then reload."
        return HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
    return HttpResponse(page, content_type="text/html; charset=utf-8")


def example_file(request: HttpRequest, name: str, file: str) -> HttpResponse | FileResponse:
    # django.views.static.serve works whatever DEBUG is; a path that leaves dist/ is no file of it.
    try:
        return serve(request, file, document_root=str(example_dist(name)))
    except SuspiciousFileOperation as error:
        raise Http404("No such file.") from error


urlpatterns = [
    path("", home, name="demo-home"),
    path("examples/<slug:name>/", example_page, name="demo-example"),
    path("examples/<slug:name>/<path:file>", example_file, name="demo-example-file"),
]
