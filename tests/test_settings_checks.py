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

from django_ai.conversations.bridge.throttles import (
    AnonymousAddressThrottle,
    MessageCreateThrottle,
    SessionStartThrottle,
)
from django_ai.conversations.conf import DEFAULTS, AISettings, ai_settings
from django_ai.conversations.realtime import get_backend
from django_ai.conversations.realtime.base import BaseRealtimeBackend
from django_ai.conversations.realtime.local import LocalBackend
from django_ai.conversations.realtime.memory import MemoryBackend
from django_ai.conversations.realtime.pusher import PusherBackend

LOCAL = "django_ai.conversations.realtime.local.LocalBackend"
PUSHER = "django_ai.conversations.realtime.pusher.PusherBackend"
MEMORY = "django_ai.conversations.realtime.memory.MemoryBackend"
SOKETI = {"APP_ID": "1", "KEY": "k", "SECRET": "s", "HOST": "127.0.0.1", "PORT": 6001, "SCHEME": "http"}


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
        assert DEFAULTS["MAX_MESSAGE_LENGTH"] == ai_settings.MAX_MESSAGE_LENGTH


def test_settings_reload_when_changed():
    assert DEFAULTS["GENERIC_ERROR_MESSAGE"] == ai_settings.GENERIC_ERROR_MESSAGE
    with override_settings(DJANGO_AI={"GENERIC_ERROR_MESSAGE": "Oops"}):
        assert ai_settings.GENERIC_ERROR_MESSAGE == "Oops"
        with override_settings(DJANGO_AI={"GENERIC_ERROR_MESSAGE": "Inner"}):
            assert ai_settings.GENERIC_ERROR_MESSAGE == "Inner"
        assert ai_settings.GENERIC_ERROR_MESSAGE == "Oops"
    assert DEFAULTS["GENERIC_ERROR_MESSAGE"] == ai_settings.GENERIC_ERROR_MESSAGE


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
        with pytest.raises(ImproperlyConfigured, match=r"settings\.DJANGO_AI must be a dict, not list"):
            ai_settings.TURN_TIMEOUT  # noqa: B018


def test_seed_djangoai_pusher_is_merged_under_djangoai_pusher():
    seed = {"app_id": "1", "KEY": "k", "SECRET": "s", "CLUSTER": "us2"}
    with override_settings(DJANGO_AI_PUSHER=seed, DJANGO_AI={"PUSHER": {"CLUSTER": "eu", "HOST": "127.0.0.1"}}):
        assert ai_settings.pusher == {"APP_ID": "1", "KEY": "k", "SECRET": "s", "CLUSTER": "eu", "HOST": "127.0.0.1"}
        assert ai_settings.pusher == ai_settings.PUSHER
    with override_settings(DJANGO_AI_PUSHER=seed):
        assert ai_settings.pusher["CLUSTER"] == "us2"
    assert ai_settings.pusher == {}


def test_pusher_settings_that_are_not_a_dict():
    with override_settings(DJANGO_AI_PUSHER="app:key:secret"):
        with pytest.raises(ImproperlyConfigured, match=r"settings\.DJANGO_AI_PUSHER must be a dict"):
            ai_settings.pusher  # noqa: B018


def test_components_are_rebuilt_when_settings_change():
    from django_ai.conversations.realtime import get_backend

    with override_settings(DJANGO_AI={"REALTIME_BACKEND": "django_ai.conversations.realtime.memory.MemoryBackend"}):
        first = get_backend()
        assert isinstance(first, MemoryBackend)
        with override_settings(
            DJANGO_AI={"REALTIME_BACKEND": "django_ai.conversations.realtime.memory.MemoryBackend", "TURN_TIMEOUT": 1}
        ):
            assert get_backend() is not first


# --- REALTIME and THROTTLE_RATES, and the older keys they replace --------------------------------


def test_realtime_is_a_backend_and_its_own_options():
    with override_settings(
        DJANGO_AI={"REALTIME": {"BACKEND": LOCAL, "OPTIONS": {"HISTORY_SIZE": 7}}}, DJANGO_AI_PUSHER=SOKETI
    ):
        assert {"BACKEND": LocalBackend, "OPTIONS": {"HISTORY_SIZE": 7}} == ai_settings.REALTIME
        assert ai_settings.REALTIME_BACKEND is LocalBackend
        backend = get_backend()
        assert type(backend) is LocalBackend
        assert backend.options == {**LocalBackend.default_options, "HISTORY_SIZE": 7}
        assert backend.broker.history_size == 7
        assert ai_settings.SSE_HISTORY_SIZE == 7  # the older name reads the option it became


def test_older_keys_map_into_each_backends_own_options():
    older = {
        "SSE_HISTORY_SIZE": 9,
        "SSE_MAX_STREAMS_PER_VISITOR": None,
        "REALTIME_MAX_PENDING": 50,
        "STREAM_COALESCE_WINDOW": 0.2,
    }
    with override_settings(DJANGO_AI=older):
        assert {
            "BACKEND": LocalBackend,
            "OPTIONS": {"HISTORY_SIZE": 9, "MAX_STREAMS_PER_VISITOR": None, "MAX_PENDING": 50, "COALESCE_WINDOW": 0.2},
        } == ai_settings.REALTIME
        assert get_backend().stream_limits() == (None, 100)
    with override_settings(DJANGO_AI=older, DJANGO_AI_PUSHER=SOKETI):
        # The Pusher backend gets the Pusher settings and the sender's options, not the Local ones.
        assert {
            "BACKEND": PusherBackend,
            "OPTIONS": {**SOKETI, "MAX_PENDING": 50, "COALESCE_WINDOW": 0.2},
        } == ai_settings.REALTIME
    with override_settings(DJANGO_AI={**older, "REALTIME_BACKEND": MEMORY, "PUSHER": {**SOKETI, "MAX_EVENTS": 3}}):
        # The Memory backend reads its one option, no longer the whole Pusher dict.
        assert {"BACKEND": MemoryBackend, "OPTIONS": {"MAX_EVENTS": 3}} == ai_settings.REALTIME
        assert get_backend().events.maxlen == 3


class OwnBackend(BaseRealtimeBackend):  # declares no options
    def send(self, channel, event, payload):
        pass


def test_a_backend_that_declares_no_options_gets_the_pusher_settings_as_before():
    with override_settings(
        DJANGO_AI={"REALTIME_BACKEND": f"{__name__}.OwnBackend", "SSE_HISTORY_SIZE": 9}, DJANGO_AI_PUSHER=SOKETI
    ):
        assert {"BACKEND": OwnBackend, "OPTIONS": SOKETI} == ai_settings.REALTIME


def test_realtime_wins_over_the_older_keys_and_a_check_names_them():
    settings = {
        "DJANGO_AI": {"REALTIME": {"BACKEND": MEMORY}, "SSE_HISTORY_SIZE": 5, "PUSHER": SOKETI},
        "DJANGO_AI_PUSHER": SOKETI,
    }
    with override_settings(**settings):
        assert {"BACKEND": MemoryBackend, "OPTIONS": {}} == ai_settings.REALTIME
    warnings = [m for m in ours(**settings) if m.id == "django_ai.W003"]
    assert len(warnings) == 1
    assert (
        "DJANGO_AI['PUSHER'], DJANGO_AI['SSE_HISTORY_SIZE'], settings.DJANGO_AI_PUSHER are ignored" in warnings[0].msg
    )


def test_a_malformed_realtime_setting_names_the_fix():
    with override_settings(DJANGO_AI={"REALTIME": {"OPTIONS": {}}}):
        with pytest.raises(ImproperlyConfigured, match=r"DJANGO_AI\['REALTIME'\] must be a dict with a 'BACKEND'"):
            ai_settings.REALTIME  # noqa: B018
    with override_settings(DJANGO_AI={"REALTIME": {"BACKEND": "nowhere.Backend"}}):
        with pytest.raises(ImproperlyConfigured, match=r"DJANGO_AI\['REALTIME'\]\['BACKEND'\] is 'nowhere.Backend'"):
            ai_settings.REALTIME  # noqa: B018


def test_throttle_rates_by_scope_over_the_older_keys_over_the_defaults():
    assert DEFAULTS["THROTTLE_RATES"] == ai_settings.THROTTLE_RATES
    django_ai = {
        "THROTTLE_RATES": {"message_create": "5/min", "mine": "1/s"},
        "MESSAGE_CREATE_THROTTLE_RATE": "9/min",
        "UPLOAD_THROTTLE_RATE": None,
    }
    with override_settings(DJANGO_AI=django_ai):
        assert ai_settings.THROTTLE_RATES == {
            "message_create": "5/min",
            "session_start": "30/min",
            "upload": None,
            "anonymous_address": "300/min",
            "row_action": "60/min",
            "mine": "1/s",
        }
        assert ai_settings.UPLOAD_THROTTLE_RATE is None  # the older name reads its scope
        assert ai_settings.MESSAGE_CREATE_THROTTLE_RATE == "5/min"


def test_throttles_read_their_rate_by_scope():
    with override_settings(
        DJANGO_AI={"THROTTLE_RATES": {"message_create": "5/min", "session_start": "6/hour", "anonymous_address": None}}
    ):
        assert MessageCreateThrottle().get_rate() == "5/min"
        assert SessionStartThrottle().get_rate() == "6/hour"
        assert AnonymousAddressThrottle().get_rate() is None
    with override_settings(DJANGO_AI={"SESSION_START_THROTTLE_RATE": "7/day"}):
        assert SessionStartThrottle().get_rate() == "7/day"


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
        (
            {"REALTIME_BACKEND": "django_ai.conversations.agent.ConversationAgent"},
            "django_ai.E006",
            "not a realtime backend class",
        ),
        ({"AGENTS": ["agents.chat_agents.EchoAgent"]}, "django_ai.E007", "must be a dict"),
        ({"AGENTS": {"echo": "nowhere.EchoAgent"}}, "django_ai.E007", "Could not import agent"),
        ({"AGENTS": {"bad path": "agents.chat_agents.EchoAgent"}}, "django_ai.E007", "is not valid"),
        (
            {"AGENTS": {"x": "django_ai.conversations.agent.EmptyContext"}},
            "django_ai.E007",
            "is not a ConversationAgent subclass",
        ),
        ({"QUERY_DEFAULT_LIMIT": 500, "QUERY_MAX_LIMIT": 100}, "django_ai.E008", "larger than"),
        ({"GENERIC_ERROR_MESSAGE": ""}, "django_ai.E009", "GENERIC_ERROR_MESSAGE"),
        ({"ANONYMOUS_ID_SESSION_KEY": None}, "django_ai.E009", "ANONYMOUS_ID_SESSION_KEY"),
        ({"ANONYMOUS_ID_HEADER": "X Anonymous:Id"}, "django_ai.E009", "not a valid HTTP header name"),
        ({"EXPOSE_ERROR_DETAILS": "yes"}, "django_ai.E009", "EXPOSE_ERROR_DETAILS"),
        ({"PUSHER": {"KEY": "k", "CLUSTER": "us2"}}, "django_ai.E010", "missing APP_ID, SECRET"),
        ({"PUSHER": {"APP_ID": "1", "KEY": "k", "SECRET": "s"}}, "django_ai.E011", "neither CLUSTER nor HOST"),
        ({"PUSHER": "app:key"}, "django_ai.E013", "must be a dict"),
        ({"SSE_MAX_STREAMS_PER_VISITOR": 0}, "django_ai.E003", "SSE_MAX_STREAMS_PER_VISITOR"),
        ({"REALTIME": "local"}, "django_ai.E015", "must be a dict"),
        ({"REALTIME": {"OPTIONS": {}}}, "django_ai.E015", "has no 'BACKEND'"),
        ({"REALTIME": {"BACKEND": LOCAL, "OPTION": {}}}, "django_ai.E015", "unknown key 'OPTION'"),
        ({"REALTIME": {"BACKEND": LOCAL, "OPTIONS": [1]}}, "django_ai.E015", "must be a dict, not list"),
        ({"REALTIME": {"BACKEND": "nowhere.Backend"}}, "django_ai.E002", "cannot be imported"),
        (
            {"REALTIME": {"BACKEND": "django_ai.conversations.agent.ConversationAgent"}},
            "django_ai.E006",
            "not a realtime backend class",
        ),
        (
            {"REALTIME": {"BACKEND": LOCAL, "OPTIONS": {"HISTORY_SIZE": "many"}}},
            "django_ai.E003",
            "['OPTIONS']['HISTORY_SIZE']",
        ),
        (
            {"REALTIME": {"BACKEND": LOCAL, "OPTIONS": {"HISTORY_SIZ": 5}}},
            "django_ai.W004",
            "'HISTORY_SIZ', which LocalBackend does not read",
        ),
        (
            {"REALTIME": {"BACKEND": PUSHER, "OPTIONS": {"KEY": "k", "HOST": "h"}}},
            "django_ai.E010",
            "['OPTIONS'] is missing APP_ID, SECRET",
        ),
        (
            {"REALTIME": {"BACKEND": PUSHER, "OPTIONS": {"APP_ID": "x", "KEY": "k", "SECRET": "s", "HOST": "h"}}},
            "django_ai.E014",
            "APP_ID is 'x'",
        ),
        (
            {"REALTIME": {"BACKEND": LOCAL}, "SSE_HISTORY_SIZE": 5},
            "django_ai.W003",
            "DJANGO_AI['SSE_HISTORY_SIZE'] is ignored",
        ),
        ({"THROTTLE_RATES": ["30/min"]}, "django_ai.E016", "must be a dict"),
        (
            {"THROTTLE_RATES": {"upload": "30 per minute"}},
            "django_ai.E016",
            "['upload'] is '30 per minute', which is not a rate",
        ),
        ({"UPLOAD_THROTTLE_RATE": 30}, "django_ai.E016", "DJANGO_AI['UPLOAD_THROTTLE_RATE'] is 30"),
        (
            {"THROTTLE_RATES": {"upload": "5/min"}, "UPLOAD_THROTTLE_RATE": "9/min"},
            "django_ai.W003",
            "UPLOAD_THROTTLE_RATE, so that key is ignored",
        ),
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
        "SSE_MAX_STREAMS_PER_VISITOR": None,
        "THROTTLE_RATES": {"message_create": "10/minute", "upload": None, "my_scope": "5/s"},
    }
    assert [m for m in ours(DJANGO_AI=good) if m.is_serious()] == []
    new = {"REALTIME": {"BACKEND": PUSHER, "OPTIONS": {**SOKETI, "COALESCE_WINDOW": 0.1}}}
    assert ours(DJANGO_AI=new) == []
    local = {"REALTIME": {"BACKEND": LOCAL, "OPTIONS": {"MAX_STREAMS_PER_VISITOR": None, "HISTORY_SIZE": 0}}}
    assert ours(DJANGO_AI=local) == []


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
    messages = [
        m
        for m in ours(DJANGO_AI_PUSHER={"APP_ID": "1", "KEY": "k", "SECRET": "s", "CLUSTER": "us2"})
        if m.id == "django_ai.E012"
    ]
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
