"""Settings for benchmarks: the demo settings with the in-memory realtime backend."""

from backend.settings import *  # noqa: F403

DJANGO_AI = {"REALTIME_BACKEND": "django_ai.conversations.realtime.memory.MemoryBackend"}
