"""The base view of every HTTP endpoint of the app.

Subclass :class:`BridgeAPIView` for a new endpoint: it answers every error with the envelope of
:mod:`~django_ai.conversations.bridge.errors`, refuses bodies larger than
``DJANGO_AI['BRIDGE_MAX_BODY_SIZE']`` with 413 (override :meth:`BridgeAPIView.get_max_body_size`,
e.g. an upload view returns the upload limit), speaks JSON, and runs the CSRF check for anonymous
visitors known by their Django session cookie (DRF's SessionAuthentication only checks it for
authenticated users).

JSON bodies are UTF-8 (RFC 8259): a ``charset`` other than UTF-8 is refused with 415 rather than
decoded, and the nesting limit is measured on the decoded text, so no encoding can hide brackets
from it. Under ASGI, Django stores the whole body before any view runs: the size limit is applied
before that by :class:`django_ai.conversations.asgi.BodySizeLimitMiddleware`, which asks the view
resolved for the path (:meth:`BridgeAPIView.get_max_body_size`,
:meth:`BridgeAPIView.get_body_too_large_error`); without it a warning is logged once.

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

import io
import logging
import math
import re
from typing import Any

from django.middleware.csrf import CsrfViewMiddleware
from django.utils.http import parse_header_parameters
from rest_framework import exceptions as drf_exceptions
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from ..conf import ai_settings
from ..exceptions import ConversationError
from ..owners import get_owner, header_anonymous_id, session_anonymous_id, valid_anonymous_id
from .errors import InvalidAnonymousId, RequestTooLarge, exception_handler

__all__ = ["ASGI_LIMIT_SCOPE_KEY", "BridgeAPIView", "StrictJSONParser"]

logger = logging.getLogger("django_ai.conversations.bridge")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

#: Set in the ASGI scope by :class:`django_ai.conversations.asgi.BodySizeLimitMiddleware`: the
#: body was counted against the view's limit before Django stored it.
ASGI_LIMIT_SCOPE_KEY = "django_ai.body_size_limited"
_warned_unlimited_asgi = False


class StrictJSONParser(JSONParser):
    """JSON in UTF-8 only, never more bytes than the view allows, never nested deeper than
    :data:`MAX_JSON_DEPTH`.

    The body is read with a cap (a missing or lying Content-Length cannot smuggle a bigger body),
    a ``charset`` other than UTF-8 is refused (415) instead of decoded, and the nesting is measured
    on the decoded text before the JSON parser, which recurses per level, sees it."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict[str, Any] | None = None) -> Any:
        parser_context = parser_context or {}
        _require_utf8(media_type)
        view = parser_context.get("view")
        limit = view.get_max_body_size() if view is not None and hasattr(view, "get_max_body_size") else None
        raw = b""
        if stream is not None:
            raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            if hasattr(view, "get_body_too_large_error"):
                raise view.get_body_too_large_error()
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise drf_exceptions.ParseError(
                f"JSON parse error - the body is not valid UTF-8 (byte {exc.start})."
            ) from exc
        _reject_deep_nesting(text)
        try:
            # DRF decodes again, as UTF-8 whatever the request said (the charset was checked above).
            data = super().parse(io.BytesIO(raw), media_type, {**parser_context, "encoding": "utf-8"})
        except RecursionError as exc:
            raise drf_exceptions.ParseError("JSON parse error - the body is nested too deeply.") from exc
        _reject_unstorable(data)
        return data


#: Deepest array/object nesting a request body may have. The bridge's own bodies need a handful of
#: levels; the JSON parser recurses per level, and on some Python versions a deep enough body
#: overflows the C stack (a crash, not a RecursionError), so depth is checked before parsing.
MAX_JSON_DEPTH = 64

#: A JSON string (whose brackets do not nest anything) or one bracket. Unrolled and possessive,
#: and an unterminated string runs to the end of the body (the parser refuses it later): a string
#: that had to close would be tried again from each of its quotes, quadratic in a body such as
#: ``"\"\"\"...`` with no closing quote.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?|[\[\]{}]', re.DOTALL)


def _require_utf8(media_type: str | None) -> None:
    """415 for a declared charset other than UTF-8. JSON exchanged between systems is UTF-8
    (RFC 8259, section 8.1); decoding whatever a client names (cp037, UTF-16, codecs that are not
    text encodings at all) would only widen what a body can do."""
    _, params = parse_header_parameters(media_type or "")
    charset = params.get("charset")
    if charset is None or charset.strip().lower().replace("_", "-") in ("utf-8", "utf8"):
        return
    raise drf_exceptions.UnsupportedMediaType(
        media_type,
        detail=f"JSON bodies must be UTF-8; charset={charset[:40]!r} is not accepted. "
        "Send UTF-8, with 'charset=utf-8' or no charset.",
    )


def _reject_deep_nesting(text: str) -> None:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return  # too few brackets to nest that deep: no need to walk the body
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise drf_exceptions.ParseError(
                    f"JSON parse error - the body is nested more than {MAX_JSON_DEPTH} levels deep."
                )
        elif token in ("]", "}"):
            depth -= 1


def _reject_unstorable(data: Any) -> None:
    """Refuse values no database can store: lone UTF-16 surrogates such as ``"\\ud800"``, which
    JSON escapes allow, and numbers too large for a float (``1e400`` parses as infinity, which JSON
    columns refuse): a parse error here rather than a 500 further down."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise drf_exceptions.ParseError("JSON parse error - a number is too large (out of the range of a double).")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise drf_exceptions.ParseError(
                    "JSON parse error - text contains a lone surrogate escape (e.g. \\ud800), which is not valid Unicode."
                ) from exc
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


class _CSRFCheck(CsrfViewMiddleware):
    def _reject(self, request: Any, reason: str) -> str:  # type: ignore[override]
        return reason


def _skip_csrf(self: Any, request: Any) -> None:
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


def _is_json(request: Any) -> bool:
    media_type, _ = parse_header_parameters(request.META.get("CONTENT_TYPE") or "")
    return media_type.strip().lower() == "application/json"


class BridgeAPIView(APIView):
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

    def needs_csrf_token(self, request: Any) -> bool:
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
        check = _CSRFCheck(lambda req: None)
        check.process_request(request._request)
        reason = check.process_view(request._request, None, (), {})
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
