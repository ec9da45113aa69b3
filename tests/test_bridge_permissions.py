"""Permission classes: who may read and change which rows. The object check on reads (rows,
pagination, include, write answers, relation fields), when reads may skip it, how classes compose
(& | ~), default deny, staff access, project-wide classes.

Real parts: the database, the test client, the built-in exposed models.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_ai.conversations.bridge import expose
from django_ai.conversations.bridge.builtins import ExposedMessage, ExposedSession, SessionFilterSet
from django_ai.conversations.bridge.catalog import exposed_models
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
from django_ai.conversations.constants import BridgeAction
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.testing.factories import MessageFactory, SessionFactory, UserFactory

from .bridge_support import ai, anonymous_api, echo_agent, error_codes, error_fields, fresh_bridge, rows, user_api  # noqa: F401
from .helpers import make_request

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
        ExposedMessage(
            name="guarded_message",
            relations={"session": "guarded"},
            permission_classes=[IsOwner(path="session"), OnlyActions("read")],
        )
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
        assert probe.json() == {
            "data": [],
            "included": {"guarded": {}},
            "meta": {"limit": 0, "offset": 0, "has_more": False, "count": 0},
        }

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
            ExposedMessage(
                name="message",
                relations={"session": "session"},
                permission_classes=[IsOwner(path="session"), OnlyActions("read", "create")],
            )
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
        assert list(ExposedSession().get_queryset(request, "create")) == []
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
        with pytest.raises(ValueError, match="'drop it' is not a valid"):
            OnlyActions("read", "drop it")
        # A name that is no bridge action nor a row action of the model: refused when exposed.
        with pytest.raises(ImproperlyConfigured, match="'drop' is neither a bridge action"):
            ExposedSession(permission_classes=[IsOwner(), OnlyActions("read", "drop")])


class TestModelPermissions:
    """The permission classes of an exposed model, and the project's own."""

    def test_no_permission_classes_means_no_access(self):
        expose(Group, name="group", read_fields=["name"], create_fields=["name"])
        Group.objects.create(name="hidden")
        api = anonymous_api()
        assert api.query("group").status_code == 403
        assert api.create("group", {"name": "x"}).status_code == 403
        assert Group.objects.count() == 1

    def test_read_only_composition(self):
        expose(
            Group, name="group", permission_classes=[AllowAny & ReadOnly], read_fields=["name"], create_fields=["name"]
        )
        Group.objects.create(name="visible")
        api = anonymous_api()
        assert [r["name"] for r in rows(api.query("group"), "group")] == ["visible"]
        assert api.create("group", {"name": "x"}).status_code == 403

    def test_staff_access_is_opt_in(self):
        staff = UserFactory(is_staff=True)
        others = SessionFactory(user=UserFactory())
        api = user_api(staff)
        assert rows(api.query("session"), "session") == []
        from django_ai.conversations.bridge import bridge_registry  # the name docs/bridge.md first used
        from django_ai.conversations.bridge.builtins import ExposedSession

        bridge_registry.register(ExposedSession(permission_classes=[IsOwner() | IsStaff]))
        assert [r["id"] for r in rows(api.query("session"), "session")] == [str(others.pk)]
        assert api.update("session", others.pk, {"title": "Checked by support"}).status_code == 200
        # A non-staff user still sees only their own.
        assert rows(user_api(UserFactory()).query("session"), "session") == []

    def test_global_permission_classes_close_the_bridge_to_visitors(self):
        anon = anonymous_api()
        SessionFactory(anonymous_id=anon.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"])
        with ai(BRIDGE_PERMISSION_CLASSES=["django_ai.conversations.bridge.permissions.IsAuthenticated"]):
            assert anon.query("session").status_code == 403
            assert anon.post("start/", {"agent_path": "test-agent"}).status_code == 403
        assert len(rows(anon.query("session"), "session")) == 1
