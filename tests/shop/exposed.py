"""The shop's models exposed through the bridge, as a project does it in ``AppConfig.ready()``.

Tests that reset the exposed models (``fresh_bridge``) call :func:`expose_shop` again.
"""

from __future__ import annotations

import django_filters

from django_ai.conversations.bridge import ExposedModel, expose
from django_ai.conversations.bridge.permissions import IsAuthenticated, IsOwner, OnlyActions
from django_ai.conversations.realtime.channels import owner_channel_for_session, session_channel

from .models import Order, Ticket


class OrderFilterSet(django_filters.FilterSet):
    class Meta:
        model = Order
        fields = {
            "id": ["exact", "in", "gt"],
            "total": ["exact", "gte", "lt", "in", "range"],
            "big": ["exact", "gt", "in"],
            "duration": ["exact", "gte", "isnull"],
            "reference": ["exact", "in"],
            "status": ["exact", "in"],
        }


class TicketFilterSet(django_filters.FilterSet):
    class Meta:
        model = Ticket
        fields = {"code": ["exact", "in"], "session": ["exact"], "order": ["exact", "isnull"], "subject": ["icontains"]}


class ExposedOrder(ExposedModel):
    """Signed-in users create orders of their own: the owner is the caller, never a field."""

    def get_create_defaults(self, request, data):
        return {"owner": request.user}


class ExposedTicket(ExposedModel):
    """Tickets are written by the shop's agent as well as through the bridge: every save is
    announced (``announce_all_saves``), to the conversation and to its owner, whoever writes."""

    announce_all_saves = True

    def get_change_channels(self, request, instance):
        channels = [session_channel(instance.session_id), owner_channel_for_session(instance.session)]
        return [c for c in channels if c]


def expose_shop() -> None:
    expose(
        Order,
        exposed_class=ExposedOrder,
        permission_classes=[IsAuthenticated, IsOwner(path="owner"), OnlyActions("read", "create", "update", "delete")],
        read_fields=["id", "total", "big", "duration", "reference", "status"],
        create_fields=["total", "big", "duration", "status"],
        update_fields=["total", "big", "duration", "status"],
        filterset_class=OrderFilterSet,
        orderings=["id", "total", "big"],
        default_ordering=["id"],
    )
    expose(
        Ticket,
        exposed_class=ExposedTicket,
        permission_classes=[IsOwner(path="session"), OnlyActions("read", "create", "update", "delete")],
        read_fields=["code", "session", "subject", "order"],
        create_fields=["session", "subject", "order"],
        update_fields=["subject", "order"],
        filterset_class=TicketFilterSet,
        orderings=["code"],
        default_ordering=["code"],
        relations={"session": "session", "order": "order"},
    )
