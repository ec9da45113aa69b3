"""LLM agents as a declaration: conversation history for the model, the tool loop, tool steps
persisted as parts of the reply, approval before a tool runs (docs/tools.md)."""
