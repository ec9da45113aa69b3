from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConversationsConfig(AppConfig):
    name = "django_ai.conversations"
    label = "django_ai_conversations"
    verbose_name = _("AI conversations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these modules load the models, which Django imports
        # after the app configs.
        from . import checks  # noqa: F401  (registers the system checks)
        from .api import checks as _api_checks  # noqa: F401
        from .files.extraction import checks as _extraction_checks  # noqa: F401
        from .internal import sqlite
        from .realtime import sync
        from .registry import registry
        from .turns import checks as _turn_checks  # noqa: F401
        from .turns import hooks, sweeps, wakeup

        sqlite.connect()  # SQLite transactions wait for the write lock (BEGIN IMMEDIATE)
        sync.connect()
        hooks.connect()  # enqueue turns on commit
        sweeps.connect()  # a web process whose turns run in-process sweeps from its first request
        wakeup.connect()  # PostgreSQL: NOTIFY the task workers when django-tasks-db stores a task
        sweeps.autostart()  # TURN_RECOVERY_LOOP (task workers): sweep at start and periodically

        registry.load_from_settings()
