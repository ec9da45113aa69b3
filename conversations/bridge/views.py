"""HTTP views of the bridge (paths in docs/protocol.md).

Each view is thin: it parses the request, asks the exposed model (permissions, fields, throttles,
writes) and the query compiler, and answers normalized JSON. Errors are the app's envelope
(:mod:`django_ai.conversations.api.errors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.middleware.csrf import get_token
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from ..actions import start_conversation
from ..api.throttling import AnonymousAddressThrottle, SessionStartThrottle
from ..api.views import BaseAPIView
from ..conf import ai_settings
from ..constants import BridgeAction, BuiltinModel, ErrorCode, EventName
from ..registry import registry
from ..service import ConversationService
from .catalog import exposed_models, get_exposed
from .changes import operation
from .errors import InvalidQuery, OperationNotAllowed, UnknownModel
from .exposed import ExposedModel
from .permissions import resolve_permission
from .query import run_query, serialize_instance

__all__ = [
    "CancelView",
    "ModelActionView",
    "ModelCreateView",
    "ModelDetailView",
    "NotFoundView",
    "QueryView",
    "SchemaView",
    "StartView",
]

OPERATION_ID_HEADER = "X-Operation-Id"
START_KEYS = frozenset({"agent_path", "context", "title"})


def _object_body(request: Request, *, allowed: frozenset[str] | None = None) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise InvalidQuery("The request body must be a JSON object.", code=ErrorCode.INVALID_BODY)
    if allowed is not None:
        for key in data:
            if key not in allowed:
                raise InvalidQuery(f"Unknown key {str(key)[:64]!r}.", code=ErrorCode.UNKNOWN_KEY, field=str(key)[:64])
    return data


def _operation_id(request: Request) -> str | None:
    value = request.headers.get(OPERATION_ID_HEADER)
    if value is None or value == "":
        return None
    if len(value) > 128 or not value.isascii() or not value.isprintable():
        raise InvalidQuery(
            f"{OPERATION_ID_HEADER} must be at most 128 printable ASCII characters.", field=OPERATION_ID_HEADER
        )
    return value


class StartView(BaseAPIView):
    """``POST start/``: start a conversation (the agent's ``create_context`` builds its Context).

    ``context`` holds start parameters from the client: the agent's ``validate_start_params``
    lets through only what its ``StartParams`` declares (docs/security.md).
    """

    throttle_classes = [SessionStartThrottle, AnonymousAddressThrottle]

    def post(self, request: Request) -> Response:
        body = _object_body(request, allowed=START_KEYS)
        agent_path = body.get("agent_path")
        if not isinstance(agent_path, str) or not agent_path:
            raise InvalidQuery("agent_path is required: the path an agent is registered under.", field="agent_path")
        context = body.get("context")
        if context is not None and not isinstance(context, dict):
            raise InvalidQuery("context must be an object of create_context keyword arguments.", field="context")
        title = body.get("title", "")
        if not isinstance(title, str) or len(title) > 200 or "\x00" in title:
            raise InvalidQuery("title must be a string of at most 200 characters.", field="title")
        self.check_start_permission(request)
        # The client's context is untrusted: only the agent's declared StartParams get through.
        context_kwargs = registry.get(agent_path).validate_start_params(context or {})
        with operation(_operation_id(request)):
            result = start_conversation(
                agent_path, context_kwargs=context_kwargs, request=request._request, title=title
            )
        # Cookie clients need the CSRF token for their next writes (see docs/protocol.md).
        get_token(request._request)
        return Response(result, status=status.HTTP_201_CREATED)

    def check_start_permission(self, request: Request) -> None:
        """Projects close ``start/`` with ``DJANGO_AI['BRIDGE_PERMISSION_CLASSES']`` (checked for
        ``create`` on ``session``); override for other rules."""
        exposed = get_exposed(BuiltinModel.SESSION)
        for permission in ai_settings.BRIDGE_PERMISSION_CLASSES or []:
            if not resolve_permission(permission).has_permission(request, BridgeAction.CREATE, exposed):
                raise OperationNotAllowed("You may not start conversations.")


class SchemaView(BaseAPIView):
    """``GET schema/``: the exposed models as the current caller sees them, the agents, the events,
    and the upload limit (so a client can refuse a file that is too large before sending it)."""

    def get(self, request: Request) -> Response:
        models = {name: exposed_models.get(name).describe(request) for name in exposed_models.names()}
        return Response(
            {
                "models": models,
                "agents": registry.describe(),
                "events": [str(e) for e in EventName],
                "uploads": {"max_size": int(ai_settings.MAX_UPLOAD_SIZE)},
            }
        )


class _ModelView(BaseAPIView):
    #: The action each HTTP method of the view performs: the exposed model's throttles for it apply.
    method_actions: Mapping[str, str] = {}

    def get_exposed(self) -> ExposedModel:
        return get_exposed(self.kwargs["name"])

    def get_throttles(self) -> list[Any]:
        action = self.method_actions.get(self.request.method or "")
        if action is not None:
            try:
                throttles = self.get_exposed().get_throttles(action)
            except UnknownModel:
                throttles = None  # the handler answers the 404
            if throttles is not None:
                return throttles
        return super().get_throttles()


class QueryView(_ModelView):
    """``POST models/<name>/query/``: a read, so a JSON query needs no CSRF token (see
    :meth:`~django_ai.conversations.api.views.BaseAPIView.needs_csrf_token`)."""

    reads_only = True
    method_actions = {"POST": BridgeAction.READ}

    def post(self, request: Request, name: str) -> Response:
        exposed = self.get_exposed()
        if not exposed.has_permission(request, BridgeAction.READ):
            raise OperationNotAllowed(f"You may not read {exposed.name} rows.")
        return Response(run_query(exposed, request, request.data))


class ModelCreateView(_ModelView):
    """``POST models/<name>/``: create a row; 201 with the normalized row (200 with the row
    stored the first time when the model's create is idempotent and this request repeats an
    earlier one: the message model, on ``X-Operation-Id``)."""

    method_actions = {"POST": BridgeAction.CREATE}

    def post(self, request: Request, name: str) -> Response:
        exposed = self.get_exposed()
        data = _object_body(request)
        with operation(_operation_id(request)):
            instance, replayed = exposed.create_or_replay(request, data)
        return Response(
            serialize_instance(exposed, request, instance),
            status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED,
        )


class ModelDetailView(_ModelView):
    """``PATCH`` / ``DELETE models/<name>/<pk>/``."""

    method_actions = {"PATCH": BridgeAction.UPDATE, "DELETE": BridgeAction.DELETE}

    def patch(self, request: Request, name: str, pk: str) -> Response:
        exposed = self.get_exposed()
        data = _object_body(request)
        with operation(_operation_id(request)):
            instance = exposed.update(request, pk, data)
        return Response(serialize_instance(exposed, request, instance))

    def delete(self, request: Request, name: str, pk: str) -> Response:
        exposed = self.get_exposed()
        with operation(_operation_id(request)):
            exposed.delete(request, pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CancelView(BaseAPIView):
    """``POST cancel/`` ``{"session_id"}``: stop the running turn of a conversation of the caller."""

    def post(self, request: Request) -> Response:
        body = _object_body(request, allowed=frozenset({"session_id"}))
        session_id = body.get("session_id")
        if not isinstance(session_id, str):
            raise InvalidQuery("session_id is required.", field="session_id")
        # 404 for sessions the caller may not read: ids of other owners are never confirmed.
        session = get_exposed(BuiltinModel.SESSION).get_object(request, BridgeAction.READ, session_id)
        with operation(_operation_id(request)):
            result = ConversationService.cancel_turn(session.pk, request=request._request)
        return Response(result)


class NotFoundView(BaseAPIView):
    """Any path under the app's prefix that is none of its endpoints: 404 in the error envelope,
    whatever the method (before authentication, throttling or parsing: there is nothing here)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        raise drf_exceptions.NotFound("There is no endpoint at this path; see docs/protocol.md for the paths.")


class ModelActionView(_ModelView):
    """``POST models/<name>/<pk>/<action>/``: a row action of the exposed model (``approve`` on a
    message), 200 with the row; the model's permission classes are asked about the action's name
    and its throttles are ``throttle_classes[<action>]`` (:func:`~.exposed.row_action`)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # A model without that row action has no endpoint here, whatever the method (as for any
        # other unknown path): 404 before authentication, throttles or parsing.
        try:
            known = self.kwargs["action"] in self.get_exposed().row_actions
        except UnknownModel:
            known = False
        if not known:
            raise drf_exceptions.NotFound("There is no endpoint at this path; see docs/protocol.md for the paths.")
        super().initial(request, *args, **kwargs)

    def get_throttles(self) -> list[Any]:
        throttles = self.get_exposed().get_throttles(self.kwargs["action"])
        return throttles if throttles is not None else super().get_throttles()

    def post(self, request: Request, name: str, pk: str, action: str) -> Response:
        exposed = self.get_exposed()
        data = _object_body(request)
        with operation(_operation_id(request)):
            instance = exposed.run_row_action(request, action, pk, data)
        return Response(serialize_instance(exposed, request, instance))
