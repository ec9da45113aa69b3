"""Django AI Conversations: the reusable app, imported only as ``django_ai.conversations``."""

if __name__ != "django_ai.conversations":
    # The folder is mapped to ``django_ai.conversations`` in pyproject.toml. Loading it under a
    # second name would create a second set of models, registries and settings.
    raise ImportError(
        f"The Django AI Conversations app was imported as {__name__!r}. Import it only as "
        "'django_ai.conversations' (pip install django-ai-first, or 'pip install -e .' in a "
        "checkout) and list 'django_ai.conversations' in INSTALLED_APPS."
    )

from typing import Any

__all__ = ["ConversationAgent", "__version__", "register_agent"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy so that importing the package (e.g. for INSTALLED_APPS) does not load models early.
    if name == "ConversationAgent":
        from .agent import ConversationAgent

        return ConversationAgent
    if name == "register_agent":
        from .registry import register_agent

        return register_agent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
