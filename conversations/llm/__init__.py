"""LLM agents as a declaration: conversation history for the model, the tool loop, tool steps
persisted as parts of the reply, approval before a tool runs (docs/tools.md).

- :class:`LLMAgent`: declare ``model``, ``system_prompt``, ``tools`` and limits; the loop runs.
- The public pieces it is built from, for a hand-written loop: ``self.history()`` (on every
  agent), :func:`~django_ai.conversations.tools.tool_schemas`, :func:`stream_completion`,
  :func:`run_tool_calls`, :func:`run_approved_steps`.

Importing this package loads no model: agent modules may import it before Django's app registry
is ready.
"""

from .agent import LLMAgent
from .loop import CompletionResult, completion_function, stream_completion
from .steps import ToolError, record_refused_calls, run_approved_steps, run_tool_calls

__all__ = [
    "CompletionResult",
    "LLMAgent",
    "ToolError",
    "completion_function",
    "record_refused_calls",
    "run_approved_steps",
    "run_tool_calls",
    "stream_completion",
]
