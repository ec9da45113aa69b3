"""System checks for the DJANGO_AI settings and the optional parts."""

from __future__ import annotations

from typing import Any

from django.core import checks

from .conf import DEFAULTS, IMPORT_STRINGS, ai_settings


@checks.register("django_ai")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.conf import settings
    from django.utils.module_loading import import_string

    errors: list[checks.CheckMessage] = []
    user = getattr(settings, "DJANGO_AI", {})
    if not isinstance(user, dict):
        return [
            checks.Error(
                "settings.DJANGO_AI must be a dict.",
                hint="Set DJANGO_AI = {...} with the keys listed in docs/settings.md.",
                id="django_ai.E001",
            )
        ]
    for key in user:
        if key not in DEFAULTS:
            errors.append(
                checks.Warning(
                    f"DJANGO_AI has an unknown key {key!r}; it is ignored.",
                    hint="Check the spelling against docs/settings.md.",
                    id="django_ai.W001",
                )
            )
    for key in IMPORT_STRINGS:
        value = user.get(key)
        for path in value if isinstance(value, (list, tuple)) else [value]:
            if path is None:
                continue
            if not isinstance(path, str):
                errors.append(
                    checks.Error(
                        f"DJANGO_AI['{key}'] must be a dotted import path (a str), not {type(path).__name__}.",
                        hint=f"Set DJANGO_AI['{key}'] to e.g. 'myapp.module.ClassName', or remove it.",
                        id="django_ai.E002",
                    )
                )
                continue
            try:
                import_string(path)
            except ImportError as exc:
                errors.append(
                    checks.Error(
                        f"DJANGO_AI['{key}'] = {path!r} cannot be imported: {exc}.",
                        hint="Fix the dotted path, install the package that provides it, or remove the key to use the default.",
                        id="django_ai.E002",
                    )
                )
    numbers = {
        "STREAM_COALESCE_WINDOW": (0, 5),
        "STREAM_SAVE_INTERVAL": (0, 3600),
        "TURN_TIMEOUT": (0, 86400),
        "STALE_TURN_TIMEOUT": (1, 86400 * 7),
        "TURN_HEARTBEAT_INTERVAL": (0.05, 3600),
        "EXTRACTION_TIMEOUT": (1, 86400),
        "MAX_EXTRACTED_TEXT_LENGTH": (1, 10**10),
        "MAX_UPLOAD_SIZE": (1, 10**12),
        "QUERY_DEFAULT_LIMIT": (1, 10**6),
        "QUERY_MAX_LIMIT": (1, 10**6),
        "MAX_MESSAGE_LENGTH": (1, 10**8),
    }
    for key, (low, high) in numbers.items():
        value = ai_settings.raw(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            errors.append(
                checks.Error(
                    f"DJANGO_AI['{key}'] is {value!r}; it must be a number from {low} to {high}.",
                    hint=f"Set DJANGO_AI['{key}'] to a number in that range, or remove it (default {DEFAULTS[key]!r}).",
                    id="django_ai.E003",
                )
            )
    if ai_settings.raw("STALE_TURN_ACTION") not in ("fail", "retry"):
        errors.append(
            checks.Error(
                f"DJANGO_AI['STALE_TURN_ACTION'] is {ai_settings.raw('STALE_TURN_ACTION')!r}.",
                hint="Use 'fail' (mark turns of crashed workers failed) or 'retry' (run them again).",
                id="django_ai.E004",
            )
        )
    if ai_settings.raw("DEFAULT_CONCURRENCY_POLICY") not in ("enqueue", "reject", "interrupt"):
        errors.append(
            checks.Error(
                f"DJANGO_AI['DEFAULT_CONCURRENCY_POLICY'] is {ai_settings.raw('DEFAULT_CONCURRENCY_POLICY')!r}.",
                hint="Use 'enqueue', 'reject' or 'interrupt'.",
                id="django_ai.E005",
            )
        )
    pusher = ai_settings.pusher
    if pusher:
        missing = [k for k in ("APP_ID", "KEY", "SECRET") if not pusher.get(k)]
        if missing:
            errors.append(
                checks.Error(
                    f"DJANGO_AI_PUSHER is missing {', '.join(missing)}.",
                    hint="Copy APP_ID, KEY and SECRET from your Pusher app (or your soketi config), plus CLUSTER or HOST/PORT.",
                    id="django_ai.E010",
                )
            )
        if not pusher.get("CLUSTER") and not pusher.get("HOST"):
            errors.append(
                checks.Error(
                    "DJANGO_AI_PUSHER has neither CLUSTER nor HOST.",
                    hint="Set CLUSTER (e.g. 'us2') for hosted Pusher, or HOST and PORT for a Pusher-protocol server such as soketi.",
                    id="django_ai.E011",
                )
            )
        try:
            import pusher as _pusher  # noqa: F401
        except ImportError:
            errors.append(
                checks.Error(
                    "DJANGO_AI_PUSHER is set but the 'pusher' package is not installed.",
                    hint="pip install 'django-ai-first[pusher]'",
                    id="django_ai.E012",
                )
            )
    return errors
