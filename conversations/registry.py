"""The agent registry: maps agent paths such as ``"support"`` or ``"sales/premium"`` to classes."""

from __future__ import annotations

import re
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .agent import ConversationAgent
from .conf import ai_settings
from .exceptions import AgentNotFound, ImproperlyDeclaredAgent

__all__ = ["AgentRegistry", "get_agent", "register_agent", "registry"]

PATH_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")


class AgentRegistry:
    def __init__(self) -> None:
        self._agents: dict[str, type[ConversationAgent]] = {}
        self._lock = threading.Lock()

    def register(
        self, path: str, agent: type[ConversationAgent] | str, *, replace: bool = True
    ) -> type[ConversationAgent]:
        """Register ``agent`` (a class or its dotted import path) under ``path``."""
        if not isinstance(path, str) or not PATH_RE.match(path) or len(path) > 200:
            raise ImproperlyDeclaredAgent(
                f"Agent path {path!r} is not valid: use letters, digits, '_', '-', '.' and '/' "
                "between segments, e.g. 'support' or 'sales/premium'."
            )
        agent_cls = self._resolve(agent)
        agent_cls.check_declaration()
        with self._lock:
            current = self._agents.get(path)
            if current is not None and current is not agent_cls and not replace:
                raise ImproperlyDeclaredAgent(f"An agent is already registered under {path!r}: {current!r}.")
            self._agents[path] = agent_cls
        return agent_cls

    def unregister(self, path: str) -> None:
        with self._lock:
            self._agents.pop(path, None)

    def get(self, path: str) -> type[ConversationAgent]:
        """The class registered under ``path``; ``path`` may also be the class's import path."""
        if not isinstance(path, str) or not path:
            raise AgentNotFound(
                f"agent_path must be the non-empty path of a registered agent (a str such as 'support'), not {path!r}.",
                field="agent_path",
            )
        agent = self._agents.get(path)
        if agent is not None:
            return agent
        for cls in self._agents.values():
            if f"{cls.__module__}.{cls.__qualname__}" == path:
                return cls
        known = ", ".join(sorted(self._agents)) or "none registered"
        raise AgentNotFound(
            f"No agent is registered under {path[:200]!r} (registered: {known}). Register it with "
            "register_agent(path, AgentClass) in your app's AppConfig.ready() or DJANGO_AI['AGENTS'].",
            field="agent_path",
        )

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and path in self._agents

    def paths(self) -> list[str]:
        return sorted(self._agents)

    def items(self) -> list[tuple[str, type[ConversationAgent]]]:
        return sorted(self._agents.items())

    def describe(self) -> list[dict[str, Any]]:
        """Public description of the agents (for the schema and the demo's agent picker)."""
        return [
            {
                "path": path,
                "name": getattr(cls, "display_name", None) or cls.__name__,
                "description": (cls.__doc__ or "").strip().split("\n")[0],
                # JSON Schema of the start parameters a client may send (None: none).
                "start_params": cls.StartParams.model_json_schema() if cls.StartParams is not None else None,
            }
            for path, cls in self.items()
        ]

    def load_from_settings(self) -> None:
        agents = ai_settings.AGENTS or {}
        if not isinstance(agents, dict):
            raise ImproperlyConfigured(
                f"DJANGO_AI['AGENTS'] must be a dict of agent path -> dotted class path, not {type(agents).__name__}: "
                "e.g. DJANGO_AI = {'AGENTS': {'support': 'myapp.chat_agents.SupportAgent'}}."
            )
        for path, dotted in agents.items():
            try:
                self.register(path, dotted)
            except ImproperlyDeclaredAgent as exc:
                # At start-up (AppConfig.ready()): name the setting to fix, not just the class.
                raise ImproperlyConfigured(
                    f"DJANGO_AI['AGENTS'][{path!r}] = {dotted!r}: {exc.message} Fix the entry in settings.DJANGO_AI, "
                    "or remove it and call register_agent() in your AppConfig.ready()."
                ) from exc

    @staticmethod
    def _resolve(agent: type[ConversationAgent] | str) -> type[ConversationAgent]:
        if isinstance(agent, str):
            try:
                agent = import_string(agent)
            except ImportError as exc:
                raise ImproperlyDeclaredAgent(f"Could not import agent {agent!r}: {exc}") from exc
        if not (isinstance(agent, type) and issubclass(agent, ConversationAgent)):
            raise ImproperlyDeclaredAgent(
                f"{agent!r} is not a ConversationAgent subclass: declare it as "
                "'class MyAgent(ConversationAgent): ...' (from django_ai.conversations import ConversationAgent)."
            )
        return agent


registry = AgentRegistry()


def register_agent(path: str, agent: type[ConversationAgent] | str) -> type[ConversationAgent]:
    """Register an agent class (or its dotted path) under ``path``, e.g. ``register_agent("support", SupportAgent)``."""
    return registry.register(path, agent)


def get_agent(path: str) -> type[ConversationAgent]:
    return registry.get(path)
