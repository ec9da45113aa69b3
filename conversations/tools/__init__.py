"""Tool schemas for LLM function calling, and dispatch of the model's tool calls.

::

    tools = [self.check_eligibility, self.search_products]
    response = litellm.completion(model=..., messages=messages, tools=tool_schemas(tools))
    for call in response.choices[0].message.tool_calls or []:
        try:
            done = dispatch_tool_call(tools, call)
        except ToolCallError as exc:
            messages.append(exc.as_message())  # tell the model what was wrong; it may retry
        else:
            messages.append(done.as_message())

The schema is built from what a caller sees: for ``@with_context()`` methods the injected
parameters are not in it, and a model that sends them anyway gets ``invalid_tool_arguments``.
Parameter types come from the annotations (``Optional``, ``list[str]``, ``Literal``, pydantic
models, ``Annotated[..., Field(description=...)]``), the description from the docstring's first
paragraph, and parameter descriptions from its "Args:" (Google), NumPy or Sphinx entries.
Arguments are validated with pydantic before the tool runs, so the tool receives typed values


The package: :mod:`.schema` (tool definitions), :mod:`.dispatch` (running a call), :mod:`.calls`
(results, streamed calls), :mod:`.errors`.
"""

from __future__ import annotations

from .approval import approval_rule, needs_approval, requires_approval
from .calls import ToolCall, ToolCallCollector
from .dispatch import PreparedToolCall, adispatch_tool_call, dispatch_tool_call, prepare_tool_call
from .errors import ToolCallError, ToolDefinitionError
from .schema import _build_spec, tool_schema, tool_schemas  # noqa: F401  (_build_spec: timed by tests/bench/bench_tools.py)

__all__ = [
    "PreparedToolCall",
    "ToolCall",
    "ToolCallCollector",
    "ToolCallError",
    "ToolDefinitionError",
    "adispatch_tool_call",
    "approval_rule",
    "dispatch_tool_call",
    "needs_approval",
    "prepare_tool_call",
    "requires_approval",
    "tool_schema",
    "tool_schemas",
]
