"""The real ``ai`` npm package (7.x: ``DefaultChatTransport``, ``readUIMessageStream``) consuming the
AI SDK endpoint of a real demo server, under ``runserver`` (threaded WSGI) and uvicorn (ASGI).
The Node side is tests/ai_sdk_client/transport.test.mjs; its packages are pinned by that folder's
lock and installed here (``npm ci``) when missing, as ``./dev`` installs them (scripts/npm-dirs.txt).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.servers import API, ROOT, migrated_demo_env, running_server

CLIENT = ROOT / "tests" / "ai_sdk_client"

pytestmark = pytest.mark.once


def ensure_packages() -> None:
    if (CLIENT / "node_modules" / "ai" / "package.json").exists():
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENT, check=True, timeout=600)


@pytest.mark.parametrize("kind", ["runserver", "uvicorn"])
def test_the_ai_packages_transport_reads_our_stream(kind, tmp_path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js 20+ and npm are needed for this test (the CI image has them).")
    ensure_packages()
    env = migrated_demo_env(tmp_path / "var", DJANGO_SETTINGS_MODULE="tests.settings")
    with running_server(kind, env, tmp_path / f"{kind}.log") as server:
        result = subprocess.run(
            ["node", "--test", "--test-reporter=tap", str(CLIENT / "transport.test.mjs")],
            cwd=CLIENT,
            env={**os.environ, "AI_SDK_TEST_API": server.base + API},
            capture_output=True,
            text=True,
            timeout=300,
        )
        report = f"{result.stdout}\n{result.stderr}\n--- server log ---\n{server.log_tail()}"
        assert result.returncode == 0, report
        # Every test of the file ran (none skipped or filtered out).
        assert "# pass 8" in result.stdout and "# fail 0" in result.stdout, report
