from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConversationsConfig(AppConfig):
    name = "django_ai.conversations"
    label = "django_ai_conversations"
    verbose_name = _("AI conversations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .bridge import checks as _bridge_checks  # noqa: F401
        from .extraction import checks as _extraction_checks  # noqa: F401
        from .internal import sqlite
        from .realtime import sync
        from .registry import registry

        sqlite.connect()  # SQLite transactions wait for the write lock (BEGIN IMMEDIATE)
        sync.connect()

        from . import tasks

        tasks.setup()  # enqueue turns on commit; stale-turn sweep in worker processes

        registry.load_from_settings()
