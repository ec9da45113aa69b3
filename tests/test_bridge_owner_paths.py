"""``IsOwner(path=...)`` on models of a project: a plain foreign key to the user, a path through a
conversation, and paths it cannot use, refused when the model is exposed (never at request time).

Django's own ``admin.LogEntry`` stands in for a project's user-owned model: an integer primary key
and ``user = ForeignKey(User)``, no anonymous owner. Real parts: the demo project's URLs, the
database, the test client.
"""

from __future__ import annotations

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured

from django_ai.conversations.bridge import expose
from django_ai.conversations.bridge.permissions import IsOwner, IsStaff, OnlyActions
from django_ai.conversations.models import ConversationWidget
from django_ai.conversations.testing import UserFactory

from .bridge_support import anonymous_api, error_codes, fresh_bridge, rows, user_api  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge")]


def log_entry(user, text: str) -> LogEntry:
    return LogEntry.objects.create(
        user=user,
        content_type=ContentType.objects.get_for_model(LogEntry),
        object_repr=text,
        action_flag=ADDITION,
    )


@pytest.fixture
def entries():
    expose(
        LogEntry,
        name="entry",
        permission_classes=[IsOwner(path="user"), OnlyActions("read", "update", "delete")],
        read_fields=["id", "object_repr", "user"],
        update_fields=["object_repr"],
        orderings=["id"],
        default_ordering=["id"],
    )
    alice, bob = UserFactory(), UserFactory()
    return {
        "alice": alice,
        "bob": bob,
        "a1": log_entry(alice, "a1"),
        "a2": log_entry(alice, "a2"),
        "b1": log_entry(bob, "b1"),
    }


def test_a_plain_user_foreign_key_scopes_reads(entries):
    got = rows(user_api(entries["alice"]).query("entry"), "entry")
    assert [r["object_repr"] for r in got] == ["a1", "a2"]
    assert rows(user_api(entries["bob"]).query("entry"), "entry")[0]["object_repr"] == "b1"
    # Anonymous visitors own no rows of a user-owned model.
    assert rows(anonymous_api().query("entry"), "entry") == []


def test_writes_reach_only_the_owners_rows(entries):
    bob = user_api(entries["bob"])
    assert error_codes(bob.update("entry", entries["a1"].pk, {"object_repr": "mine now"})) == ["not_found"]
    assert bob.delete("entry", entries["a1"].pk).status_code == 404
    assert LogEntry.objects.get(pk=entries["a1"].pk).object_repr == "a1"
    alice = user_api(entries["alice"])
    assert alice.update("entry", entries["a1"].pk, {"object_repr": "renamed"}).status_code == 200
    assert alice.delete("entry", entries["a2"].pk).status_code == 204
    assert sorted(LogEntry.objects.values_list("object_repr", flat=True)) == ["b1", "renamed"]
    assert anonymous_api().update("entry", entries["b1"].pk, {"object_repr": "x"}).status_code in (403, 404)


def test_a_path_that_ends_at_the_user_model_after_several_hops(entries):
    """widget -> session -> user is an owner row; a path may also end at the user through hops."""
    expose(
        get_user_model(),
        name="me",
        permission_classes=[IsOwner(), OnlyActions("read")],
        read_fields=["id", "username"],
    )
    got = rows(user_api(entries["alice"]).query("me"), "me")
    assert [r["username"] for r in got] == [entries["alice"].username]


@pytest.mark.parametrize(
    ("model", "permission", "reason"),
    [
        (LogEntry, IsOwner(path="owner"), "has no field 'owner'"),
        (LogEntry, IsOwner(), "neither the user model nor a model with `user` and `anonymous_id`"),
        (LogEntry, IsOwner(path="content_type"), "ends at contenttypes.ContentType"),
        (LogEntry, IsOwner(path="object_repr"), "is not a foreign key"),
        (LogEntry, IsOwner(path="user__groups"), "is not a foreign key"),
        (ConversationWidget, IsOwner(path="session__title"), "is not a foreign key"),
        (LogEntry, IsOwner(path="owner") | IsStaff, "has no field 'owner'"),
        (LogEntry, ~IsOwner(path="owner"), "has no field 'owner'"),
    ],
)
def test_a_path_it_cannot_use_is_refused_when_exposed(model, permission, reason):
    with pytest.raises(ImproperlyConfigured) as raised:
        expose(model, name="broken", permission_classes=[permission], read_fields=["id"])
    message = str(raised.value)
    assert reason in message
    assert 'IsOwner(path="owner")' in message and 'IsOwner(path="session")' in message  # the fix


def test_a_path_through_the_session_still_works_for_visitors():
    from django_ai.conversations.testing import SessionFactory, WidgetFactory

    expose(
        ConversationWidget, name="w", permission_classes=[IsOwner(path="session")], read_fields=["id", "widget_type"]
    )
    api = anonymous_api()
    anonymous_id = api.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"]
    mine = WidgetFactory(session=SessionFactory(user=None, anonymous_id=anonymous_id))
    WidgetFactory(session=SessionFactory(user=None, anonymous_id="anon_" + "x" * 40))
    assert [r["id"] for r in rows(api.query("w"), "w")] == [str(mine.pk)]
