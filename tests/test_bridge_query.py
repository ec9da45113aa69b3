"""Queries over HTTP: filters and exclude, ordering, pagination (limit, offset, has_more, count),
fields, include, the filters ``schema/`` lists, date-time values at the ends of the calendar.

Real parts: the database, the test client, the built-in exposed models and models exposed by the
tests (django.contrib.auth's Group, Permission).
"""

from __future__ import annotations

import datetime
import json
import uuid

import django_filters
import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_ai.conversations.bridge import expose
from django_ai.conversations.bridge.permissions import AllowAny, BasePermission, IsOwner, ReadOnly
from django_ai.conversations.constants import MessageType
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.testing.factories import (
    FileFactory,
    MessageFactory,
    SessionFactory,
    UserFactory,
    WidgetFactory,
)

from .bridge_support import (  # noqa: F401
    Api,
    ai,
    anonymous_api,
    echo_agent,
    error_codes,
    error_fields,
    fresh_bridge,
    messages_in,
    owner,
    rows,
    send_raw,
    user_api,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]


class TestQuery:
    def test_latest_messages_of_a_conversation(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        made = messages_in(session, 7)
        messages_in(SessionFactory(user=user), 3)  # another conversation of the same user
        api = user_api(user)
        response = api.query(
            "message", {"filter": {"session": str(session.pk)}, "order_by": ["-timestamp"], "limit": 5}
        )
        got = rows(response, "message")
        assert [r["content"] for r in got] == ["m6", "m5", "m4", "m3", "m2"]
        assert response.json()["meta"] == {"limit": 5, "offset": 0, "has_more": True}
        assert got[0]["id"] == str(made[6].pk) and got[0]["session"] == str(session.pk)
        nxt = api.query(
            "message",
            {
                "filter": {"session": str(session.pk)},
                "order_by": ["-timestamp"],
                "limit": 5,
                "offset": 5,
                "count": True,
            },
        )
        assert [r["content"] for r in rows(nxt, "message")] == ["m1", "m0"]
        assert nxt.json()["meta"] == {"limit": 5, "offset": 5, "has_more": False, "count": 7}

    def test_filters_exclude_and_lookups(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        start = timezone.now() - datetime.timedelta(hours=1)
        msgs = messages_in(session, 6, start=start)
        ConversationMessage.objects.filter(pk=msgs[5].pk).update(message_type=MessageType.AGENT)
        api = user_api(user)
        cut = (start + datetime.timedelta(seconds=2)).isoformat()
        got = rows(
            api.query("message", {"filter": {"timestamp__gte": cut}, "exclude": {"message_type": "agent"}}), "message"
        )
        assert [r["content"] for r in got] == ["m2", "m3", "m4"]
        got = rows(api.query("message", {"filter": {"id__in": [str(msgs[0].pk), str(msgs[3].pk)]}}), "message")
        assert [r["content"] for r in got] == ["m0", "m3"]
        # exclude is NOT (a AND b): rows matching only one condition stay
        got = rows(api.query("message", {"exclude": {"message_type": "user", "timestamp__lt": cut}}), "message")
        assert [r["content"] for r in got] == ["m2", "m3", "m4", "m5"]
        # a list of exclude objects drops each one: NOT (a) AND NOT (b), as chained .exclude() calls
        got = rows(api.query("message", {"exclude": [{"message_type": "agent"}, {"timestamp__lt": cut}]}), "message")
        assert [r["content"] for r in got] == ["m2", "m3", "m4"]
        got = rows(
            api.query(
                "message", {"exclude": [{"message_type": "user", "timestamp__lt": cut}, {"id": str(msgs[4].pk)}]}
            ),
            "message",
        )
        assert [r["content"] for r in got] == ["m2", "m3", "m5"]
        assert [r["content"] for r in rows(api.query("message", {"exclude": []}), "message")] == [
            f"m{i}" for i in range(6)
        ]
        got = rows(api.query("message", {"filter": {"reply_to__isnull": True, "session__status": "active"}}), "message")
        assert len(got) == 6
        assert rows(api.query("message", {"filter": {"session__status": "archived"}}), "message") == []
        assert len(rows(api.query("message", {"filter": {"session__exact": str(session.pk)}}), "message")) == 6

    def test_sessions_list_titles_and_ordering(self):
        user = UserFactory()
        a = SessionFactory(user=user, title="Billing question")
        b = SessionFactory(user=user, title="Shipping")
        ConversationSession.objects.filter(pk=a.pk).update(updated_at=timezone.now() + datetime.timedelta(minutes=1))
        api = user_api(user)
        assert [r["title"] for r in rows(api.query("session"), "session")] == ["Billing question", "Shipping"]
        assert [r["title"] for r in rows(api.query("session", {"order_by": ["title"]}), "session")] == [
            "Billing question",
            "Shipping",
        ]
        assert [r["id"] for r in rows(api.query("session", {"filter": {"title__icontains": "SHIP"}}), "session")] == [
            str(b.pk)
        ]
        row = rows(api.query("session"), "session")[0]
        assert set(row) == {"id", "agent_path", "title", "status", "created_at", "updated_at", "last_message_at"}

    def test_fields_narrow_the_row_and_pk_is_always_there(self):
        user = UserFactory()
        MessageFactory(session=SessionFactory(user=user))
        got = rows(user_api(user).query("message", {"fields": ["content"]}), "message")
        assert set(got[0]) == {"id", "content"}

    def test_file_text_only_when_asked(self):
        user = UserFactory()
        FileFactory(user=user, text="extracted words")
        api = user_api(user)
        row = rows(api.query("file"), "file")[0]
        assert "extracted_text" not in row and row["extraction_status"] == "done"
        assert "file" not in row  # the storage path is never served
        row = rows(api.query("file", {"fields": ["extracted_text", "filename"]}), "file")[0]
        assert row["extracted_text"] == "extracted words"

    def test_include_related_rows_without_n_plus_one(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        files = [FileFactory(user=user, session=session) for _ in range(3)]

        def make(n):
            for m in messages_in(session, n):
                m.files.set(files[:2])

        api = user_api(user)
        counts = {}
        for n in (3, 40):
            ConversationMessage.objects.filter(session=session).delete()
            make(n)
            body = {"filter": {"session": str(session.pk)}, "include": ["session", "files"], "limit": 50, "count": True}
            api.query("message", body)  # warm the auth session
            with CaptureQueriesContext(connection) as queries:
                response = api.query("message", body)
            got = rows(response, "message")
            assert len(got) == n and all(len(r["files"]) == 2 for r in got)
            included = response.json()["included"]
            assert list(included["session"]) == [str(session.pk)]
            assert set(included["file"]) == {str(f.pk) for f in files[:2]}
            counts[n] = len(queries)
        assert counts[3] == counts[40], counts
        # auth session + user, count, rows, the rows' files, included sessions, included files
        assert counts[40] <= 7, counts

    def test_a_relation_included_twice_is_included_once(self):
        # Found by test_bridge_fuzz: Django refuses the same prefetch lookup twice (a 500).
        user = UserFactory()
        session = SessionFactory(user=user)
        files = [FileFactory(user=user, session=session) for _ in range(2)]
        for m in messages_in(session, 2):
            m.files.set(files)
        response = user_api(user).query(
            "message", {"fields": ["content"], "include": ["files", "files", "session", "session"]}
        )
        assert response.status_code == 200, response.content
        assert set(response.json()["included"]["file"]) == {str(f.pk) for f in files}
        assert list(response.json()["included"]["session"]) == [str(session.pk)]

    def test_widget_rows(self):
        user = UserFactory()
        widget = WidgetFactory(session=SessionFactory(user=user), data={"slots": [1, 2]})
        got = rows(user_api(user).query("widget", {"include": ["message"]}), "widget")
        assert got[0]["data"] == {"slots": [1, 2]} and got[0]["message"] == str(widget.message_id)

    def test_anonymous_visitor_by_header_and_by_session_cookie(self):
        anon = anonymous_api()
        own = SessionFactory(anonymous_id=anon.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"])
        SessionFactory()  # somebody else's
        assert [r["id"] for r in rows(anon.query("session"), "session")] == [str(own.pk)]
        # A cookie visitor: start/ stores the id in their Django session.
        cookie = anonymous_api()
        cookie.headers.clear()
        started = cookie.post("start/", {"agent_path": "test-agent"})
        assert started.status_code == 201, started.json()
        assert started.json()["anonymous_id"].startswith("anon_")
        assert [r["id"] for r in rows(cookie.query("session"), "session")] == [started.json()["session_id"]]

    def test_limit_defaults_and_maximum(self):
        user = UserFactory()
        messages_in(SessionFactory(user=user), 5)
        api = user_api(user)
        with ai(QUERY_DEFAULT_LIMIT=2, QUERY_MAX_LIMIT=3):
            assert api.query("message").json()["meta"]["limit"] == 2
            assert len(rows(api.query("message", {"limit": 3}), "message")) == 3
            response = api.query("message", {"limit": 4})
            assert response.status_code == 400 and error_fields(response) == ["limit"]
        assert api.query("message", {"limit": 0, "count": True}).json() == {
            "data": [],
            "included": {"message": {}},
            "meta": {"limit": 0, "offset": 0, "has_more": True, "count": 5},
        }


class TestToManyPaths:
    """Filter paths across a to-many relation."""

    def test_to_many_filter_paths_do_not_repeat_rows(self):
        from django.contrib.auth.models import Permission

        class ByPermission(django_filters.FilterSet):
            class Meta:
                model = Group
                fields = {"permissions__codename": ["exact", "in"]}

        expose(
            Group,
            name="group",
            permission_classes=[AllowAny],
            read_fields=["name"],
            filterset_class=ByPermission,
            orderings=["name"],
            default_ordering=["name"],
        )
        group = Group.objects.create(name="editors")
        group.permissions.set(Permission.objects.filter(codename__in=["add_group", "change_group"]))
        Group.objects.create(name="readers")
        got = rows(
            anonymous_api().query(
                "group", {"filter": {"permissions__codename__in": ["add_group", "change_group"]}, "count": True}
            ),
            "group",
        )
        assert [r["name"] for r in got] == ["editors"]
        got = rows(anonymous_api().query("group", {"exclude": {"permissions__codename": "add_group"}}), "group")
        assert [r["name"] for r in got] == ["readers"]


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
        expose(
            ConversationSession,
            name="searchable",
            permission_classes=[IsOwner(), ReadOnly],
            read_fields=["id", "title"],
            filterset_class=SearchFilterSet,
        )
        user = UserFactory()
        SessionFactory(user=user, title="a title")
        api = user_api(user)
        models = api.get("schema/").json()["models"]
        assert models["searchable"]["filters"] == {
            "q": ["icontains"],
            "recent": ["gte"],
            "agent": ["exact"],
            "status": ["exact", "in"],
            "title": ["iexact"],
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


class Refusing(BasePermission):
    """Reads go through the per-row object check (no declaration): hides names starting 'hidden'."""

    def has_object_permission(self, request, action, obj, exposed):
        return not obj.name.startswith("hidden")


class TestHasMoreWithLimitZero:
    def test_limit_zero_says_whether_rows_follow(self):
        user = UserFactory()
        session = SessionFactory(user=user)
        for _ in range(3):
            MessageFactory(session=session)
        api = user_api(user)
        meta = lambda body: api.query("message", body).json()["meta"]  # noqa: E731
        assert meta({"limit": 0})["has_more"] is True
        assert meta({"limit": 0, "offset": 2})["has_more"] is True
        assert meta({"limit": 0, "offset": 3})["has_more"] is False
        assert meta({"limit": 0, "count": True}) == {"limit": 0, "offset": 0, "has_more": True, "count": 3}
        # Same answers as a page of one row says about what follows it.
        assert meta({"limit": 1, "offset": 2})["has_more"] is False
        assert meta({"limit": 1, "offset": 1})["has_more"] is True

    def test_the_scoped_and_the_checked_path_agree(self):
        expose(
            Group,
            name="fast",
            permission_classes=[AllowAny],
            read_fields=["name"],
            orderings=["name"],
            default_ordering=["name"],
        )
        expose(
            Group,
            name="checked",
            permission_classes=[Refusing],
            read_fields=["name"],
            orderings=["name"],
            default_ordering=["name"],
        )
        for name in ("alpha", "beta"):
            Group.objects.create(name=name)
        api = Api(anonymous_id=new_anonymous_id())
        for body in ({"limit": 0}, {"limit": 0, "offset": 1}, {"limit": 0, "offset": 2}):
            fast, checked = (api.query(n, body).json()["meta"]["has_more"] for n in ("fast", "checked"))
            assert fast == checked == (body["offset"] < 2 if "offset" in body else True), body


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+10:00", "9999-12-31T23:59:59.999999-00:30"]
)
def test_date_times_at_the_ends_of_the_calendar_are_400_not_500(owner, value):
    """Valid ISO 8601 with an offset that moves them out of the datetime range once in UTC."""
    response = send_raw(
        owner["client"], "post", "models/session/query/", json.dumps({"filter": {"created_at__gt": value}})
    )
    assert response.status_code == 400, response.content
    assert error_codes(response) == ["invalid_query"]
    assert response.json()["errors"][0]["field"] == "filter.created_at__gt"


def test_extreme_but_representable_date_times_still_filter(owner):
    response = send_raw(
        owner["client"],
        "post",
        "models/session/query/",
        json.dumps({"filter": {"created_at__gt": "0001-01-01T00:00:00Z"}}),
    )
    assert response.status_code == 200, response.content
    assert response.json()["data"] == [str(owner["session"].pk)]
