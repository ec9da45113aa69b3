"""System checks of the realtime settings: ``DJANGO_AI["REALTIME"]``, or the old keys it replaces.

With ``REALTIME`` set, its shape, its backend and its options are checked, and the old keys still
present are named in a warning (``W003``: they are ignored, the new setting wins). Without it, the
old keys are checked under their own names, as they were.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import LEGACY_REALTIME_KEYS, LEGACY_REALTIME_OPTIONS, ai_settings
from .base import BaseRealtimeBackend
from .pusher import PusherBackend

__all__ = ["check_realtime"]

#: Numeric options of the built-in backends: (lowest, highest, whether None means "no limit").
NUMERIC_OPTIONS: dict[str, tuple[float, float, bool]] = {
    "COALESCE_WINDOW": (0, 5, False),
    "BATCH_WAIT": (0, 1, False),
    "MAX_PENDING": (1, 10**9, False),
    "HEARTBEAT_INTERVAL": (0.1, 3600, False),
    "HISTORY_SIZE": (0, 10**6, False),
    "HISTORY_CHANNELS": (0, 10**7, False),
    "CLIENT_QUEUE_SIZE": (1, 10**7, False),
    "MAX_STREAMS_PER_VISITOR": (1, 10**6, True),
    "MAX_ANONYMOUS_STREAMS_PER_ADDRESS": (1, 10**6, True),
    "MAX_EVENTS": (1, 10**9, False),
}
NEW_OPTIONS = "DJANGO_AI['REALTIME']['OPTIONS']"


@checks.register("django_ai")
def check_realtime(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    user = getattr(settings, "DJANGO_AI", {}) or {}
    if not isinstance(user, dict):
        return []  # django_ai.E001, reported by check_settings
    configured = user.get("REALTIME")
    errors = _check_new_shape(configured) + _old_keys_ignored(user) if configured is not None else _check_old_keys(user)
    if any(error.is_serious() for error in errors):
        return errors
    try:
        config = ai_settings.realtime_config()
    except ImproperlyConfigured as exc:
        return [
            *errors,
            checks.Error(str(exc), hint="Fix the realtime settings (docs/settings.md).", id="django_ai.E015"),
        ]
    backend = config["BACKEND"]
    if configured is not None:
        errors += _check_options(backend, config["OPTIONS"])
        if issubclass(backend, PusherBackend):
            errors += _check_pusher({**backend.default_options, **config["OPTIONS"]}, NEW_OPTIONS)
    elif ai_settings.pusher:
        # Checked whichever backend runs, as before REALTIME: a broken Pusher setting is named.
        errors += _check_pusher(ai_settings.pusher, "DJANGO_AI_PUSHER")
    return errors


def _not_a_backend(value: Any, name: str) -> list[checks.CheckMessage]:
    """E002 / E006 for a backend setting that is not the dotted path of a backend class."""
    if not isinstance(value, str):
        return [
            checks.Error(
                f"{name} must be a dotted import path (a str), not {type(value).__name__}.",
                hint=f"Set {name} to e.g. 'django_ai.conversations.realtime.local.LocalBackend', or remove it.",
                id="django_ai.E002",
            )
        ]
    try:
        backend = import_string(value)
    except ImportError as exc:
        return [
            checks.Error(
                f"{name} = {value!r} cannot be imported: {exc}.",
                hint="Fix the dotted path, install the package that provides it, or remove the key to use the default.",
                id="django_ai.E002",
            )
        ]
    if not (isinstance(backend, type) and issubclass(backend, BaseRealtimeBackend)):
        return [
            checks.Error(
                f"{name} = {value!r} is not a realtime backend class.",
                hint="Point it at a subclass of django_ai.conversations.realtime.base.BaseRealtimeBackend, or remove "
                "it.",
                id="django_ai.E006",
            )
        ]
    return []


def _check_new_shape(configured: Any) -> list[checks.CheckMessage]:
    hint = (
        "Set DJANGO_AI['REALTIME'] = {'BACKEND': 'django_ai.conversations.realtime.pusher.PusherBackend', "
        "'OPTIONS': {...}} (docs/settings.md)."
    )
    if not isinstance(configured, dict):
        return [
            checks.Error(
                f"DJANGO_AI['REALTIME'] must be a dict, not {type(configured).__name__}.",
                hint=hint,
                id="django_ai.E015",
            )
        ]
    errors: list[checks.CheckMessage] = [
        checks.Error(f"DJANGO_AI['REALTIME'] has an unknown key {key!r}.", hint=hint, id="django_ai.E015")
        for key in configured
        if key not in ("BACKEND", "OPTIONS")
    ]
    if not configured.get("BACKEND"):
        errors.append(checks.Error("DJANGO_AI['REALTIME'] has no 'BACKEND'.", hint=hint, id="django_ai.E015"))
    else:
        errors += _not_a_backend(configured["BACKEND"], "DJANGO_AI['REALTIME']['BACKEND']")
    options = configured.get("OPTIONS")
    if options is not None and not isinstance(options, dict):
        errors.append(
            checks.Error(f"{NEW_OPTIONS} must be a dict, not {type(options).__name__}.", hint=hint, id="django_ai.E015")
        )
    return errors


def _old_keys_ignored(user: dict[str, Any]) -> list[checks.CheckMessage]:
    old = [f"DJANGO_AI['{key}']" for key in sorted(LEGACY_REALTIME_KEYS) if key in user]
    if getattr(settings, "DJANGO_AI_PUSHER", None):
        old.append("settings.DJANGO_AI_PUSHER")
    if not old:
        return []
    return [
        checks.Warning(
            f"DJANGO_AI['REALTIME'] is set, so {', '.join(old)} {'is' if len(old) == 1 else 'are'} ignored.",
            hint="Move their values into DJANGO_AI['REALTIME']['OPTIONS'] (docs/settings.md lists the new names) and "
            "remove them.",
            id="django_ai.W003",
        )
    ]


def _check_old_keys(user: dict[str, Any]) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    if user.get("REALTIME_BACKEND") is not None:
        errors += _not_a_backend(user["REALTIME_BACKEND"], "DJANGO_AI['REALTIME_BACKEND']")
    for old, option in LEGACY_REALTIME_OPTIONS.items():
        if old in user:
            errors += _check_number(user[old], option, f"DJANGO_AI['{old}']")
    try:
        ai_settings.pusher  # noqa: B018 - raises when a Pusher setting is not a dict
    except ImproperlyConfigured as exc:
        errors.append(
            checks.Error(
                str(exc),
                hint="Set DJANGO_AI_PUSHER (or DJANGO_AI['PUSHER']) to a dict with APP_ID, KEY, SECRET and CLUSTER "
                "or HOST/PORT.",
                id="django_ai.E013",
            )
        )
    return errors


def _check_number(value: Any, option: str, name: str) -> list[checks.CheckMessage]:
    low, high, none_allowed = NUMERIC_OPTIONS[option]
    if value is None and none_allowed:
        return []
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        return [
            checks.Error(
                f"{name} is {value!r}; it must be a number from {low} to "
                f"{high}{' or None (no limit)' if none_allowed else ''}.",
                hint=f"Set {name} to a number in that range, or remove it to use the backend's default.",
                id="django_ai.E003",
            )
        ]
    return []


def _check_options(backend: type[BaseRealtimeBackend], options: dict[str, Any]) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    known = backend.default_options
    for option, value in options.items():
        if known and option not in known:
            errors.append(
                checks.Warning(
                    f"{NEW_OPTIONS} has {option!r}, which {backend.__name__} does not read; it is ignored.",
                    hint=f"{backend.__name__} reads {', '.join(sorted(known))} (docs/settings.md).",
                    id="django_ai.W004",
                )
            )
        elif option in NUMERIC_OPTIONS:
            errors += _check_number(value, option, f"{NEW_OPTIONS}['{option}']")
    return errors


def _check_pusher(options: dict[str, Any], where: str) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    missing = [k for k in ("APP_ID", "KEY", "SECRET") if not options.get(k)]
    if missing:
        errors.append(
            checks.Error(
                f"{where} is missing {', '.join(missing)}.",
                hint="Copy APP_ID, KEY and SECRET from your Pusher app (or your soketi config), plus CLUSTER or "
                "HOST/PORT.",
                id="django_ai.E010",
            )
        )
    if not options.get("CLUSTER") and not options.get("HOST"):
        errors.append(
            checks.Error(
                f"{where} has neither CLUSTER nor HOST.",
                hint="Set CLUSTER (e.g. 'us2') for hosted Pusher, or HOST and PORT for a Pusher-protocol server such "
                "as soketi.",
                id="django_ai.E011",
            )
        )
    errors.extend(_check_pusher_values(options, where))
    try:
        import pusher as _pusher  # noqa: F401 - an optional dependency: only its presence is checked
    except ImportError:
        errors.append(
            checks.Error(
                f"{where} configures Pusher but the 'pusher' package is not installed.",
                hint="pip install 'django-ai-first[pusher]'",
                id="django_ai.E012",
            )
        )
    return errors


def _check_pusher_values(options: dict[str, Any], where: str) -> list[checks.CheckMessage]:
    """Values the Pusher backend would refuse when it is first used (django_ai.E014)."""
    problems = []
    app_id = options.get("APP_ID")
    if app_id and not str(app_id).isdigit():
        problems.append(f"APP_ID is {app_id!r}, not a number (Pusher app ids are numeric; so must soketi's be)")
    scheme = options.get("SCHEME")
    if scheme and str(scheme).lower() not in ("http", "https"):
        problems.append(f"SCHEME is {scheme!r}, not 'http' or 'https'")
    for key in ("PORT", "WS_PORT"):
        port = options.get(key)
        if port not in (None, "") and (isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536):
            problems.append(f"{key} is {port!r}, not a port number")
    for key in ("MAX_EVENT_BYTES", "BATCH_SIZE"):
        value = options.get(key)
        if value not in (None, "") and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"{key} is {value!r}, not a positive integer")
    return [
        checks.Error(
            f"{where}: {problem}.",
            hint=f"Fix the value in {where}; see docs/realtime.md.",
            id="django_ai.E014",
        )
        for problem in problems
    ]
