"""Settings: one ``DJANGO_AI`` dict, read lazily, with defaults.

Access values as attributes of :data:`ai_settings`, e.g. ``ai_settings.TURN_TIMEOUT``. Keys listed in
``IMPORT_STRINGS`` hold dotted paths and are imported on first access. The object is reset when a
test changes ``DJANGO_AI`` or ``DJANGO_AI_PUSHER`` with ``override_settings``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # Realtime: a dotted path to a backend class, or None to choose: Pusher when PUSHER (or the
    # seed's DJANGO_AI_PUSHER) is configured, else the in-process Local backend.
    "REALTIME_BACKEND": None,
    "PUSHER": {},
    # Seconds over which chunks of one message are coalesced before sending.
    "STREAM_COALESCE_WINDOW": 0.05,
    # The streaming agent message row is saved at most this often (seconds) and at the end.
    "STREAM_SAVE_INTERVAL": 1.0,
    # Events the realtime sender may hold while the server is slow or down; beyond it the oldest
    # go (only in an outage: clients resync from the rows).
    "REALTIME_MAX_PENDING": 10_000,
    # Local backend (Server-Sent Events): seconds between heartbeat comments on idle streams, events
    # kept per channel for Last-Event-ID, channels with history kept, events a slow reader may lag.
    "SSE_HEARTBEAT_INTERVAL": 15.0,
    "SSE_HISTORY_SIZE": 200,
    "SSE_HISTORY_CHANNELS": 1000,
    "SSE_CLIENT_QUEUE_SIZE": 1000,
    # Event streams one visitor (user or anonymous id) may hold open at once in a process, and
    # anonymous visitors' streams per client address together (a client can mint visitors);
    # beyond them realtime/events/ answers 429 too_many_streams. None: no limit.
    "SSE_MAX_STREAMS_PER_VISITOR": 10,
    "SSE_MAX_ANONYMOUS_STREAMS_PER_ADDRESS": 100,
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
    # Uploads per minute (DRF rate, e.g. "20/min") per user or anonymous visitor; None: no limit.
    "UPLOAD_THROTTLE_RATE": "60/min",
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
    "MESSAGE_CREATE_THROTTLE_RATE": "30/min",
    # Conversations a user or visitor may start through start/ (DRF rate syntax; None: no limit).
    "SESSION_START_THROTTLE_RATE": "30/min",
    # All anonymous writes (start/, messages, uploads) from one client address together.
    "ANONYMOUS_ADDRESS_THROTTLE_RATE": "300/min",
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
IMPORT_STRINGS = frozenset({"REALTIME_BACKEND", "TEXT_EXTRACTOR", "BRIDGE_PERMISSION_CLASSES"})

PUSHER_KEYS = (
    "APP_ID", "KEY", "SECRET", "CLUSTER", "HOST", "PORT", "SCHEME", "SSL", "TIMEOUT",
    "WS_HOST", "WS_PORT", "MAX_EVENT_BYTES", "BATCH_SIZE",
)


def _import(value: Any, key: str) -> Any:
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
                raise ImproperlyConfigured(
                    f"settings.DJANGO_AI must be a dict, not {type(value).__name__}."
                )
            self._user = value
        return self._user

    def raw(self, key: str) -> Any:
        """The configured value without importing dotted paths (used by the system checks).

        When ``DJANGO_AI`` is not a dict this gives the default, so that every check can run;
        ``check_settings`` reports the broken setting itself (django_ai.E001).
        """
        if key == "PUSHER":
            return self.pusher
        value = getattr(settings, "DJANGO_AI", None)
        if value is not None and not isinstance(value, dict):
            return self.defaults[key]
        return self.user_settings.get(key, self.defaults[key])

    @property
    def pusher(self) -> dict[str, Any]:
        # DJANGO_AI["PUSHER"] wins over the seed's DJANGO_AI_PUSHER; keys are upper-cased.
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

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in self.defaults:
            raise AttributeError(f"Invalid Django AI setting: {key!r}")
        value = self.pusher if key == "PUSHER" else self.user_settings.get(key, self.defaults[key])
        if key in IMPORT_STRINGS:
            value = _import(value, key)
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
        from .internal.cache import clear_component_caches

        clear_component_caches()


setting_changed.connect(_reload)
