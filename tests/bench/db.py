"""A throw-away database for a benchmark: created (and migrated) on entry, dropped on exit.

SQLite runs in a file (``var/bench_<pid>.sqlite3``), not in memory, so writes cost what they cost
in a real deployment; with ``DATABASE_URL`` set, a database of its own on that PostgreSQL server
(``django_ai_bench_<pid>``, or the name in ``DJANGO_TEST_DB_NAME``). The process id in the name
keeps two runs (or a benchmark and a test run on the same server) from dropping each other's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def bench_database() -> Iterator[str]:
    """Yield a label such as ``"sqlite 3.45.1 (file)"`` or ``"postgresql 16.4"``."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    test = settings.DATABASES["default"].setdefault("TEST", {})
    if connection.vendor == "sqlite":
        test["NAME"] = str(settings.VAR_DIR / f"bench_{os.getpid()}.sqlite3")
    elif not os.environ.get("DJANGO_TEST_DB_NAME"):
        test["NAME"] = f"django_ai_bench_{os.getpid()}"
    setup_test_environment(debug=False)
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        if connection.vendor == "sqlite":
            import sqlite3

            label = f"SQLite {sqlite3.sqlite_version} (file, WAL)"
        else:
            with connection.cursor() as cursor:
                cursor.execute("SHOW server_version")
                label = f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
        yield label
    finally:
        try:
            if connection.vendor == "postgresql":
                # Threads the benchmark started (an in-process server, turn threads) may still hold
                # connections to the database: PostgreSQL refuses to drop it while they do.
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
            connection.creation.destroy_test_db(old_name, verbosity=0)
        finally:
            teardown_test_environment()
