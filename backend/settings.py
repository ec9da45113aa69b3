"""Settings of the demo project.

Embedded defaults: SQLite, the in-process realtime backend and in-process tasks. Set DATABASE_URL
(e.g. postgres://127.0.0.1:5432/test) to use another database.
"""

import json
import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("DJANGO_AI_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-secret-key-change-me")
# Off unless asked for (DJANGO_DEBUG=1): with DEBUG on, an error page shows settings and code, and
# failed turns show exception details to the visitor. The demo works the same either way.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "django_ai.conversations",
    "agents",
]
try:  # The database task backend (the 'worker' extra): `manage.py db_worker` runs turns.
    import django_tasks_db  # noqa: F401

    INSTALLED_APPS.append("django_tasks_db")
except ImportError:
    pass

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backend.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "backend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "backend.wsgi.application"
ASGI_APPLICATION = "backend.asgi.application"


def _database() -> dict[str, Any]:
    url = os.environ.get("DATABASE_URL")
    db: dict[str, Any]
    if url:
        # A development dependency (the dev extra): a demo on SQLite runs without it.
        import dj_database_url

        db = {**dj_database_url.parse(url, conn_max_age=0)}
    else:
        db = {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "demo.sqlite3"}
        # Concurrent readers and one writer without "database is locked" under light load.
        db["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
        # The test database is a file (one per test run), not memory: other threads and processes
        # (a task worker started by a test) must see it.
        db["TEST"] = {"NAME": str(VAR_DIR / f"test_{os.getpid()}.sqlite3")}
    test_name = os.environ.get("DJANGO_TEST_DB_NAME")
    if test_name:
        db["TEST"] = {"NAME": test_name}
    return db


DATABASES = {"default": _database()}

AUTH_PASSWORD_VALIDATORS: list[dict[str, Any]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# The demo page's files. The SDK's browser bundle is the app's own static file
# (django_ai/conversations/client.js, as a pip install has it; ./dev demo builds it in a checkout).
STATICFILES_DIRS = [BASE_DIR / "backend" / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_REDIRECT_URL = "/"

# In-process tasks for the demo; see docs/deployment.md for a real worker.
try:
    import django.tasks  # noqa: F401  (Django 6)

    _TASKS_PKG = "django.tasks"
except ImportError:  # Django 5.2: the django-tasks backport
    _TASKS_PKG = "django_tasks"
TASKS = {
    "default": {
        "BACKEND": os.environ.get("DJANGO_TASKS_BACKEND", f"{_TASKS_PKG}.backends.immediate.ImmediateBackend"),
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
}

# DJANGO_AI_SETTINGS_JSON='{"QUERY_DEFAULT_LIMIT": 10}' tries DJANGO_AI keys without editing this file.
DJANGO_AI: dict = json.loads(os.environ.get("DJANGO_AI_SETTINGS_JSON") or "{}")

if os.environ.get("PUSHER_KEY"):
    DJANGO_AI_PUSHER = {
        "APP_ID": os.environ.get("PUSHER_APP_ID", ""),
        "KEY": os.environ["PUSHER_KEY"],
        "SECRET": os.environ.get("PUSHER_SECRET", ""),
        "CLUSTER": os.environ.get("PUSHER_CLUSTER", ""),
        "HOST": os.environ.get("PUSHER_HOST", ""),
        "PORT": int(os.environ.get("PUSHER_PORT", "0") or 0) or None,
        "SCHEME": os.environ.get("PUSHER_SCHEME", ""),
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_ai": {"handlers": ["console"], "level": os.environ.get("DJANGO_AI_LOG_LEVEL", "INFO")}},
}
