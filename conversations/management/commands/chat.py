"""``python manage.py chat``: an alias of ``ai_chat`` (see there). Projects whose own app defines
``chat`` and comes first in INSTALLED_APPS keep theirs; ``ai_chat`` always reaches this one."""

from .ai_chat import Command as AIChatCommand


class Command(AIChatCommand):
    help = "Alias of ai_chat: " + AIChatCommand.help
