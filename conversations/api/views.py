"""The base view of every HTTP endpoint of the app: :class:`BaseAPIView`.

Subclass it for a new endpoint: it answers every error with the envelope of
:mod:`~django_ai.conversations.api.errors`, refuses bodies larger than
``DJANGO_AI['BRIDGE_MAX_BODY_SIZE']`` with 413 (override :meth:`BaseAPIView.get_max_body_size`,
e.g. an upload view returns the upload limit), speaks JSON (:mod:`~.parsing`), and runs the CSRF
check for anonymous visitors known by their Django session cookie (DRF's SessionAuthentication
only checks it for authenticated users).

Under ASGI, Django stores the whole body before any view runs: the size limit is applied before
that by :class:`django_ai.conversations.asgi.BodySizeLimitMiddleware`, which asks the view resolved
for the path (:meth:`BaseAPIView.get_max_body_size`, :meth:`BaseAPIView.get_body_too_large_error`);
without it a warning is logged once.

Reads need no CSRF token: a view that only reads (``reads_only``, the query endpoint, a POST for
its JSON body) skips the check for requests whose body is JSON. A page of another origin cannot
send such a request without the browser asking the server first (a CORS preflight), and could not
read the answer anyway; a form it submits (urlencoded, multipart, text/plain) is still checked and
refused before the query runs (docs/security.md, "CSRF").

Who may do what is decided by the bridge's permission classes, not by DRF's
``DEFAULT_PERMISSION_CLASSES``: views set ``permission_classes = [AllowAny]`` at the DRF level so
anonymous visitors reach them, then ask the exposed model.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.http import parse_header_parameters
from rest_framework import exceptions as drf_exceptions
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from ..conf import ai_settings
from ..exceptions import ConversationError, InvalidAnonymousId, RequestTooLarge
from ..owners import get_owner, header_anonymous_id, session_anonymous_id, valid_anonymous_id
from .errors import exception_handler
from .parsing import StrictJSONParser

__all__ = ["ASGI_LIMIT_SCOPE_KEY", "SAFE_METHODS", "BaseAPIView"]

# The logger's name predates this package: logging configurations of projects name it.
logger = logging.getLogger("django_ai.conversations.bridge")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

#: Set in the ASGI scope by :class:`django_ai.conversations.asgi.BodySizeLimitMiddleware`: the
#: body was counted against the view's limit before Django stored it.
ASGI_LIMIT_SCOPE_KEY = "django_ai.body_size_limited"
_warned_unlimited_asgi = False


def _no_view(request: HttpRequest) -> HttpResponseBase:
    """The view the CSRF middleware is given: only its checks run, never a view (nor is the view
    exempt, as ``csrf_exempt`` would make it)."""
    raise AssertionError("the CSRF check runs no view")


class _CSRFCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def _skip_csrf(self: Any, request: Request) -> None:
    return None


_CSRF_FREE_CLASSES: dict[type, type] = {}


def _csrf_free(authentication_class: type) -> type:
    """``authentication_class`` without its CSRF check (DRF's SessionAuthentication and the
    classes built like it run the check in ``enforce_csrf``); other classes as they are."""
    if not hasattr(authentication_class, "enforce_csrf"):
        return authentication_class
    found = _CSRF_FREE_CLASSES.get(authentication_class)
    if found is None:
        found = type(f"ReadOnly{authentication_class.__name__}", (authentication_class,), {"enforce_csrf": _skip_csrf})
        _CSRF_FREE_CLASSES[authentication_class] = found
    return found


def _is_json(request: Request) -> bool:
    media_type, _ = parse_header_parameters(request.META.get("CONTENT_TYPE") or "")
    return media_type.strip().lower() == "application/json"


class BaseAPIView(APIView):
    """Base class of the app's API views: error envelope, body-size limit, JSON, CSRF for
    cookie-identified anonymous visitors.

    Override :meth:`get_max_body_size` for a different limit and ``parser_classes`` for other
    content types (keep the limit in mind: multipart uploads are capped by Django's own
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` / ``FILE_UPLOAD_MAX_MEMORY_SIZE`` and by your view).
    """

    permission_classes = [AllowAny]
    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer]
    #: True on a view none of whose methods changes anything (the query endpoint): its JSON
    #: requests need no CSRF token (:meth:`needs_csrf_token`). Never set it on a view that writes.
    reads_only = False

    def needs_csrf_token(self, request: Request) -> bool:
        """Whether ``request``, when a cookie identifies the caller, must carry the CSRF token.

        Unsafe methods do, except on a ``reads_only`` view when the body is JSON
        (``Content-Type: application/json``): browsers send that cross-origin only after a CORS
        preflight the server answers, so another site cannot make a visitor's browser send it,
        and it changes nothing. Anything else (a form another site could submit) is checked.
        Override to be stricter, e.g. ``return request.method not in SAFE_METHODS``."""
        if request.method in SAFE_METHODS:
            return False
        return not (self.reads_only and _is_json(request))

    def get_authenticators(self) -> list[Any]:
        # self.request is the Django request here (DRF builds its Request with these).
        if self.needs_csrf_token(self.request):
            return super().get_authenticators()
        return [_csrf_free(auth)() for auth in self.authentication_classes]

    def get_exception_handler(self) -> Any:
        return exception_handler

    def get_max_body_size(self) -> int | None:
        """Largest accepted request body in bytes (None: no limit of ours).

        Also asked by :class:`django_ai.conversations.asgi.BodySizeLimitMiddleware` before the
        request exists: an override may use ``self.args`` / ``self.kwargs`` (the URL's), not
        ``self.request``."""
        return ai_settings.BRIDGE_MAX_BODY_SIZE

    def get_body_too_large_error(self) -> ConversationError:
        """The 413 for a body over :meth:`get_max_body_size` (the ASGI middleware answers it too,
        so both say the same). Like :meth:`get_max_body_size`, it may not use ``self.request``."""
        return RequestTooLarge(f"The request body is larger than {self.get_max_body_size()} bytes.")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if self.get_max_body_size() is not None:
            _warn_if_asgi_body_unlimited(request)
        self.check_body_size(request)
        super().initial(request, *args, **kwargs)

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        # Part of knowing who the caller is, before permissions and throttles, as DRF's own CSRF
        # check for signed-in users: a forged request is refused before it counts against the
        # visitor's rates.
        self.check_anonymous_id_header(request)
        self.enforce_anonymous_csrf(request)

    def check_body_size(self, request: Request) -> None:
        limit = self.get_max_body_size()
        if limit is None:
            return
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except (TypeError, ValueError) as exc:
            raise drf_exceptions.ParseError("Content-Length is not a number.") from exc
        if length > limit:
            raise self.get_body_too_large_error()

    def check_anonymous_id_header(self, request: Request) -> None:
        """400 ``invalid_anonymous_id`` when the request would be identified by its anonymous id
        header (no signed-in user, no id in the Django session) and the header holds something
        this app never issued (too long, too short, other characters). Ignoring it would make the
        caller a new visitor without a word: its conversations would seem gone."""
        value = header_anonymous_id(request._request)
        if not value or valid_anonymous_id(value):
            return
        user = getattr(request, "user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            return
        if session_anonymous_id(request._request):
            return
        header = ai_settings.ANONYMOUS_ID_HEADER
        raise InvalidAnonymousId(
            f"{header} must be the anonymous_id that start/ returned ('anon_' and 27 to 123 letters, "
            "digits, '-' or '_'); send none to be a new visitor.",
            field=header,
        )

    def enforce_anonymous_csrf(self, request: Request) -> None:
        """Anonymous visitors known by their Django session cookie are protected like logged-in
        users: unsafe methods need the CSRF token. Stateless clients (header id, no cookie) are
        not exposed to CSRF and are not checked; nor are requests that need no token
        (:meth:`needs_csrf_token`)."""
        if not self.needs_csrf_token(request):
            return
        user = getattr(request, "user", None)
        if user is not None and getattr(user, "is_authenticated", False):
            return  # DRF's SessionAuthentication already checked it (when that class is in use)
        session = getattr(request._request, "session", None)
        if session is None or not session.get(ai_settings.ANONYMOUS_ID_SESSION_KEY):
            return
        self.check_csrf(request)

    def check_csrf(self, request: Request) -> None:
        """Django's CSRF check for this request; PermissionDenied (403) when it fails."""
        check = _CSRFCheck(_no_view)
        check.process_request(request._request)
        reason = check.process_view(request._request, _no_view, (), {})
        if reason:
            raise drf_exceptions.PermissionDenied(f"CSRF Failed: {reason}")

    def get_owner(self) -> Any:
        """The owner (user or anonymous visitor) this request acts as."""
        return get_owner(self.request)


def _warn_if_asgi_body_unlimited(request: Request) -> None:
    """Once per process: this ASGI request reached a limited view without the body-size
    middleware, so Django stored its whole body before the limit could apply."""
    global _warned_unlimited_asgi
    scope = getattr(request._request, "scope", None)
    if _warned_unlimited_asgi or not isinstance(scope, dict) or scope.get(ASGI_LIMIT_SCOPE_KEY):
        return
    _warned_unlimited_asgi = True
    logger.warning(
        "This ASGI application does not limit request bodies before Django stores them: a body of "
        "any size is written to a temporary file before the django_ai views can refuse it. Wrap the "
        "application in your asgi.py: application = BodySizeLimitMiddleware(get_asgi_application()), "
        "from django_ai.conversations.asgi (docs/deployment.md)."
    )
