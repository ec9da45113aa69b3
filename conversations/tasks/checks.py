"""System checks for the turn task settings (ids django_ai.E040-E049 / W040-W049)."""

from __future__ import annotations

from typing import Any

from django.core import checks

from ..conf import ai_settings


@checks.register("django_ai")
def check_task_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from ..internal.tasks_compat import InvalidTaskBackend, task_backends

    errors: list[checks.CheckMessage] = []
    alias = ai_settings.raw("TASK_BACKEND")
    queue = ai_settings.raw("TASK_QUEUE")
    try:
        backend = task_backends[alias]
    except (InvalidTaskBackend, KeyError, TypeError) as exc:
        errors.append(
            checks.Error(
                f"DJANGO_AI['TASK_BACKEND'] is {alias!r}, which is not a usable alias of settings.TASKS: {exc}",
                hint="Set DJANGO_AI['TASK_BACKEND'] to an alias defined in TASKS (usually 'default').",
                id="django_ai.E040",
            )
        )
    else:
        if backend.queues and queue not in backend.queues:
            errors.append(
                checks.Error(
                    f"DJANGO_AI['TASK_QUEUE'] is {queue!r}, but the task backend {alias!r} only accepts "
                    f"the queues {sorted(backend.queues)}.",
                    hint=f"Add {queue!r} to TASKS[{alias!r}]['QUEUES'], or set DJANGO_AI['TASK_QUEUE'] to one of them.",
                    id="django_ai.E041",
                )
            )
    heartbeat = ai_settings.raw("TURN_HEARTBEAT_INTERVAL")
    stale = ai_settings.raw("STALE_TURN_TIMEOUT")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (heartbeat, stale))
    if numbers and heartbeat * 3 > stale:
        errors.append(
            checks.Warning(
                f"DJANGO_AI['STALE_TURN_TIMEOUT'] ({stale} s) is less than three heartbeats "
                f"(TURN_HEARTBEAT_INTERVAL = {heartbeat} s): a live turn could be taken for a dead one.",
                hint="Make STALE_TURN_TIMEOUT at least three times TURN_HEARTBEAT_INTERVAL.",
                id="django_ai.W040",
            )
        )
    return errors
