"""Exposing a model of one's own: one ``expose()`` call serves it (reads, filters, writes, hooks),
and a wrong declaration stops start-up with ImproperlyConfigured.
"""

from __future__ import annotations

import django_filters
import pytest
from django.contrib.auth.models import Group

from django_ai.conversations.bridge import expose
from django_ai.conversations.bridge.builtins import MessageFilterSet
from django_ai.conversations.bridge.permissions import AllowAny

from .bridge_support import anonymous_api, echo_agent, error_codes, fresh_bridge, rows  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_bridge", "echo_agent")]


class GroupFilterSet(django_filters.FilterSet):
    class Meta:
        model = Group
        fields = {"name": ["exact", "startswith"]}


class TestRegistration:
    """``expose()`` and the declaration checks."""

    def test_expose_any_model_in_one_registration(self):
        seen = []
        expose(
            Group,
            name="group",
            permission_classes=[AllowAny],
            read_fields=["name"],
            create_fields=["name"],
            update_fields=["name"],
            filterset_class=GroupFilterSet,
            orderings=["name"],
            default_ordering=["name"],
            hooks=[lambda **kw: seen.append((kw["operation"], kw["phase"], kw["instance"].name, kw["request"].method))],
        )
        api = anonymous_api()
        created = api.create("group", {"name": "beta"})
        assert created.status_code == 201, created.json()
        Group.objects.create(name="alpha")
        assert [r["name"] for r in rows(api.query("group"), "group")] == ["alpha", "beta"]
        assert [r["name"] for r in rows(api.query("group", {"filter": {"name__startswith": "al"}}), "group")] == [
            "alpha"
        ]
        pk = created.json()["data"]
        assert api.update("group", pk, {"name": "gamma"}).status_code == 200
        assert api.delete("group", pk).status_code == 204
        assert seen == [
            ("create", "before", "beta", "POST"),
            ("create", "after", "beta", "POST"),
            ("update", "before", "gamma", "PATCH"),
            ("update", "after", "gamma", "PATCH"),
            ("delete", "before", "gamma", "DELETE"),
            ("delete", "after", "gamma", "DELETE"),
        ]
        response = api.query("group", {"filter": {"permissions__codename": "x"}})
        assert response.status_code == 400 and error_codes(response) == ["unknown_filter"]

    def test_bad_declarations_fail_at_registration(self):
        from django.core.exceptions import ImproperlyConfigured

        for options in (
            {"read_fields": ["nope"]},
            {"create_fields": ["id"]},
            {"orderings": ["permissions__codename"]},
            {"orderings": ["nope"]},
            {"orderings": ["name"], "default_ordering": ["-id"]},
            {"relations": {"user": "user"}},
            {"relations": {"nope": "user"}},
            {"filterset_class": MessageFilterSet},
        ):
            with pytest.raises(ImproperlyConfigured):
                expose(
                    Group,
                    name="group",
                    permission_classes=[AllowAny],
                    read_fields=options.pop("read_fields", ["name"]),
                    **options,
                )
