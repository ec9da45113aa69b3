"""The error envelope of BridgeAPIView, and the permission classes' composition rules."""

from __future__ import annotations

import logging

import pytest
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from django_ai.conversations.bridge.base import BridgeAPIView
from django_ai.conversations.bridge.builtins import ExposedMessage, ExposedSession
from django_ai.conversations.bridge.permissions import (
    AllowAny,
    BasePermission,
    DenyAll,
    IsAuthenticated,
    IsOwner,
    IsStaff,
    OnlyActions,
    ReadOnly,
    resolve_permission,
)
from django_ai.conversations.exceptions import ContextValidationError, SessionNotActive, TurnInProgress
from django_ai.conversations.models import ConversationSession
from django_ai.conversations.testing.factories import SessionFactory, UserFactory

from .bridge_support import fresh_bridge  # noqa: F401
from .helpers import make_request


class _Raises(BridgeAPIView):
    exc: BaseException

    def post(self, request):
        raise self.exc


class _Serializer(serializers.Serializer):
    title = serializers.CharField(max_length=3)
    tags = serializers.ListField(child=serializers.IntegerField())
    nested = serializers.DictField(child=serializers.IntegerField())


class _Validates(BridgeAPIView):
    def post(self, request):
        s = _Serializer(data=request.data)
        s.is_valid(raise_exception=True)
        return None


def _answer(exc):
    view = type("V", (_Raises,), {"exc": exc}).as_view()
    response = view(APIRequestFactory().post("/x/", {}, format="json"))
    response.render()
    return response


@pytest.mark.parametrize(
    ("exc", "status", "code", "field"),
    [
        (SessionNotActive("Closed.", field="session"), 409, "session_not_active", "session"),
        (TurnInProgress(), 409, "turn_in_progress", None),
        (Http404("secret path /etc/x"), 404, "not_found", None),
        (PermissionDenied(), 403, "permission_denied", None),
        (RequestDataTooBig(), 413, "request_too_large", None),
        (drf_exceptions.Throttled(wait=12), 429, "throttled", None),
        (drf_exceptions.ParseError(), 400, "parse_error", None),
        (drf_exceptions.MethodNotAllowed("PUT"), 405, "method_not_allowed", None),
        (drf_exceptions.NotAuthenticated(), 403, "not_authenticated", None),
        (drf_exceptions.AuthenticationFailed("bad token"), 403, "authentication_failed", None),
    ],
)
def test_known_errors_become_the_envelope(exc, status, code, field):
    response = _answer(exc)
    assert response.status_code == status
    error = response.data["errors"][0]
    assert error["code"] == code and error.get("field") == field and error["message"]
    assert "secret path" not in error["message"]
    if status == 429:
        assert response["Retry-After"] == "12"


def test_validation_errors_one_entry_per_field():
    view = _Validates.as_view()
    response = view(APIRequestFactory().post("/x/", {"title": "long", "tags": ["a", 2], "nested": {"k": "v"}}, format="json"))
    response.render()
    assert response.status_code == 400
    fields = sorted((e["field"], e["code"]) for e in response.data["errors"])
    assert fields == [("nested.k", "invalid"), ("tags.0", "invalid"), ("title", "max_length")]


def test_context_errors_keep_their_fields():
    exc = ContextValidationError("bad", errors=[{"field": "tier", "message": "not allowed"}, {"message": "general"}])
    errors = _answer(exc).data["errors"]
    assert errors == [
        {"code": "invalid_context", "message": "not allowed", "field": "tier"},
        {"code": "invalid_context", "message": "general"},
    ]


def test_unknown_errors_stay_real_500s(caplog):
    with pytest.raises(ZeroDivisionError):
        _answer(ZeroDivisionError("boom"))


def test_server_side_conversation_errors_are_logged(caplog):
    from django_ai.conversations.exceptions import NoActiveConversation

    with caplog.at_level(logging.ERROR, logger="django_ai.conversations.bridge"):
        response = _answer(NoActiveConversation("outside a turn"))
    assert response.status_code == 500 and response.data["errors"][0]["code"] == "no_active_conversation"
    assert "outside a turn" in caplog.text


def test_unmatched_methods_and_media_types():
    response = type("V", (_Raises,), {"exc": ValueError()}).as_view()(APIRequestFactory().get("/x/"))
    response.render()
    assert response.status_code == 405 and response.data["errors"][0]["code"] == "method_not_allowed"


class _Flag(BasePermission):
    def __init__(self, allow, *, fields=None, scope=None, obj=True):
        self.allow, self.fields, self.scope, self.obj = allow, fields, scope, obj

    def has_permission(self, request, action, exposed):
        return self.allow

    def scope_queryset(self, request, action, queryset, exposed):
        return queryset.filter(title__in=self.scope) if self.scope is not None else queryset

    def has_object_permission(self, request, action, obj, exposed):
        return self.obj

    def get_fields(self, request, action, exposed):
        return self.fields


@pytest.mark.django_db
class TestComposition:
    def _titles(self, permission, request):
        exposed = ExposedSession(permission_classes=[permission])
        return sorted(exposed.get_queryset(request).values_list("title", flat=True))

    def test_and_or_not_on_answers_scopes_and_fields(self, fresh_bridge):
        for title in ("a", "b", "c"):
            SessionFactory(title=title)
        request = make_request()
        exposed = ExposedSession()
        a = _Flag(True, fields={"title", "status"}, scope=["a", "b"])
        b = _Flag(True, fields={"title", "created_at"}, scope=["b", "c"])
        no = _Flag(False, fields={"agent_path"}, scope=["a"], obj=False)
        assert self._titles(a & b, request) == ["b"]
        assert self._titles(a | b, request) == ["a", "b", "c"]
        assert self._titles(a | no, request) == ["a", "b"]  # a refusing operand adds no rows
        assert self._titles(~_Flag(True, scope=["a"]), request) == []  # ~allowed is refused
        assert self._titles(~_Flag(False, scope=["a"]), request) == ["b", "c"]  # rows outside its scope
        assert self._titles(no & a, request) == []
        assert set((a & b).get_fields(request, "read", exposed)) == {"title"}
        assert set((a | b).get_fields(request, "read", exposed)) == {"title", "status", "created_at"}
        assert set((a | no).get_fields(request, "read", exposed)) == {"title", "status"}
        obj = ConversationSession.objects.first()
        assert (a | no).has_object_permission(request, "read", obj, exposed)
        assert not (a & no).has_object_permission(request, "read", obj, exposed)
        assert (~no).has_object_permission(request, "read", obj, exposed)
        assert not (~a).has_permission(request, "read", exposed)

    def test_classes_compose_too(self):
        composed = IsAuthenticated | IsStaff
        assert repr(composed) == "(IsAuthenticated() | IsStaff())"
        assert repr(~ReadOnly & AllowAny) == "(~ReadOnly() & AllowAny())"
        assert isinstance(resolve_permission("django_ai.conversations.bridge.permissions.DenyAll"), DenyAll)
        with pytest.raises(TypeError):
            resolve_permission(object())

    def test_fields_narrowing_reaches_the_exposed_model(self, fresh_bridge):
        user = UserFactory()
        exposed = ExposedSession(permission_classes=[IsOwner(), _Flag(True, fields={"title"})])
        fields = exposed.get_fields(make_request(user), "read")
        assert fields == ["id", "title"]  # the pk always, the rest narrowed

    def test_only_actions_and_is_owner(self, fresh_bridge):
        user = UserFactory()
        mine = SessionFactory(user=user)
        SessionFactory(user=UserFactory())
        request = make_request(user)
        exposed = ExposedMessage()
        assert exposed.has_permission(request, "read") and exposed.has_permission(request, "create")
        assert not exposed.has_permission(request, "delete") and not exposed.has_permission(request, "update")
        assert list(ExposedSession().get_queryset(request).values_list("pk", flat=True)) == [mine.pk]
        assert list(ExposedSession().get_queryset(request, "delete")) == []
        visitor = make_request()
        assert not IsOwner().has_permission(visitor, "create", exposed)
        assert list(ExposedSession().get_queryset(visitor)) == []

    def test_no_classes_deny_everything(self, fresh_bridge):
        SessionFactory()
        exposed = ExposedSession(permission_classes=[])
        request = make_request(UserFactory(is_staff=True, is_superuser=True))
        assert list(exposed.get_queryset(request)) == []
        assert exposed.allowed_actions(request) == []
        assert not exposed.has_object_permission(request, "read", ConversationSession.objects.first())

    def test_only_actions_rejects_unknown_actions(self):
        with pytest.raises(ValueError):
            OnlyActions("read", "drop")
