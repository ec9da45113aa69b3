"""Settings: one ``DJANGO_AI`` dict, read lazily, with defaults.

Access values as attributes of :data:`ai_settings`, e.g. ``ai_settings.TURN_TIMEOUT``. Keys listed in
``IMPORT_STRINGS`` hold dotted paths and are imported on first access. The object is reset when a
test changes ``DJANGO_AI`` or ``DJANGO_AI_PUSHER`` with ``override_settings``.

Two settings are shaped as in Django's ``CACHES`` and DRF's ``DEFAULT_THROTTLE_RATES``:
``REALTIME = {"BACKEND": ..., "OPTIONS": {...}}`` (each backend reads only its own options, and
declares them with their defaults in ``default_options``) and ``THROTTLE_RATES = {scope: rate}``.
The flat keys of earlier versions (``REALTIME_BACKEND``, ``PUSHER`` and the seed's
``settings.DJANGO_AI_PUSHER``, ``SSE_*``, ``REALTIME_MAX_PENDING``, ``STREAM_COALESCE_WINDOW``,
``*_THROTTLE_RATE``) are still accepted: :meth:`AISettings.realtime_config` and
:meth:`AISettings.throttle_rates` are the one place that maps them into the new shapes. When a new
key and an old one say the same thing, the new one wins and a system check warns (``W003``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .internal.cache import clear_component_caches

PUSHER_BACKEND = "django_ai.conversations.realtime.pusher.PusherBackend"
LOCAL_BACKEND = "django_ai.conversations.realtime.local.LocalBackend"

DEFAULTS: dict[str, Any] = {
    # Realtime: {"BACKEND": dotted path, "OPTIONS": {...}}, the options being the backend's own
    # (its ``default_options``). None derives it from the older keys: Pusher when the seed's
    # DJANGO_AI_PUSHER (or PUSHER) has a KEY, else the in-process Local backend.
    "REALTIME": None,
    # The streaming agent message row is saved at most this often (seconds) and at the end.
    "STREAM_SAVE_INTERVAL": 1.0,
    # Text extraction: a dotted path to an extractor class, or None to pick the best available.
    "TEXT_EXTRACTOR": None,
    "TIKA_SERVER_ENDPOINT": None,
    "EXTRACTION_TIMEOUT": 120,
    # Seconds a turn waits, before its agent runs, for the text of the files attached to its
    # message while their extraction is still pending or running (the agent's
    # ``file_wait_timeout`` wins); 0 = the agent runs at once and sees None for such files.
    "FILE_WAIT_TIMEOUT": 60,
    # Extra JVM options for the embedded Tika extractor, e.g. ["-Xmx1g"] (after the heap limit
    # derived from EXTRACTION_MEMORY_LIMIT, so an -Xmx here wins).
    "TIKA_JVM_ARGS": [],
    # OCR (tesseract) for images and scanned PDFs when installed; the tesseract language(s), e.g. "eng+deu".
    "OCR_ENABLED": True,
    "OCR_LANGUAGE": "eng",
    # Task queue for extraction; None uses TASK_QUEUE. A separate queue keeps slow OCR from delaying turns.
    "EXTRACTION_QUEUE": None,
    "MAX_EXTRACTED_TEXT_LENGTH": 1_000_000,
    # Where embedded Tika parses: "subprocess" (an extraction process of its own, started on first
    # use and replaced when it dies or goes over its memory) or "none" (in this process).
    "EXTRACTION_ISOLATION": "subprocess",
    # Bytes of memory the extraction process and its tesseract runs may hold together (it is
    # stopped and replaced beyond it); the JVM heap (-Xmx) is half of it, also with "none".
    "EXTRACTION_MEMORY_LIMIT": 1024 * 1024 * 1024,
    # Files the extraction process parses at the same time; more wait for their turn.
    "EXTRACTION_CONCURRENCY": 2,
    # Zip containers (Office, OpenDocument): bytes their parts may unpack to together, and how many
    # times its packed size one part may unpack to. Larger files fail as too_complex, unparsed.
    "EXTRACTION_MAX_UNPACKED_SIZE": 256 * 1024 * 1024,
    "EXTRACTION_MAX_COMPRESSION_RATIO": 100,
    # OCR: pixels of one image or rendered PDF page tesseract is given (larger PDF pages are
    # rendered at a lower resolution), and bytes of address space one tesseract run may map.
    "OCR_MAX_IMAGE_PIXELS": 25_000_000,
    "OCR_MEMORY_LIMIT": 384 * 1024 * 1024,
    "MAX_UPLOAD_SIZE": 20 * 1024 * 1024,
    "ALLOWED_UPLOAD_TYPES": [
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/msword",
        "application/rtf",
        "application/vnd.oasis.opendocument.text",
        "text/plain",
        "text/markdown",
        "text/csv",
        "text/html",
        "application/json",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/tiff",
        "image/webp",
    ],
    "UPLOAD_TO": "django_ai/files/%Y/%m/",
    # Seconds a tool step waits for the user's approval before it is rejected as expired
    # (docs/tools.md, "Approval before a tool runs").
    "APPROVAL_TIMEOUT": 86400,
    # Days a conversation its owner deleted stays restorable in the admin before
    # ``manage.py purge_conversations`` removes it for good (docs/conversations.md).
    "DELETED_CONVERSATION_RETENTION_DAYS": 30,
    # Observability (docs/observability.md). Traces and metrics through OpenTelemetry when the
    # 'otel' extra is installed; False turns them off. Tool call arguments go on tool spans only
    # when TELEMETRY_TOOL_ARGUMENTS is True (never the values injected from the Context).
    "TELEMETRY_ENABLED": True,
    "TELEMETRY_TOOL_ARGUMENTS": False,
    # Prices per million tokens by model name, in USD: {"gpt-4o": {"input": 2.5, "output": 10}}.
    # A model not listed is priced from litellm's bundled price list when litellm is loaded
    # (never downloaded); else its turns have no cost.
    "MODEL_COSTS": {},
    # The admin's operations view links a failed turn's error_id to its log line with this
    # template, e.g. "https://logs.example.com/?q={error_id}"; None shows the id alone.
    "LOG_LINK_TEMPLATE": None,
    # Turns (docs/turns.md). The alias in settings.TASKS and the queue that turn tasks go to.
    "TASK_BACKEND": "default",
    "TASK_QUEUE": "default",
    # Seconds an agent may take to answer (the agent's ``turn_timeout`` wins); 0 = no limit.
    "TURN_TIMEOUT": 300,
    # Seconds a cancelled or timed-out agent gets to stop before its turn ends without it.
    "TURN_CANCEL_GRACE": 5.0,
    # A running turn renews its lease this often (seconds), whether or not the agent writes...
    "TURN_HEARTBEAT_INTERVAL": 5.0,
    # ...and a lease not renewed for this long (seconds) belongs to a dead worker: its turn is
    # recovered with STALE_TURN_ACTION: "fail" (failed + a notice) or "retry" (answered again).
    "STALE_TURN_TIMEOUT": 60,
    "STALE_TURN_ACTION": "fail",
    # A turn is started at most this many times (retries after crashes included).
    "MAX_TURN_ATTEMPTS": 3,
    # How often (seconds) task workers look for stale turns; 0 turns the periodic sweep off.
    "TURN_RECOVERY_INTERVAL": 30.0,
    # True in the settings of task worker processes: sweep at start and every TURN_RECOVERY_INTERVAL.
    "TURN_RECOVERY_LOOP": False,
    # A web process whose turns run in-process sweeps from its first request on (False in tests).
    "TURN_RECOVERY_IN_WEB": True,
    # With a task backend that runs tasks in the caller (Django's ImmediateBackend, the default),
    # turns run in this many background threads of the web process, so a request does not wait
    # for the agent; 0 runs them in the thread that saved the message, right after its commit.
    "IN_PROCESS_TURN_THREADS": 4,
    "DEFAULT_CONCURRENCY_POLICY": "enqueue",
    "GENERIC_ERROR_MESSAGE": "Sorry, something went wrong while answering. Please try again.",
    # None follows settings.DEBUG: whether failed turns show exception details to the user.
    "EXPOSE_ERROR_DETAILS": None,
    # Anonymous visitors.
    "ANONYMOUS_ID_SESSION_KEY": "django_ai_anonymous_id",
    "ANONYMOUS_ID_HEADER": "X-Conversation-Anonymous-Id",
    # Agents registered from settings: {"path": "dotted.path.to.Agent"}.
    "AGENTS": {},
    # The bridge.
    "QUERY_DEFAULT_LIMIT": 50,
    "QUERY_MAX_LIMIT": 200,
    # Rates (DRF syntax, e.g. "30/min"; None: no limit) by throttle scope, merged over these:
    # messages, conversations started and uploads per user or visitor, and all anonymous writes
    # from one client address together.
    "THROTTLE_RATES": {
        "message_create": "30/min",
        "session_start": "30/min",
        "upload": "60/min",
        "anonymous_address": "300/min",
        "row_action": "60/min",
    },
    "MAX_MESSAGE_LENGTH": 32_000,
    # Bridge permission classes (dotted paths) ANDed with every exposed model's own classes,
    # e.g. ["django_ai.conversations.bridge.permissions.IsAuthenticated"] to close it to visitors.
    "BRIDGE_PERMISSION_CLASSES": [],
    # Largest JSON request body the bridge views accept, in bytes (413 above it).
    "BRIDGE_MAX_BODY_SIZE": 1024 * 1024,
    # Most values an "__in" filter may list.
    "QUERY_MAX_IN_VALUES": 200,
}

# Keys whose values are dotted paths (a string, or a list of strings) imported on access.
IMPORT_STRINGS = frozenset({"TEXT_EXTRACTOR", "BRIDGE_PERMISSION_CLASSES"})

#: Flat realtime keys of earlier versions -> the option of ``REALTIME["OPTIONS"]`` they set (for
#: the backends that declare that option).
LEGACY_REALTIME_OPTIONS = {
    "STREAM_COALESCE_WINDOW": "COALESCE_WINDOW",
    "REALTIME_MAX_PENDING": "MAX_PENDING",
    "SSE_HEARTBEAT_INTERVAL": "HEARTBEAT_INTERVAL",
    "SSE_HISTORY_SIZE": "HISTORY_SIZE",
    "SSE_HISTORY_CHANNELS": "HISTORY_CHANNELS",
    "SSE_CLIENT_QUEUE_SIZE": "CLIENT_QUEUE_SIZE",
    "SSE_MAX_STREAMS_PER_VISITOR": "MAX_STREAMS_PER_VISITOR",
    "SSE_MAX_ANONYMOUS_STREAMS_PER_ADDRESS": "MAX_ANONYMOUS_STREAMS_PER_ADDRESS",
}
#: Flat throttle keys of earlier versions -> their scope in ``THROTTLE_RATES``.
LEGACY_THROTTLE_KEYS = {
    "MESSAGE_CREATE_THROTTLE_RATE": "message_create",
    "SESSION_START_THROTTLE_RATE": "session_start",
    "UPLOAD_THROTTLE_RATE": "upload",
    "ANONYMOUS_ADDRESS_THROTTLE_RATE": "anonymous_address",
}
#: Keys still accepted in ``DJANGO_AI`` although ``DEFAULTS`` no longer lists them.
LEGACY_REALTIME_KEYS = frozenset({"REALTIME_BACKEND", "PUSHER", *LEGACY_REALTIME_OPTIONS})
LEGACY_KEYS = LEGACY_REALTIME_KEYS | frozenset(LEGACY_THROTTLE_KEYS)


def _import(value: Any, key: str) -> Any:
    """``value`` with its dotted paths imported; ``key`` names the setting in errors (``"X"`` or
    ``"X']['Y"`` for a nested key)."""
    if value is None or not isinstance(value, (str, list, tuple)):
        return value
    if isinstance(value, (list, tuple)):
        return [_import(item, key) for item in value]
    try:
        return import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"DJANGO_AI['{key}'] is {value!r}, which could not be imported ({exc}). "
            f"Set it to the dotted path of an existing class, or remove it to use the default."
        ) from exc


class AISettings:
    """Lazy view of ``settings.DJANGO_AI`` over :data:`DEFAULTS`."""

    def __init__(self, defaults: dict[str, Any] | None = None):
        self.defaults = defaults or DEFAULTS
        self._cached: set[str] = set()
        self._user: dict[str, Any] | None = None

    @property
    def user_settings(self) -> dict[str, Any]:
        if self._user is None:
            value = getattr(settings, "DJANGO_AI", {}) or {}
            if not isinstance(value, dict):
                raise ImproperlyConfigured(f"settings.DJANGO_AI must be a dict, not {type(value).__name__}.")
            self._user = value
        return self._user

    def raw(self, key: str) -> Any:
        """The configured value without importing dotted paths (used by the system checks).

        When ``DJANGO_AI`` is not a dict this gives the default, so that every check can run;
        ``check_settings`` reports the broken setting itself (django_ai.E001). An old key gives
        its value, or None when it is not set.
        """
        if key == "PUSHER":
            return self.pusher
        value = getattr(settings, "DJANGO_AI", None)
        if value is not None and not isinstance(value, dict):
            return self.defaults.get(key)
        return self.user_settings.get(key, self.defaults.get(key))

    @property
    def pusher(self) -> dict[str, Any]:
        """The Pusher options given the old way: the seed's ``settings.DJANGO_AI_PUSHER`` under
        ``DJANGO_AI["PUSHER"]`` (which wins key by key); keys are upper-cased."""
        merged: dict[str, Any] = {}
        sources = (
            ("settings.DJANGO_AI_PUSHER", getattr(settings, "DJANGO_AI_PUSHER", None)),
            ("DJANGO_AI['PUSHER']", self.user_settings.get("PUSHER")),
        )
        for name, source in sources:
            if not source:
                continue
            if not isinstance(source, dict):
                raise ImproperlyConfigured(
                    f"{name} must be a dict such as {{'APP_ID': ..., 'KEY': ..., 'SECRET': ..., "
                    f"'CLUSTER': ...}}, not {type(source).__name__}."
                )
            merged.update({str(k).upper(): v for k, v in source.items()})
        return merged

    def realtime_config(self) -> dict[str, Any]:
        """The effective ``{"BACKEND": class, "OPTIONS": dict}`` of the realtime backend.

        ``DJANGO_AI["REALTIME"]`` when set; else it is derived from the old keys: the backend
        from ``REALTIME_BACKEND`` (or Pusher when the Pusher settings have a ``KEY``, else Local),
        and the options from the Pusher settings and the flat keys of
        :data:`LEGACY_REALTIME_OPTIONS`, each given only to a backend that declares that option
        in its ``default_options`` (a backend that declares none gets the Pusher settings, as
        before). The backend merges its defaults under these options.
        """
        configured = self.user_settings.get("REALTIME")
        if configured is not None:
            if not isinstance(configured, dict) or not configured.get("BACKEND"):
                raise ImproperlyConfigured(
                    "DJANGO_AI['REALTIME'] must be a dict with a 'BACKEND' (a dotted path) and, optionally, "
                    "'OPTIONS' (a dict), e.g. {'BACKEND': 'django_ai.conversations.realtime.local.LocalBackend'}."
                )
            options = configured.get("OPTIONS") or {}
            if not isinstance(options, dict):
                raise ImproperlyConfigured(
                    f"DJANGO_AI['REALTIME']['OPTIONS'] must be a dict, not {type(options).__name__}."
                )
            return {"BACKEND": _import(configured["BACKEND"], "REALTIME']['BACKEND"), "OPTIONS": dict(options)}
        pusher = self.pusher
        path = self.user_settings.get("REALTIME_BACKEND") or (PUSHER_BACKEND if pusher.get("KEY") else LOCAL_BACKEND)
        backend = _import(path, "REALTIME_BACKEND")
        known = getattr(backend, "default_options", None) or {}
        options = {key: value for key, value in pusher.items() if key in known} if known else dict(pusher)
        for old, option in LEGACY_REALTIME_OPTIONS.items():
            if old in self.user_settings and option in known:
                options[option] = self.user_settings[old]
        return {"BACKEND": backend, "OPTIONS": options}

    def throttle_rates(self) -> dict[str, str | None]:
        """The effective rate of each throttle scope: the defaults, under the old flat keys, under
        ``DJANGO_AI["THROTTLE_RATES"]``."""
        rates = dict(self.defaults["THROTTLE_RATES"])
        for old, scope in LEGACY_THROTTLE_KEYS.items():
            if old in self.user_settings:
                rates[scope] = self.user_settings[old]
        configured = self.user_settings.get("THROTTLE_RATES") or {}
        if not isinstance(configured, dict):
            raise ImproperlyConfigured(
                f"DJANGO_AI['THROTTLE_RATES'] must be a dict of scope -> rate such as "
                f"{{'message_create': '30/min'}}, not {type(configured).__name__}."
            )
        rates.update(configured)
        return rates

    def _compute(self, key: str) -> Any:
        if key == "REALTIME":
            return self.realtime_config()
        if key == "THROTTLE_RATES":
            return self.throttle_rates()
        if key == "REALTIME_BACKEND":
            return self.REALTIME["BACKEND"]
        if key == "PUSHER":
            return self.pusher
        if key in LEGACY_THROTTLE_KEYS:
            return self.THROTTLE_RATES.get(LEGACY_THROTTLE_KEYS[key])
        if key in LEGACY_REALTIME_OPTIONS:
            return self._legacy_option(key)
        value = self.user_settings.get(key, self.defaults[key])
        return _import(value, key) if key in IMPORT_STRINGS else value

    def _legacy_option(self, key: str) -> Any:
        """An old flat realtime key read as an attribute: the option it became, as the configured
        backend reads it; for a backend without that option, the old key's value or the Local
        backend's default (code that reads it should read ``get_backend().options``)."""
        option = LEGACY_REALTIME_OPTIONS[key]
        config = self.REALTIME
        options = {**getattr(config["BACKEND"], "default_options", {}), **config["OPTIONS"]}
        if option in options:
            return options[option]
        if key in self.user_settings:
            return self.user_settings[key]
        return import_string(LOCAL_BACKEND).default_options[option]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or (key not in self.defaults and key not in LEGACY_KEYS):
            raise AttributeError(f"Invalid Django AI setting: {key!r}")
        value = self._compute(key)
        self._cached.add(key)
        setattr(self, key, value)
        return value

    def reload(self) -> None:
        for key in self._cached:
            delattr(self, key)
        self._cached.clear()
        self._user = None


ai_settings = AISettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DJANGO_AI", "DJANGO_AI_PUSHER", "DEBUG"):
        ai_settings.reload()
        # Components built from settings (realtime backend, extractor) are rebuilt lazily too.
        clear_component_caches()


setting_changed.connect(_reload)
