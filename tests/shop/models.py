import uuid

from django.conf import settings
from django.db import models

from django_ai.conversations.models import ConversationSession


class Order(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shop_orders")
    total = models.DecimalField(max_digits=12, decimal_places=2)
    big = models.BigIntegerField(default=0)
    duration = models.DurationField(null=True, blank=True)
    reference = models.UUIDField(default=uuid.uuid4)
    status = models.CharField(
        max_length=20, default="open", choices=[("open", "open"), ("paid", "paid"), ("shipped", "shipped")]
    )

    class Meta:
        ordering = ["id"]


def new_ticket_code() -> str:
    return f"T-{uuid.uuid4().hex[:8]}"


class Ticket(models.Model):
    code = models.CharField(primary_key=True, max_length=20, default=new_ticket_code)
    session = models.ForeignKey(ConversationSession, on_delete=models.CASCADE, related_name="shop_tickets")
    subject = models.CharField(max_length=200)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")

    class Meta:
        ordering = ["code"]
