"""Register agents for one test and put the registry back afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..registry import AgentRegistry, registry

__all__ = ["isolated_registry"]


@contextmanager
def isolated_registry(
    agents: dict[str, Any] | None = None, *, target: AgentRegistry | None = None
) -> Iterator[AgentRegistry]:
    """Inside the block, agents registered (here or with ``register_agent``) are forgotten when it
    ends, and agents replaced under an existing path come back.

    ``with isolated_registry({"support": SupportAgent}):`` registers ``SupportAgent`` for the block.
    Use it (or a fixture built on it) so tests that register agents do not leak them into others.
    """
    reg = target or registry
    with reg._lock:
        saved = dict(reg._agents)
    try:
        for path, agent in (agents or {}).items():
            reg.register(path, agent)
        yield reg
    finally:
        with reg._lock:
            reg._agents.clear()
            reg._agents.update(saved)
