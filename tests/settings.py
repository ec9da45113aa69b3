"""Settings of the test suite and of the SDK's test server: the demo project's settings plus a
project app of the tests' own (``tests.shop``: models with integer, decimal and custom primary
keys exposed through the bridge) and the SDK tests' agents (tests/sdk_agents.py). ``./dev demo``
keeps ``backend.settings``, without either."""

from backend.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.shop"]  # noqa: F405

DJANGO_AI = {
    **DJANGO_AI,  # noqa: F405
    "AGENTS": {
        **DJANGO_AI.get("AGENTS", {}),  # noqa: F405
        "stream-test": "tests.sdk_agents.StreamTestAgent",
        "tools-test": "tests.sdk_agents.ToolsTestAgent",
        "versions-test": "tests.sdk_agents.VersionsTestAgent",
        "ai-sdk-test": "tests.ai_sdk_agents.AISDKTestAgent",
        "ai-sdk-refund": "tests.ai_sdk_agents.AISDKRefundAgent",
    },
    "TURN_RECOVERY_IN_WEB": False,  # tests decide when crash recovery runs (tests/test_turn_recovery.py)
}
