"""Settings (``DJANGO_AI`` read lazily, reloaded on change, ``DJANGO_AI_PUSHER`` merged) and the
system checks that name bad values and missing optional parts."""

from __future__ import annotations

import sys

import pytest
from django.core.checks import Error, Warning, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import modify_settings, override_settings

from django_ai.conversations.conf import DEFAULTS, AISettings, ai_settings
from django_ai.conversations.realtime.memory import MemoryBackend


pytestmark = pytest.mark.django_db


def ours(**settings) -> list:
    """The Django AI check messages under ``settings``."""
    with override_settings(**settings):
        return [m for m in run_checks() if (m.id or "").startswith("django_ai.")]


def ids(messages) -> set[str]:
    return {m.id for m in messages}


# --- Reading settings -------------------------------------------------------------------------------


def test_settings_are_read_on_first_access_not_at_creation():
    fresh = AISettings()
    with override_settings(DJANGO_AI={"TURN_TIMEOUT": 7}):
        assert fresh._user is None
        assert fresh.TURN_TIMEOUT == 7
        assert "TURN_TIMEOUT" in fresh.__dict__  # cached


def test_defaults_apply_for_missing_keys():
    with override_settings(DJANGO_AI={"TURN_TIMEOUT": 7}):
        assert ai_settings.TURN_TIMEOUT == 7
        assert ai_settings.MAX_MESSAGE_LENGTH == DEFAULTS["MAX_MESSAGE_LENGTH"]


def test_settings_reload_when_changed():
    assert ai_settings.GENERIC_ERROR_MESSAGE == DEFAULTS["GENERIC_ERROR_MESSAGE"]
    with override_settings(DJANGO_AI={"GENERIC_ERROR_MESSAGE": "Oops"}):
        assert ai_settings.GENERIC_ERROR_MESSAGE == "Oops"
        with override_settings(DJANGO_AI={"GENERIC_ERROR_MESSAGE": "Inner"}):
            assert ai_settings.GENERIC_ERROR_MESSAGE == "Inner"
        assert ai_settings.GENERIC_ERROR_MESSAGE == "Oops"
    assert ai_settings.GENERIC_ERROR_MESSAGE == DEFAULTS["GENERIC_ERROR_MESSAGE"]


def test_unknown_setting_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="Invalid Django AI setting: 'TURN_TIMOUT'"):
        ai_settings.TURN_TIMOUT  # noqa: B018


def test_dotted_paths_are_imported_on_access():
    path = "django_ai.conversations.realtime.memory.MemoryBackend"
    with override_settings(DJANGO_AI={"REALTIME_BACKEND": path}):
        assert ai_settings.REALTIME_BACKEND is MemoryBackend
        assert ai_settings.raw("REALTIME_BACKEND") == path


def test_a_dotted_path_that_does_not_import_names_the_setting():
    with override_settings(DJANGO_AI={"TEXT_EXTRACTOR": "nowhere.Extractor"}):
        with pytest.raises(ImproperlyConfigured, match=r"DJANGO_AI\['TEXT_EXTRACTOR'\] is 'nowhere.Extractor'"):
            ai_settings.TEXT_EXTRACTOR  # noqa: B018


def test_djangoai_must_be_a_dict():
    with override_settings(DJANGO_AI=["TURN_TIMEOUT", 5]):
        with pytest.raises(ImproperlyConfigured, match="settings.DJANGO_AI must be a dict, not list"):
            ai_settings.TURN_TIMEOUT  # noqa: B018


def test_seed_djangoai_pusher_is_merged_under_djangoai_pusher():
    seed = {"app_id": "1", "KEY": "k", "SECRET": "s", "CLUSTER": "us2"}
    with override_settings(DJANGO_AI_PUSHER=seed, DJANGO_AI={"PUSHER": {"CLUSTER": "eu", "HOST": "127.0.0.1"}}):
        assert ai_settings.pusher == {"APP_ID": "1", "KEY": "k", "SECRET": "s", "CLUSTER": "eu", "HOST": "127.0.0.1"}
        assert ai_settings.PUSHER == ai_settings.pusher
    with override_settings(DJANGO_AI_PUSHER=seed):
        assert ai_settings.pusher["CLUSTER"] == "us2"
    assert ai_settings.pusher == {}


def test_pusher_settings_that_are_not_a_dict():
    with override_settings(DJANGO_AI_PUSHER="app:key:secret"):
        with pytest.raises(ImproperlyConfigured, match="settings.DJANGO_AI_PUSHER must be a dict"):
            ai_settings.pusher  # noqa: B018


def test_components_are_rebuilt_when_settings_change():
    from django_ai.conversations.realtime import get_backend

    with override_settings(DJANGO_AI={"REALTIME_BACKEND": "django_ai.conversations.realtime.memory.MemoryBackend"}):
        first = get_backend()
        assert isinstance(first, MemoryBackend)
        with override_settings(DJANGO_AI={"REALTIME_BACKEND": "django_ai.conversations.realtime.memory.MemoryBackend", "TURN_TIMEOUT": 1}):
            assert get_backend() is not first


# --- System checks ----------------------------------------------------------------------------------


def test_the_demo_settings_pass_the_checks():
    assert [m for m in ours() if m.is_serious()] == []
    call_command("check")


def test_call_command_check_fails_on_a_bad_setting():
    with override_settings(DJANGO_AI={"TURN_TIMEOUT": "soon"}):
        with pytest.raises(SystemCheckError, match=r"django_ai.E003"):
            call_command("check")


@pytest.mark.parametrize(
    ("django_ai", "check_id", "text"),
    [
        ({"TURN_TIMOUT": 5}, "django_ai.W001", "unknown key 'TURN_TIMOUT'"),
        ({"TEXT_EXTRACTOR": "nowhere.Extractor"}, "django_ai.E002", "cannot be imported"),
        ({"REALTIME_BACKEND": 42}, "django_ai.E002", "must be a dotted import path"),
        ({"BRIDGE_PERMISSION_CLASSES": ["nowhere.Permission"]}, "django_ai.E002", "cannot be imported"),
        ({"TURN_TIMEOUT": "soon"}, "django_ai.E003", "TURN_TIMEOUT"),
        ({"TURN_TIMEOUT": True}, "django_ai.E003", "TURN_TIMEOUT"),
        ({"MAX_MESSAGE_LENGTH": 0}, "django_ai.E003", "MAX_MESSAGE_LENGTH"),
        ({"STREAM_COALESCE_WINDOW": -1}, "django_ai.E003", "STREAM_COALESCE_WINDOW"),
        ({"STALE_TURN_ACTION": "explode"}, "django_ai.E004", "STALE_TURN_ACTION"),
        ({"DEFAULT_CONCURRENCY_POLICY": "queue"}, "django_ai.E005", "DEFAULT_CONCURRENCY_POLICY"),
        ({"REALTIME_BACKEND": "django_ai.conversations.agent.ConversationAgent"}, "django_ai.E006", "not a realtime backend class"),
        ({"AGENTS": ["agents.chat_agents.EchoAgent"]}, "django_ai.E007", "must be a dict"),
        ({"AGENTS": {"echo": "nowhere.EchoAgent"}}, "django_ai.E007", "Could not import agent"),
        ({"AGENTS": {"bad path": "agents.chat_agents.EchoAgent"}}, "django_ai.E007", "is not valid"),
        ({"AGENTS": {"x": "django_ai.conversations.agent.EmptyContext"}}, "django_ai.E007", "is not a ConversationAgent subclass"),
        ({"QUERY_DEFAULT_LIMIT": 500, "QUERY_MAX_LIMIT": 100}, "django_ai.E008", "larger than"),
        ({"GENERIC_ERROR_MESSAGE": ""}, "django_ai.E009", "GENERIC_ERROR_MESSAGE"),
        ({"ANONYMOUS_ID_SESSION_KEY": None}, "django_ai.E009", "ANONYMOUS_ID_SESSION_KEY"),
        ({"ANONYMOUS_ID_HEADER": "X Anonymous:Id"}, "django_ai.E009", "not a valid HTTP header name"),
        ({"EXPOSE_ERROR_DETAILS": "yes"}, "django_ai.E009", "EXPOSE_ERROR_DETAILS"),
        ({"PUSHER": {"KEY": "k", "CLUSTER": "us2"}}, "django_ai.E010", "missing APP_ID, SECRET"),
        ({"PUSHER": {"APP_ID": "1", "KEY": "k", "SECRET": "s"}}, "django_ai.E011", "neither CLUSTER nor HOST"),
        ({"PUSHER": "app:key"}, "django_ai.E013", "must be a dict"),
    ],
)
def test_bad_settings_are_named_with_an_id_and_a_hint(django_ai, check_id, text):
    messages = [m for m in ours(DJANGO_AI=django_ai) if m.id == check_id]
    assert messages, f"{check_id} not reported for {django_ai!r}"
    message = messages[0]
    assert text in message.msg
    assert message.hint
    assert isinstance(message, Warning if check_id.startswith("django_ai.W") else Error)


def test_good_values_raise_nothing_for_the_same_keys():
    good = {
        "TURN_TIMEOUT": 0,
        "MAX_MESSAGE_LENGTH": 10,
        "STALE_TURN_ACTION": "retry",
        "DEFAULT_CONCURRENCY_POLICY": "reject",
        "REALTIME_BACKEND": "django_ai.conversations.realtime.memory.MemoryBackend",
        "AGENTS": {"echo2": "agents.chat_agents.EchoAgent"},
        "QUERY_DEFAULT_LIMIT": 100,
        "QUERY_MAX_LIMIT": 100,
        "EXPOSE_ERROR_DETAILS": False,
        "PUSHER": {"APP_ID": "1", "KEY": "k", "SECRET": "s", "HOST": "127.0.0.1", "PORT": 6001},
    }
    assert [m for m in ours(DJANGO_AI=good) if m.is_serious()] == []


def test_djangoai_that_is_not_a_dict_is_one_error():
    messages = ours(DJANGO_AI="TURN_TIMEOUT=5")
    assert ids(messages) >= {"django_ai.E001"}
    assert "must be a dict" in next(m for m in messages if m.id == "django_ai.E001").msg


def test_seed_pusher_setting_is_checked_too():
    assert "django_ai.E011" in ids(ours(DJANGO_AI_PUSHER={"APP_ID": "1", "KEY": "k", "SECRET": "s"}))
    assert "django_ai.E013" in ids(ours(DJANGO_AI_PUSHER=["key"]))


def test_missing_pusher_package_is_named_with_the_extra(monkeypatch):
    """The pusher package is installed here; a None entry in sys.modules makes its import fail the
    way it does where it is not installed."""
    monkeypatch.setitem(sys.modules, "pusher", None)
    messages = [m for m in ours(DJANGO_AI_PUSHER={"APP_ID": "1", "KEY": "k", "SECRET": "s", "CLUSTER": "us2"}) if m.id == "django_ai.E012"]
    assert messages and "django-ai-first[pusher]" in messages[0].hint


def test_missing_sessions_app_is_a_warning():
    with modify_settings(INSTALLED_APPS={"remove": ["django.contrib.sessions"]}):
        messages = [m for m in run_checks() if m.id == "django_ai.W002"]
    assert messages and "anonymous" in messages[0].msg and "X-Conversation-Anonymous-Id" in messages[0].hint
    assert "django_ai.W002" not in ids(ours())


# --- The reference stays complete -------------------------------------------------------------------


def test_every_setting_and_check_id_is_in_the_settings_reference():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    reference = (root / "docs" / "settings.md").read_text()
    missing_keys = [key for key in DEFAULTS if f"| `{key}` |" not in reference]
    assert missing_keys == [], f"add these DJANGO_AI keys to docs/settings.md: {missing_keys}"
    source = "\n".join(p.read_text() for p in (root / "conversations").rglob("*.py"))
    check_ids = sorted(set(re.findall(r'id="(django_ai\.[EW]\d+)"', source)))
    assert check_ids, "no check ids found in the source"
    missing_ids = [check_id for check_id in check_ids if f"`{check_id}`" not in reference]
    assert missing_ids == [], f"add these system check ids to docs/settings.md: {missing_ids}"
