"""Gaps found in the bridge audit, over HTTP: object permission on reads, schema filters the query
accepts, URL edges (slashes, unknown paths), text fields refusing non-strings."""

from __future__ import annotations

import uuid

import django_filters
import pytest
from django.db import connection
from django.test import Client
from django.urls import include, path
from django.test.utils import CaptureQueriesContext

from django_ai.conversations.bridge import expose
from django_ai.conversations.bridge.builtins import ExposedMessage, SessionFilterSet
from django_ai.conversations.bridge.permissions import (
    AllowAny,
    BasePermission,
    DenyAll,
    IsAuthenticated,
    IsOwner,
    OnlyActions,
    ReadOnly,
)
from django_ai.conversations.bridge.catalog import exposed_models
from django_ai.conversations.constants import BridgeAction
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.testing.factories import MessageFactory, SessionFactory, UserFactory

from .bridge_support import error_codes, error_fields, echo_agent, fresh_bridge, rows, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]


class NoSecrets(BasePermission):
    """Only an object check (no scope): ``secret…`` sessions are refused for every action and
    ``hidden…`` ones for reads only."""

    def has_object_permission(self, request, action, obj, exposed):
        session = obj if isinstance(obj, ConversationSession) else obj.session
        if session.title.startswith("secret"):
            return False
        return not (action == BridgeAction.READ and session.title.startswith("hidden"))


GUARDED_PERMISSIONS = {
    "plain": [IsOwner(), NoSecrets, OnlyActions("read", "update", "delete")],
    "and-or": [IsOwner() & (NoSecrets | DenyAll), OnlyActions("read", "update", "delete")],
    "class-or": [(NoSecrets | DenyAll) & IsOwner, ~ReadOnly | OnlyActions("read", "update", "delete")],
}


@pytest.fixture(params=sorted(GUARDED_PERMISSIONS))
def guarded(request):
    expose(
        ConversationSession,
        name="guarded",
        permission_classes=GUARDED_PERMISSIONS[request.param],
        read_fields=["id", "title"],
        update_fields=["title"],
        orderings=["title"],
        default_ordering=["title"],
        filterset_class=SessionFilterSet,
    )
    exposed_models.register(
        ExposedMessage(name="guarded_message", relations={"session": "guarded"},
                       permission_classes=[IsOwner(path="session"), OnlyActions("read")])
    )
    user = UserFactory()
    made = {
        title: SessionFactory(user=user, title=title)
        for title in ("a visible", "b secret", "c visible", "secret d", "hidden e")
    }
    return user_api(user), made


class TestObjectPermissionOnReads:
    def test_query_leaves_out_rows_the_object_check_refuses(self, guarded):
        api, made = guarded
        response = api.query("guarded", {"count": True})
        assert [r["title"] for r in rows(response, "guarded")] == ["a visible", "b secret", "c visible"]
        assert response.json()["meta"] == {"limit": 50, "offset": 0, "has_more": False, "count": 3}
        assert "secret d" not in response.content.decode() and "hidden e" not in response.content.decode()

    def test_pagination_counts_only_readable_rows(self, guarded):
        api, made = guarded
        first = api.query("guarded", {"limit": 2, "count": True})
        assert [r["title"] for r in rows(first, "guarded")] == ["a visible", "b secret"]
        assert first.json()["meta"] == {"limit": 2, "offset": 0, "has_more": True, "count": 3}
        second = api.query("guarded", {"limit": 2, "offset": 2})
        assert [r["title"] for r in rows(second, "guarded")] == ["c visible"]
        # has_more is about readable rows: two refused rows follow, and they are not hinted at.
        assert second.json()["meta"] == {"limit": 2, "offset": 2, "has_more": False}
        probe = api.query("guarded", {"filter": {"id": str(made["secret d"].pk)}, "limit": 0, "count": True})
        assert probe.json() == {"data": [], "included": {"guarded": {}}, "meta": {"limit": 0, "offset": 0, "has_more": False, "count": 0}}

    def test_queries_per_request_do_not_grow_with_rows(self, guarded):
        api, made = guarded
        with CaptureQueriesContext(connection) as few:
            assert rows(api.query("guarded"), "guarded")
        for n in range(10):
            SessionFactory(user=api.user, title=f"secret {n}")
            SessionFactory(user=api.user, title=f"more {n}")
        with CaptureQueriesContext(connection) as many:
            assert len(rows(api.query("guarded"), "guarded")) == 13
        assert len(many) == len(few)

    def test_include_leaves_out_refused_related_rows(self, guarded):
        api, made = guarded
        shown = MessageFactory(session=made["a visible"])
        refused = MessageFactory(session=made["secret d"])
        response = api.query("guarded_message", {"include": ["session"], "order_by": ["timestamp"]})
        assert response.status_code == 200, response.json()
        assert response.json()["data"] == [str(shown.pk), str(refused.pk)]
        assert set(response.json()["included"]["guarded"]) == {str(made["a visible"].pk)}

    def test_update_and_delete_refuse_the_row(self, guarded):
        api, made = guarded
        secret = made["secret d"]
        assert error_codes(api.update("guarded", secret.pk, {"title": "mine now"})) == ["not_found"]
        assert error_codes(api.delete("guarded", secret.pk)) == ["not_found"]
        secret.refresh_from_db()
        assert secret.title == "secret d"

    def test_the_answer_to_a_write_leaves_out_a_row_the_caller_may_not_read(self, guarded):
        api, made = guarded
        target = made["a visible"]
        response = api.update("guarded", target.pk, {"title": "hidden now"})
        assert response.status_code == 200, response.json()
        assert response.json() == {"data": str(target.pk), "included": {"guarded": {}}, "meta": {}}
        target.refresh_from_db()
        assert target.title == "hidden now"

    def test_relation_fields_refuse_rows_the_object_check_refuses(self, guarded):
        api, made = guarded
        exposed_models.register(
            ExposedMessage(name="message", relations={"session": "session"},
                           permission_classes=[IsOwner(path="session"), OnlyActions("read", "create")])
        )
        exposed_models.register(
            type("GuardedSession", (type(exposed_models.get("session")),), {})(
                permission_classes=[IsOwner(), NoSecrets, OnlyActions("read", "update")]
            )
        )
        response = api.create("message", {"session": str(made["secret d"].pk), "content": "hi"})
        assert response.status_code == 400, response.json()
        assert error_fields(response) == ["session"]
        assert not ConversationMessage.objects.filter(session=made["secret d"]).exists()


class TestReadCheckDecision:
    """Which permissions make reads run the object check (the built-ins do not need it)."""

    class Secrets(BasePermission):
        def has_object_permission(self, request, action, obj, exposed):
            return obj.title.startswith("secret")

    class ScopedSecrets(Secrets):
        scope_matches_object_permission = True

        def scope_queryset(self, request, action, queryset, exposed):
            return queryset.filter(title__startswith="secret")

    class StricterOwner(IsOwner):
        def has_object_permission(self, request, action, obj, exposed):
            return super().has_object_permission(request, action, obj, exposed) and obj.title != "x"

    @pytest.mark.parametrize(
        ("permission", "needed"),
        [
            (IsOwner(), False),
            (IsOwner(path="session") & OnlyActions("read"), False),
            (AllowAny, False),
            (ReadOnly | DenyAll, False),
            (~IsOwner(), False),
            (Secrets, True),
            (IsOwner() & Secrets, True),
            (IsOwner() | Secrets, True),
            (~Secrets, True),
            (~AllowAny, False),
            (~IsAuthenticated, True),
            (ScopedSecrets, False),
            (~ScopedSecrets, False),
            # Overriding a declared class's check again drops the declaration.
            (StricterOwner(), True),
        ],
    )
    def test_reads_need_object_check(self, permission, needed):
        from django_ai.conversations.bridge.permissions import resolve_permission

        assert resolve_permission(permission).reads_need_object_check() is needed

    def test_builtin_models_read_without_the_per_row_check(self, rf):
        request = rf.get("/")
        for name in ("session", "message", "widget", "file"):
            assert exposed_models.get(name).get_read_check(request) is None


class SearchFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="title", lookup_expr="icontains")
    recent = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    agent = django_filters.CharFilter(method="by_agent")

    class Meta:
        model = ConversationSession
        fields = {"status": ["exact", "in"], "title": ["iexact"]}

    def by_agent(self, queryset, name, value):
        return queryset.filter(agent_path=value)


def _candidates(lookup):
    values = [str(uuid.uuid4()), "x", 1, "2025-01-01T00:00:00+00:00", True, "active", "user", "pending", "agent-path"]
    if lookup == "isnull":
        return [True]
    if lookup == "in":
        return [[v] for v in values]
    if lookup == "range":
        return [[v, v] for v in values]
    return values


class TestSchemaFilters:
    def test_every_filter_the_schema_lists_is_accepted_by_query(self):
        expose(ConversationSession, name="searchable", permission_classes=[IsOwner(), ReadOnly],
               read_fields=["id", "title"], filterset_class=SearchFilterSet)
        user = UserFactory()
        SessionFactory(user=user, title="a title")
        api = user_api(user)
        models = api.get("schema/").json()["models"]
        assert models["searchable"]["filters"] == {
            "q": ["icontains"], "recent": ["gte"], "agent": ["exact"], "status": ["exact", "in"], "title": ["iexact"],
            "pk": ["exact", "in"],  # every model's, whatever its FilterSet says
        }
        checked = 0
        for name, schema in models.items():
            assert schema["filters"], name
            for key, lookups in schema["filters"].items():
                for lookup in lookups:
                    sent = key if lookup == "exact" else f"{key}__{lookup}"
                    answers = [api.query(name, {"filter": {sent: value}, "limit": 1}) for value in _candidates(lookup)]
                    for answer in answers:
                        assert answer.status_code in (200, 400), answer.content
                        if answer.status_code == 400:
                            assert "unknown_filter" not in error_codes(answer), (name, sent, answer.json())
                    assert any(a.status_code == 200 for a in answers), (name, sent, [a.json() for a in answers])
                    checked += 1
        assert checked > 30


class TestUrlEdges:
    @pytest.mark.parametrize("debug", [True, False])
    def test_writes_without_the_trailing_slash(self, settings, debug):
        settings.DEBUG = debug
        settings.APPEND_SLASH = True
        user = UserFactory()
        session = SessionFactory(user=user, agent_path="test-agent")
        api = user_api(user)
        renamed = api._send("patch", f"models/session/{session.pk}", {"title": "renamed"})
        assert renamed.status_code == 200, renamed.content
        session.refresh_from_db()
        assert session.title == "renamed"
        created = api._send("post", "models/message", {"session": str(session.pk), "content": "hello"})
        assert created.status_code == 201, created.content
        queried = api._send("post", "models/message/query", {"filter": {"session": str(session.pk)}})
        assert [r["content"] for r in rows(queried, "message")][:1] == ["hello"]
        assert api._send("get", "schema").status_code == 200
        # The documented paths keep working.
        assert api.update("session", session.pk, {"title": "again"}).status_code == 200
        assert api.query("session").status_code == 200

    @pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
    @pytest.mark.parametrize("path", ["models/a/b/c/", "models/session/1/2", "realtime/nope/", "files/x/y", "schema/more/"])
    def test_unknown_paths_are_json_404(self, settings, method, path):
        settings.DEBUG = True
        api = user_api(UserFactory())
        response = api._send(method, path, {} if method in ("post", "patch") else None)
        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/json")
        assert error_codes(response) == ["not_found"]


class TestTextFields:
    @pytest.mark.parametrize("value", [5, 5.5, True, {"a": 1}, ["x"]])
    def test_message_content_must_be_a_string(self, value):
        user = UserFactory()
        session = SessionFactory(user=user, agent_path="test-agent")
        response = user_api(user).create("message", {"session": str(session.pk), "content": value})
        assert response.status_code == 400, response.json()
        assert error_fields(response) == ["content"]
        assert not ConversationMessage.objects.filter(session=session).exists()

    @pytest.mark.parametrize(("field", "value"), [("title", 5), ("title", False), ("status", 1)])
    def test_session_text_fields_must_be_strings(self, field, value):
        user = UserFactory()
        session = SessionFactory(user=user, title="kept")
        response = user_api(user).update("session", session.pk, {field: value})
        assert response.status_code == 400, response.json()
        assert error_fields(response) == [field]
        session.refresh_from_db()
        assert session.title == "kept" and session.status == "active"

    def test_strings_still_work(self):
        user = UserFactory()
        session = SessionFactory(user=user, title="kept")
        response = user_api(user).update("session", session.pk, {"title": "  5  "})
        assert response.status_code == 200, response.json()
        session.refresh_from_db()
        assert session.title == "  5  "


def _project_view(request):
    from django.http import HttpResponse

    return HttpResponse("the project's own page")


# A project that mounts the app at its root, with its own URLs after it.
urlpatterns = [path("", include("django_ai.conversations.urls")), path("about/", _project_view)]


def test_mounted_at_the_root_the_app_leaves_other_paths_to_the_project(settings):
    settings.ROOT_URLCONF = __name__
    client = Client()
    assert client.get("/about/").content == b"the project's own page"
    assert client.get("/models/a/b/c/").status_code == 404
    assert client.get("/models/a/b/c/").json()["errors"][0]["code"] == "not_found"
