"""Settings of the test suite and of the SDK's test server: the demo project's settings plus a
project app of the tests' own (``tests.shop``: models with integer, decimal and custom primary
keys exposed through the bridge). ``./dev demo`` keeps ``backend.settings``, without it."""

from backend.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.shop"]  # noqa: F405
