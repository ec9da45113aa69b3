"""``python manage.py ai_db_worker``: django-tasks-db's ``db_worker``, woken as soon as a task is
stored and keeping its database connection between tasks.

The same options and the same task runs as ``db_worker`` (this command reuses its arguments, its
query for the next task and its ``run_task``: a task is claimed under ``FOR UPDATE SKIP LOCKED``,
runs once, and its rows are written as ``db_worker`` writes them). What differs, measured in
docs/benchmarks.md ("Turns in the background"):

- an idle worker does not sleep ``--interval`` seconds: on PostgreSQL it waits for the
  ``NOTIFY`` the web process sends when it stores a task (``turns.wakeup``), and looks at the table
  at once; ``--interval`` is then only how often it looks anyway (a notification sent while no
  worker listened is not kept). SQLite keeps polling every ``--interval``. ``--no-wakeup`` polls
  everywhere, as ``db_worker`` does;
- ``CONN_MAX_AGE = 0`` (Django's default, meant for requests) would open a new database connection
  for every task: the worker keeps its connections ``--conn-max-age`` seconds (600 by default when
  the setting is 0; a value set in DATABASES is kept). A connection found broken is replaced, as
  after a request;
- on PostgreSQL the claim is one ``UPDATE ... RETURNING`` statement instead of a transaction of
  four round trips.

A database error while looking for a task (the database restarting) is logged and the worker
tries again after ``--interval``, where ``db_worker`` exits.
"""

from __future__ import annotations

import logging
import os
import random
import time
from argparse import ArgumentParser, ArgumentTypeError, BooleanOptionalAction
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError, OperationalError, close_old_connections, connections
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV, run_with_reloader
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from ...turns.wakeup import TaskListener

# The worker's own lines go where db_worker's go (its --verbosity configures this logger).
logger = logging.getLogger("django_tasks_db")

# The fields a claim writes (DBTaskResult.claim()).
_CLAIMED = ("status", "started_at", "worker_ids")

#: Seconds a worker keeps a database connection when DATABASES says 0 (a new one per task).
DEFAULT_CONN_MAX_AGE = 600


class WakingWorker(Worker):
    """django-tasks-db's worker with a loop that waits on a :class:`TaskListener` when idle."""

    def __init__(self, *, listener: TaskListener, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.listener = listener

    def run(self) -> None:
        listening = self.listener.start()
        logger.info(
            "Starting worker worker_id=%s queues=%s wake-up=%s",
            self.worker_id,
            ",".join(self.queue_names),
            "LISTEN" if listening else f"polling every {self.interval} s",
        )
        if self.startup_delay and self.interval:
            time.sleep(random.random())  # spreads workers started together, as db_worker does
        try:
            self._loop()
        finally:
            self.listener.close()

    def _loop(self) -> None:
        while self.running:
            close_old_connections()  # connections past CONN_MAX_AGE, or broken
            # Announcements received so far are answered by the look below.
            self.listener.drain()
            try:
                db_task_result, looked = self._claim()
            except DatabaseError:
                logger.warning("Looking for a task failed; trying again in %s s", self.interval or 1, exc_info=True)
                connections.close_all()
                time.sleep(self.interval or 1)
                continue
            if db_task_result is not None:
                self.run_task(db_task_result)
            if self.batch and looked and db_task_result is None:
                logger.info("No more tasks to run for worker_id=%s - exiting gracefully.", self.worker_id)
                return
            if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                logger.info("Ran the maximum of %d tasks on worker_id=%s - exiting.", self._run_tasks, self.worker_id)
                return
            close_old_connections()
            if self.running and db_task_result is None:
                logger.debug("No task ready: waiting for one (at most %s s)", self.interval)
                self.listener.wait(self.interval)

    def _claim(self) -> tuple[DBTaskResult | None, bool]:
        """The next ready task, claimed for this worker, and whether the table was read (SQLite
        may be locked by another writer: not an error, the next turn of the loop tries again)."""
        tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
        if not self.process_all_queues:
            tasks = tasks.filter(queue_name__in=self.queue_names)
        if self.excluded_queue_names:
            tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)
        if connections[tasks.db].vendor == "postgresql":
            return self._claim_in_one_statement(tasks), True
        try:
            with exclusive_transaction(tasks.db):
                db_task_result = tasks.get_locked()
                if db_task_result is not None:
                    db_task_result.claim(self.worker_id)
        except OperationalError as exc:
            if is_locked_database_exception(exc):
                return None, False
            raise
        return db_task_result, True

    def _claim_in_one_statement(self, tasks: QuerySet[DBTaskResult]) -> DBTaskResult | None:
        """PostgreSQL: the claim ``db_worker`` makes in a transaction (BEGIN, SELECT ... FOR UPDATE
        SKIP LOCKED, UPDATE, COMMIT: four round trips) as one ``UPDATE ... RETURNING``. The same
        row is taken (the first ready one in the table's ordering that no other worker holds) and
        written the same way (RUNNING, started_at, this worker's id appended)."""
        meta = DBTaskResult._meta
        quote = connections[tasks.db].ops.quote_name
        # The ordering and the filters of db_worker's query, compiled by Django; the lock is
        # spelled here (Django compiles FOR UPDATE only inside a transaction).
        first, params = tasks.values("pk")[:1].query.get_compiler(using=tasks.db).as_sql()
        column = {field.name: quote(str(field.column)) for field in meta.concrete_fields}
        table, pk = quote(meta.db_table), quote(str(meta.pk.column))
        status, started_at, worker_ids = (column[name] for name in _CLAIMED)
        columns = ", ".join(column.values())
        sql = (
            f"UPDATE {table} SET {status} = %s, {started_at} = %s, "
            f"{worker_ids} = {worker_ids} || jsonb_build_array(%s) "
            f"WHERE {pk} = ({first} FOR UPDATE SKIP LOCKED) AND {status} = %s RETURNING {columns}"
        )
        running, ready = TaskResultStatus.RUNNING.value, TaskResultStatus.READY.value
        values = [running, timezone.now(), self.worker_id, *params, ready]
        return next(iter(DBTaskResult.objects.using(tasks.db).raw(sql, values)), None)


def _conn_max_age(value: str) -> int:
    seconds = int(value)
    if seconds < 0:
        raise ArgumentTypeError("Must be zero or more seconds")
    return seconds


def keep_connections(seconds: int | None) -> None:
    """This process keeps its database connections ``seconds`` (None: where DATABASES says 0,
    :data:`DEFAULT_CONN_MAX_AGE`; elsewhere what it says). Before the first connection opens."""
    for alias in connections:
        settings_dict = connections[alias].settings_dict
        if seconds is not None:
            settings_dict["CONN_MAX_AGE"] = seconds
        elif settings_dict.get("CONN_MAX_AGE") == 0:
            settings_dict["CONN_MAX_AGE"] = DEFAULT_CONN_MAX_AGE


class Command(DbWorkerCommand):
    help = (
        "Run a django-tasks-db worker that wakes up as soon as a task is stored (PostgreSQL LISTEN/NOTIFY) "
        "and keeps its database connection between tasks."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--wakeup",
            action=BooleanOptionalAction,
            default=True,
            help="On PostgreSQL, wait for the NOTIFY of a stored task instead of sleeping --interval (default: on).",
        )
        parser.add_argument(
            "--conn-max-age",
            type=_conn_max_age,
            default=None,
            metavar="SECONDS",
            help=(
                "How long the worker keeps a database connection (default: CONN_MAX_AGE, or "
                f"{DEFAULT_CONN_MAX_AGE} where it is 0; 0 opens one for every task, as db_worker does)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.configure_logging(options["verbosity"])
        reload, batch = options["reload"], options["batch"]
        if reload and batch:
            logger.warning("--reload and --batch cannot be specified together. Disabling autoreload.")
            reload = False
        queue_names = options["queue_name"].split(",")
        excluded = options["exclude_queues"].split(",") if options["exclude_queues"] else []
        if excluded and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name=*")
        keep_connections(options["conn_max_age"])
        backend_name = options["backend_name"]
        listener = TaskListener(
            backend=backend_name, queues=queue_names, using=DBTaskResult.objects.db, enabled=options["wakeup"]
        )
        worker = WakingWorker(
            listener=listener,
            queue_names=queue_names,
            interval=options["interval"],
            batch=batch,
            backend_name=backend_name,
            startup_delay=options["startup_delay"],
            max_tasks=options["max_tasks"],
            worker_id=options["worker_id"],
            excluded_queue_names=excluded,
        )
        if reload:
            if os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
                worker.configure_signals()  # only the child that runs the worker handles them
            run_with_reloader(worker.run)
        else:
            worker.configure_signals()
            worker.run()
