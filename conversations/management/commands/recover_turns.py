"""``manage.py recover_turns``: recover the turns of dead workers now (or every N seconds)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import ai_settings
from ...turns.sweeps import recover_now


class Command(BaseCommand):
    help = (
        "Find turns whose worker stopped renewing their lease for STALE_TURN_TIMEOUT seconds and retry "
        "or fail them (STALE_TURN_ACTION); enqueue again waiting messages whose task was lost."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--action", choices=["fail", "retry"], help="Override STALE_TURN_ACTION.")
        parser.add_argument(
            "--stale-after",
            type=float,
            metavar="SECONDS",
            help="Override STALE_TURN_TIMEOUT (seconds without heartbeat).",
        )
        parser.add_argument(
            "--loop",
            action="store_true",
            help="Keep running, sweeping every --interval seconds (a sidecar for custom workers).",
        )
        parser.add_argument(
            "--interval",
            type=float,
            metavar="SECONDS",
            help="Seconds between sweeps with --loop (default: TURN_RECOVERY_INTERVAL).",
        )

    def handle(
        self,
        *args: Any,
        action: str | None,
        stale_after: float | None,
        loop: bool,
        interval: float | None,
        **options: Any,
    ) -> None:
        if stale_after is not None and stale_after < 0:
            raise CommandError("--stale-after must be zero or more seconds.")
        period = float(interval if interval is not None else ai_settings.TURN_RECOVERY_INTERVAL) or 30.0
        while True:
            recovered = recover_now(stale_after=stale_after, action=action)
            for item in recovered:
                self.stdout.write(f"{item.action}: message {item.message_id} (conversation {item.session_id})")
            if not loop:
                if not recovered and options["verbosity"] >= 1:
                    self.stdout.write("No stale turns.")
                return
            time.sleep(period)
