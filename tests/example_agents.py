"""Agents of the README shared by tests that need them as they are written there (issue 12 will
gather the other copies here)."""

from __future__ import annotations

from pydantic import BaseModel

from django_ai.conversations import ConversationAgent


class ReadmeSupportAgent(ConversationAgent):
    """The README's SupportAgent: create_context reads the user from the request and the plan
    from its keyword arguments."""

    class Context(BaseModel):
        user_id: int = 0
        support_tier: str = "basic"

    @classmethod
    def create_context(cls, request=None, **kwargs):
        user = request.user if request and request.user.is_authenticated else None
        return cls.Context(user_id=user.id if user else 0, support_tier=kwargs.get("tier", "basic"))

    async def get_response(self, message, request=None, **kwargs):
        return "ok"
