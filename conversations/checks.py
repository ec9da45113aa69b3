"""System checks for the DJANGO_AI settings and the optional parts.

The realtime settings are checked in :mod:`.realtime.checks` (registered by importing it here), the
bridge's, the extraction's and the turns' in their own packages.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import DEFAULTS, IMPORT_STRINGS, LEGACY_KEYS, LEGACY_THROTTLE_KEYS, ai_settings
from .exceptions import ImproperlyDeclaredAgent
from .realtime import checks as _realtime_checks  # noqa: F401  (registers the realtime checks)
from .registry import AgentRegistry

#: A DRF rate: requests per second, minute, hour or day ("30/min"; DRF reads the period's first letter).
RATE = re.compile(r"\A[0-9]+/[smhd][a-z]*\Z")


@checks.register("django_ai")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
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
        if key not in DEFAULTS and key not in LEGACY_KEYS:
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
                        hint="Fix the dotted path, install the package that provides it, or remove the key to use "
                        "the default.",
                        id="django_ai.E002",
                    )
                )
    numbers = {
        "STREAM_SAVE_INTERVAL": (0, 3600),
        "TURN_TIMEOUT": (0, 86400),
        "STALE_TURN_TIMEOUT": (1, 86400 * 7),
        "TURN_HEARTBEAT_INTERVAL": (0.05, 3600),
        "TURN_CANCEL_GRACE": (0, 3600),
        "TURN_RECOVERY_INTERVAL": (0, 86400),
        # Seconds a tool call waits for its approval: positive (0 would expire every approval at
        # the next sweep), at most a year.
        "APPROVAL_TIMEOUT": (1, 86400 * 366),
        "DELETED_CONVERSATION_RETENTION_DAYS": (0, 3650),
        "MAX_TURN_ATTEMPTS": (1, 100),
        "IN_PROCESS_TURN_THREADS": (0, 256),
        "EXTRACTION_TIMEOUT": (1, 86400),
        "FILE_WAIT_TIMEOUT": (0, 86400),
        "MAX_EXTRACTED_TEXT_LENGTH": (1, 10**10),
        "EXTRACTION_MEMORY_LIMIT": (128 * 1024 * 1024, 2**40),
        "EXTRACTION_CONCURRENCY": (1, 64),
        "EXTRACTION_MAX_UNPACKED_SIZE": (1, 2**40),
        "EXTRACTION_MAX_COMPRESSION_RATIO": (1, 10**6),
        "OCR_MAX_IMAGE_PIXELS": (1, 10**10),
        "OCR_MEMORY_LIMIT": (128 * 1024 * 1024, 2**40),
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
    errors.extend(_check_types())
    errors.extend(_check_components())
    errors.extend(_check_throttle_rates(user))
    errors.extend(_check_log_link_template())
    errors.extend(_check_telemetry())
    return errors


def _check_types() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for key in (
        "GENERIC_ERROR_MESSAGE",
        "ANONYMOUS_ID_SESSION_KEY",
        "ANONYMOUS_ID_HEADER",
        "UPLOAD_TO",
        "TASK_BACKEND",
        "TASK_QUEUE",
    ):
        value = ai_settings.raw(key)
        if not isinstance(value, str) or not value.strip():
            errors.append(
                checks.Error(
                    f"DJANGO_AI['{key}'] is {value!r}; it must be a non-empty string.",
                    hint=f"Set it to a non-empty string, or remove it (default {DEFAULTS[key]!r}).",
                    id="django_ai.E009",
                )
            )
    header = ai_settings.raw("ANONYMOUS_ID_HEADER")
    if isinstance(header, str) and header and not all(c.isascii() and (c.isalnum() or c == "-") for c in header):
        errors.append(
            checks.Error(
                f"DJANGO_AI['ANONYMOUS_ID_HEADER'] is {header!r}, which is not a valid HTTP header name.",
                hint="Use letters, digits and '-' only, e.g. 'X-Conversation-Anonymous-Id'.",
                id="django_ai.E009",
            )
        )
    expose = ai_settings.raw("EXPOSE_ERROR_DETAILS")
    if expose is not None and not isinstance(expose, bool):
        errors.append(
            checks.Error(
                f"DJANGO_AI['EXPOSE_ERROR_DETAILS'] is {expose!r}; it must be True, False or None.",
                hint="None follows settings.DEBUG; True shows exception details of failed turns to users "
                "(development only).",
                id="django_ai.E009",
            )
        )
    default_limit, max_limit = ai_settings.raw("QUERY_DEFAULT_LIMIT"), ai_settings.raw("QUERY_MAX_LIMIT")
    if isinstance(default_limit, int) and isinstance(max_limit, int) and default_limit > max_limit:
        errors.append(
            checks.Error(
                f"DJANGO_AI['QUERY_DEFAULT_LIMIT'] ({default_limit}) is larger than DJANGO_AI['QUERY_MAX_LIMIT'] "
                f"({max_limit}).",
                hint="Make QUERY_DEFAULT_LIMIT at most QUERY_MAX_LIMIT.",
                id="django_ai.E008",
            )
        )
    return errors


def _check_components() -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    agents = ai_settings.raw("AGENTS")
    if not isinstance(agents, dict):
        errors.append(
            checks.Error(
                f"DJANGO_AI['AGENTS'] must be a dict of agent path -> dotted class path, not {type(agents).__name__}.",
                hint="e.g. DJANGO_AI = {'AGENTS': {'support': 'myapp.chat_agents.SupportAgent'}}",
                id="django_ai.E007",
            )
        )
    else:
        scratch = AgentRegistry()
        for path, dotted in agents.items():
            try:
                scratch.register(path, dotted)
            except ImproperlyDeclaredAgent as exc:
                errors.append(
                    checks.Error(
                        f"DJANGO_AI['AGENTS'][{path!r}]: {exc.message}",
                        hint="Fix the agent path or class, or register the agent with register_agent() in "
                        "AppConfig.ready().",
                        id="django_ai.E007",
                    )
                )
    if not apps.is_installed("django.contrib.sessions"):
        errors.append(
            checks.Warning(
                "django.contrib.sessions is not installed: anonymous visitors cannot keep their anonymous id "
                "between requests, so they lose access to their conversations.",
                hint="Add 'django.contrib.sessions' to INSTALLED_APPS and SessionMiddleware to MIDDLEWARE, or have "
                "your clients send the X-Conversation-Anonymous-Id header.",
                id="django_ai.W002",
            )
        )
    return errors


def _check_throttle_rates(user: dict[str, Any]) -> list[checks.CheckMessage]:
    """E016 for a rate that is not DRF's ``"<n>/<period>"`` (or None), W003 for a scope given
    both in ``THROTTLE_RATES`` and by its old flat key."""
    configured = user.get("THROTTLE_RATES")
    if configured is not None and not isinstance(configured, dict):
        return [
            checks.Error(
                f"DJANGO_AI['THROTTLE_RATES'] must be a dict of scope -> rate, not {type(configured).__name__}.",
                hint="e.g. DJANGO_AI['THROTTLE_RATES'] = {'message_create': '30/min', 'upload': None} "
                "(docs/settings.md).",
                id="django_ai.E016",
            )
        ]
    named = {f"DJANGO_AI['THROTTLE_RATES'][{scope!r}]": rate for scope, rate in (configured or {}).items()}
    named.update({f"DJANGO_AI['{old}']": user[old] for old in LEGACY_THROTTLE_KEYS if old in user})
    errors: list[checks.CheckMessage] = [
        checks.Error(
            f"{name} is {rate!r}, which is not a rate.",
            hint="Write a rate as DRF does, '<requests>/<period>' with a period of s, min, hour or day (e.g. "
            "'30/min'), or None for no limit.",
            id="django_ai.E016",
        )
        for name, rate in named.items()
        if rate is not None and not (isinstance(rate, str) and RATE.match(rate))
    ]
    both = [old for old, scope in LEGACY_THROTTLE_KEYS.items() if old in user and scope in (configured or {})]
    if both:
        errors.append(
            checks.Warning(
                f"DJANGO_AI['THROTTLE_RATES'] sets the scopes of {', '.join(both)}, so "
                f"{'that key is' if len(both) == 1 else 'those keys are'} ignored.",
                hint="Remove the old keys; DJANGO_AI['THROTTLE_RATES'] holds every rate by scope (docs/settings.md).",
                id="django_ai.W003",
            )
        )
    return errors


def _check_log_link_template() -> list[checks.CheckMessage]:
    """E030 for a LOG_LINK_TEMPLATE that is not None nor a str naming ``{error_id}`` (the only
    field it is formatted with)."""
    template = ai_settings.raw("LOG_LINK_TEMPLATE")
    if template is None:
        return []
    problem = ""
    if not isinstance(template, str) or "{error_id}" not in template:
        problem = "it must be a str containing '{error_id}'"
    else:
        try:
            template.format(error_id="0")
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            problem = f"it cannot be formatted with error_id alone ({type(exc).__name__}: {exc})"
    if not problem:
        return []
    return [
        checks.Error(
            f"DJANGO_AI['LOG_LINK_TEMPLATE'] is {template!r}; {problem}.",
            hint="Use e.g. 'https://logs.example.com/?q={error_id}' (write other braces as '{{' and '}}'), "
            "or None to show error ids without a link.",
            id="django_ai.E030",
        )
    ]


def _check_telemetry() -> list[checks.CheckMessage]:
    """E031 for a MODEL_COSTS that is not ``{model: {"input": n, "output": n}}`` with prices
    (USD per million tokens) of 0 or more; E032 for a TELEMETRY_* flag that is not a bool."""
    errors: list[checks.CheckMessage] = []
    example = '{"gpt-4o": {"input": 2.5, "output": 10}}'
    costs = ai_settings.raw("MODEL_COSTS")
    if not isinstance(costs, dict):
        errors.append(
            checks.Error(
                f"DJANGO_AI['MODEL_COSTS'] must be a dict of model name -> prices, not {type(costs).__name__}.",
                hint=f"e.g. DJANGO_AI['MODEL_COSTS'] = {example} (USD per million tokens), or remove it.",
                id="django_ai.E031",
            )
        )
        costs = {}
    for model, prices in costs.items():
        problem = _price_problem(prices)
        if not isinstance(model, str) or not model:
            problem = "its key must be a model name (a non-empty str)"
        if problem:
            errors.append(
                checks.Error(
                    f"DJANGO_AI['MODEL_COSTS'][{model!r}] is {prices!r}: {problem}.",
                    hint=f"Give each model its prices in USD per million tokens, e.g. {example}.",
                    id="django_ai.E031",
                )
            )
    for key in ("TELEMETRY_ENABLED", "TELEMETRY_TOOL_ARGUMENTS"):
        value = ai_settings.raw(key)
        if not isinstance(value, bool):
            errors.append(
                checks.Error(
                    f"DJANGO_AI['{key}'] is {value!r}; it must be True or False.",
                    hint=f"Set it to True or False, or remove it (default {DEFAULTS[key]!r}).",
                    id="django_ai.E032",
                )
            )
    return errors


def _price_problem(prices: Any) -> str:
    if not isinstance(prices, dict):
        return 'it must be a dict {"input": <price>, "output": <price>}'
    if set(prices) != {"input", "output"}:
        return f'its keys must be "input" and "output", not {sorted(map(str, prices))}'
    for side in ("input", "output"):
        value = prices[side]
        if isinstance(value, Decimal):
            # Priced as given (telemetry.cost); a NaN cannot even be compared.
            value = float(value) if value.is_finite() else float("nan")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            return f"{side!r} must be a number of 0 or more (USD per million tokens), not {value!r}"
    return ""
