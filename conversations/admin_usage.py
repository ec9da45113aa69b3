"""Usage and cost in the admin (docs/observability.md, "Usage and cost"): the conversation list's
filters by cost and by kind of owner, and the "Usage by owner" page (the sums of each owner's
conversations, most expensive first), linked from the conversation list. Staff only, and only for
those who may view conversations.

An anonymous owner is shown by the first characters of their id, never the whole of it: the id
is the visitor's key to their conversations, and a link carrying it would leave it in access
logs. The page's link to their conversations filters by that prefix.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.contrib.admin import AdminSite, SimpleListFilter
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode

from .models import ConversationSession
from .usage import usage_by_owner

__all__ = ["CostFilter", "OwnerKindFilter", "format_cost", "format_tokens", "usage_urls"]

URL_NAME = "django_ai_conversations_usage_by_owner"
#: Owners per page of "Usage by owner".
PAGE_SIZE = 100
#: Characters shown of an anonymous owner's id (``anon_`` and 7 of its 43 random ones).
ANONYMOUS_PREFIX_CHARS = 12


def format_tokens(count: int | None) -> str:
    """``1234`` -> ``1,234``; ``1234567`` -> ``1.2M``: short enough for a list column."""
    count = count or 0
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    return f"{count:,}"


def format_cost(cost: Decimal | None) -> str:
    """USD with 4 decimals (``$0.0123``), ``-`` for nothing spent or no price known."""
    if not cost:
        return "-"
    return f"${cost:,.4f}" if cost >= Decimal("0.0001") else "<$0.0001"


class OwnerKindFilter(SimpleListFilter):
    """Conversations of users, of anonymous visitors, or of no one (made by code for nobody)."""

    title = "owner kind"
    parameter_name = "owner_kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("user", "User"), ("anonymous", "Anonymous"), ("none", "None")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ConversationSession]) -> QuerySet[ConversationSession]:
        value = self.value()
        if value == "user":
            return queryset.filter(user__isnull=False)
        if value == "anonymous":
            return queryset.filter(user__isnull=True).exclude(anonymous_id="")
        if value == "none":
            return queryset.filter(user__isnull=True, anonymous_id="")
        return queryset


class CostFilter(SimpleListFilter):
    """Conversations by what their turns cost (USD): none known, any, or a range."""

    title = "cost"
    parameter_name = "cost"
    RANGES = {
        "none": Q(cost=0),
        "any": Q(cost__gt=0),
        "under-0.01": Q(cost__gt=0, cost__lt=Decimal("0.01")),
        "0.01-1": Q(cost__gte=Decimal("0.01"), cost__lt=1),
        "1-plus": Q(cost__gte=1),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("none", "No cost"),
            ("any", "Has a cost"),
            ("under-0.01", "Under $0.01"),
            ("0.01-1", "$0.01 to $1"),
            ("1-plus", "$1 or more"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ConversationSession]) -> QuerySet[ConversationSession]:
        condition = self.RANGES.get(self.value() or "")
        return queryset if condition is None else queryset.filter(condition)


def usage_urls(model_admin: admin.ModelAdmin[Any]) -> list[URLPattern]:
    """The page's URL (``usage-by-owner/`` under the conversation admin's), behind the site's
    staff login."""
    site: AdminSite = model_admin.admin_site

    def view(request: HttpRequest) -> HttpResponse:
        return usage_by_owner_view(request, model_admin)

    return [path("usage-by-owner/", site.admin_view(view), name=URL_NAME)]


def usage_by_owner_view(request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> HttpResponse:
    """Each owner's conversations, tokens and cost (all time; ``?agent_path=`` narrows to one
    agent), most expensive first, 100 a page, with the totals of all."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    sessions = ConversationSession.objects.all()
    agent = request.GET.get("agent_path", "")
    if agent:
        sessions = sessions.filter(agent_path=agent)
    page = Paginator(usage_by_owner(sessions), PAGE_SIZE).get_page(request.GET.get("p"))
    users = get_user_model()._default_manager.in_bulk([row["user"] for row in page if row["user"] is not None])
    changelist = reverse(f"{model_admin.admin_site.name}:django_ai_conversations_conversationsession_changelist")
    rows = []
    for row in page:
        narrow = {"agent_path__exact": agent} if agent else {}
        if row["user"] is not None:
            owner, kind = str(users.get(row["user"], row["user"])), "user"
            narrow["user__id__exact"] = row["user"]
        elif row["anonymous_id"]:
            owner, kind = row["anonymous_id"][:ANONYMOUS_PREFIX_CHARS] + "…", "anonymous"
            narrow["anonymous_id__startswith"] = row["anonymous_id"][:ANONYMOUS_PREFIX_CHARS]
        else:
            owner, kind = "(no owner)", "none"
            narrow["owner_kind"] = "none"
        rows.append(
            {
                "owner": owner,
                "kind": kind,
                "link": f"{changelist}?{urlencode(narrow)}",
                "conversations": row["conversations"],
                "prompt_tokens": format_tokens(row["prompt_tokens"]),
                "completion_tokens": format_tokens(row["completion_tokens"]),
                "cost": format_cost(row["cost"]),
            }
        )
    totals = sessions.aggregate(
        conversations=Count("pk"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), cost=Sum("cost")
    )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Usage by owner",
        "opts": model_admin.model._meta,
        "rows": rows,
        "page": page,
        "agent": agent,
        "agents": ConversationSession.objects.order_by("agent_path").values_list("agent_path", flat=True).distinct(),
        "totals": {
            "conversations": totals["conversations"],
            "prompt_tokens": format_tokens(totals["prompt"]),
            "completion_tokens": format_tokens(totals["completion"]),
            "cost": format_cost(totals["cost"]),
        },
        "changelist": changelist,
    }
    return TemplateResponse(request, "admin/django_ai_conversations/usage_by_owner.html", context)
