"""The shop's agent: a project's own agent that files support tickets (:class:`~.models.Ticket`)
in the conversation with the ORM, as agent code does. The SDK's tests watch those rows live
(frontend_client/test/live-project-model.test.ts): the tickets reach a client only through the
``model_change`` events of the exposed ``ticket`` model.

- ``open <subject>``: a new ticket of this conversation; the reply is its code.
- ``rename <code> <subject>``: a ticket of this conversation gets a new subject.
"""

from __future__ import annotations

from django_ai.conversations import ConversationAgent

from .models import Ticket


class TicketAgent(ConversationAgent):
    """Opens and renames tickets of the conversation; answers with the ticket's code."""

    display_name = "Shop tickets"

    def get_response(self, message, request=None, **kwargs):
        command, _, rest = message.strip().partition(" ")
        if command == "open":
            return Ticket.objects.create(session=self.session, subject=rest).code
        if command == "rename":
            code, _, subject = rest.partition(" ")
            ticket = Ticket.objects.get(session=self.session, code=code)
            ticket.subject = subject
            ticket.save(update_fields=["subject"])
            return ticket.code
        return "Say 'open <subject>' or 'rename <code> <subject>'."
