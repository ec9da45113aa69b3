"""The app is importable only as ``django_ai.conversations``: the folder ``conversations/`` loaded
under another name would give a second set of models, registries and settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    # A fresh interpreter whose sys.path starts at the checkout, so the bare folder name is
    # importable as a top-level package, as it would be from a project root.
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {code}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_import_under_the_folder_name_is_refused_with_the_fix():
    result = run_python("import conversations")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "imported as 'conversations'" in result.stderr
    assert "'django_ai.conversations'" in result.stderr and "INSTALLED_APPS" in result.stderr


def test_submodules_under_the_folder_name_are_refused_too():
    result = run_python("import conversations.models")
    assert result.returncode != 0 and "Import it only as 'django_ai.conversations'" in result.stderr


def test_the_real_name_imports_without_loading_django_models():
    result = run_python(
        "import django_ai.conversations as c; "
        "print(c.__name__, c.__version__, 'django_ai.conversations.models' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    from importlib.metadata import version

    assert result.stdout.split() == ["django_ai.conversations", version("django-ai-first"), "False"]


def test_public_names_resolve_lazily():
    import django_ai.conversations as package
    from django_ai.conversations.agent import ConversationAgent
    from django_ai.conversations.registry import register_agent

    assert package.ConversationAgent is ConversationAgent
    assert package.register_agent is register_agent
    with pytest.raises(AttributeError, match="NotAThing"):
        package.NotAThing  # noqa: B018
