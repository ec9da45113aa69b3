import pytest

from django_ai.conversations.testing import capture_events, isolated_registry


@pytest.fixture
def events():
    """The in-memory realtime backend, capturing what a test sends."""
    with capture_events() as capture:
        yield capture


@pytest.fixture
def held_tasks(settings):
    """Tasks (turns, extraction) go to a DummyBackend, which keeps them in ``.results`` instead of
    running them; the test runs one when it chooses: ``result.task.call(*result.args)``. For
    checking what a request answers before its background work can start."""
    from django_ai.conversations.internal.tasks_compat import ImmediateBackend, task_backends

    package = ImmediateBackend.__module__.split(".backends.")[0]  # django.tasks, or django_tasks on 5.2
    settings.TASKS = {**settings.TASKS, "held": {"BACKEND": f"{package}.backends.dummy.DummyBackend"}}
    settings.DJANGO_AI = {**getattr(settings, "DJANGO_AI", {}), "TASK_BACKEND": "held"}
    backend = task_backends["held"]
    backend.clear()
    return backend


@pytest.fixture(autouse=True)
def _memory_realtime(request):
    # Tests that need another backend (soketi, local SSE) override DJANGO_AI themselves.
    if "events" in request.fixturenames:
        yield
        return
    with capture_events():
        yield


@pytest.fixture(autouse=True)
def _isolated_agent_registry():
    # Agents a test registers (or replaces, e.g. "support") do not leak into other tests.
    with isolated_registry():
        yield


@pytest.fixture(autouse=True)
def _background_turns_finish():
    # A committed user message is answered in a background thread (in-process tasks): let those
    # turns end before the test's database and agents are torn down.
    yield
    from django_ai.conversations.testing import wait_for_turns

    wait_for_turns(30)


@pytest.fixture(autouse=True, scope="session")
def _no_recovery_sweeps_in_the_test_process():
    # Tests build stale turns on purpose and recover them when they choose; the recovery loop that
    # a web process starts at its first request (live_server requests included) would race them.
    # Servers that tests start as subprocesses keep it (tests/test_turns_web_recovery.py).
    from django.core.signals import request_started

    from django_ai.conversations.turns.sweeps import WEB_RECOVERY_UID

    request_started.disconnect(dispatch_uid=WEB_RECOVERY_UID)


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    # Django's default PBKDF2 takes about a second per password on this machine; tests that create
    # users (UserFactory) do not test hashing.
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    # Throttle counts live in the default cache and every test client has the address 127.0.0.1:
    # each test starts with none, so the per-address limit sees one test's requests only.
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session")
def soketi():
    """A real soketi (Pusher-protocol server) on loopback, shared by the realtime tests."""
    from tests.realtime_server.harness import Soketi, node_available

    reason = node_available()
    if reason:
        pytest.skip(f"soketi/pusher-js cannot run: {reason}; CI installs them (scripts/npm-dirs.txt)")
    with Soketi() as server:
        yield server
