"""Example agents of the demo."""

from pydantic import BaseModel

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import ResponseStream, display_widget


class EchoAgent(ConversationAgent):
    """Repeats what you say."""

    async def get_response(self, message, request=None, **kwargs):
        return f"You said: {message}"


class SupportAgent(ConversationAgent):
    """Customer support: streams its answers and books appointments."""

    class Context(BaseModel):
        user_id: int = 0
        support_tier: str = "basic"
        message_count: int = 0

    @classmethod
    def create_context(cls, request=None, **kwargs):
        user = request.user if request and request.user.is_authenticated else None
        return cls.Context(user_id=user.id if user else 0, support_tier=kwargs.get("tier", "basic"))

    async def get_response(self, message, request=None, **kwargs):
        self.context.message_count += 1
        if "hello" in message.lower():
            return "Hello! How can I help you today?"
        if "appointment" in message.lower() or "book" in message.lower():
            display_widget(
                "appointment_form",
                {"available_slots": ["2024-01-15 10:00", "2024-01-15 14:00"], "callback_url": "/api/book-appointment"},
            )
            return "Please select your preferred time above."
        with ResponseStream() as stream:
            stream.write("Let me check that for you. ")
            for word in f"As a {self.context.support_tier} customer, here is what I found about: {message}".split():
                stream.write(word + " ")
        return stream.content
