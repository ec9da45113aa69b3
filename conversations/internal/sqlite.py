"""SQLite connections that wait for the write lock instead of failing with "database is locked".

The embedded defaults write from several threads of one process at once: the in-process task
threads extract a file while a turn saves its messages. SQLite lets one connection write at a
time, and a connection waits for the lock (up to ``OPTIONS["timeout"]``, 5 s by default) in every
case but one: a transaction that has already read and then wants to write while another
connection writes gets ``database is locked`` at once, because waiting could deadlock. Django's
default ``BEGIN`` (DEFERRED) opens exactly such transactions: ``atomic()`` blocks that read a row,
then save it.

Django 5.1+ has the cure, ``OPTIONS["transaction_mode"] = "IMMEDIATE"``: each transaction takes
the write lock when it begins, so it waits its turn like any other write. A project that leaves
``transaction_mode`` unset gets it on its SQLite connections from here; one that sets it keeps its
choice, and ``DEFERRED`` is reported by the check ``django_ai.W060``. Nothing else of the
connection is changed (WAL is a property of the database file, so it stays the project's
decision; docs/installation.md recommends it).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.db.backends.signals import connection_created
from django.db.utils import load_backend

__all__ = ["RECOMMENDED_OPTIONS", "check_sqlite_options", "connect"]

#: What docs/installation.md and the check's hint recommend for a SQLite database.
RECOMMENDED_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL;",
}

_UID = "django_ai_sqlite_immediate_transactions"


def _is_sqlite(connection: Any) -> bool:
    return connection.vendor == "sqlite"


def immediate_transactions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """connection_created receiver: SQLite connections without a ``transaction_mode`` of their own
    begin their transactions with ``BEGIN IMMEDIATE``."""
    if _is_sqlite(connection) and "transaction_mode" not in (connection.settings_dict.get("OPTIONS") or {}):
        connection.transaction_mode = "IMMEDIATE"


def connect() -> None:
    connection_created.connect(immediate_transactions, dispatch_uid=_UID)


def _sqlite_engine(engine: Any) -> bool:
    try:
        return load_backend(engine).DatabaseWrapper.vendor == "sqlite"
    except Exception:  # noqa: BLE001 - a bad ENGINE is Django's to report, not this check's
        return False


@checks.register("django_ai")
def check_sqlite_options(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    for alias, database in settings.DATABASES.items():
        if not isinstance(database, dict) or not _sqlite_engine(database.get("ENGINE")):
            continue
        mode = (database.get("OPTIONS") or {}).get("transaction_mode")
        if isinstance(mode, str) and mode.upper() == "DEFERRED":
            messages.append(
                checks.Warning(
                    f"DATABASES[{alias!r}] is SQLite with OPTIONS['transaction_mode'] = {mode!r}: when a "
                    "file is extracted while a turn is saved, one of them can fail at once with "
                    "'database is locked' (a deferred transaction cannot wait for the write lock).",
                    hint=(
                        f"Set DATABASES[{alias!r}]['OPTIONS'] to {RECOMMENDED_OPTIONS!r} "
                        "(or remove 'transaction_mode': the app then uses IMMEDIATE). See docs/installation.md."
                    ),
                    id="django_ai.W060",
                )
            )
    return messages
