"""``LLMAgent``: an agent declared by its model, system prompt, tools and limits; the framework
runs the tool loop (docs/tools.md, "The declared tool loop")."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ..agent import ConversationAgent
from ..constants import ErrorCode
from ..context import ResponseStream
from ..exceptions import ImproperlyDeclaredAgent
from ..tools.schema import tool_schemas
from ..turns.state import current_turn
from .loop import stream_completion
from .steps import record_refused_calls, run_approved_steps, run_tool_calls

if TYPE_CHECKING:
    from django.http import HttpRequest

__all__ = ["LLMAgent"]


class LLMAgent(ConversationAgent):
    """An agent whose reply comes from a language model that may call tools.

    ::

        class SalesAgent(LLMAgent):
            model = "gpt-4o-mini"                 # a litellm model name, or FakeModel(...) in tests
            system_prompt = "You are the sales assistant."   # or def system_prompt(self) -> str
            tools = ["search_products", "check_eligibility"]  # method names (or the functions)
            max_tool_rounds = 4
            tool_timeout = 30.0

    ``get_response`` sends the system prompt and ``self.history(...)`` to the model, streams its
    text to the reply, runs the tools it calls (``run_tool_calls``: validated, in parallel, each
    a step of the reply, approval where a tool asks for it) and calls the model again with the
    results, until it answers without tools. Override the ``get_*`` steps to change one part;
    write your own ``get_response`` from the same public pieces for anything else.

    Limits: after ``max_tool_rounds`` rounds of tool calls, calls the model still makes are not
    run (failed steps, code ``tool_rounds_exceeded``) and the reply ends with
    ``rounds_exceeded_text``; the model is not called again. ``tool_timeout`` (seconds, None for
    none) bounds each call.
    """

    #: A litellm model name, an object with ``acompletion`` (``FakeModel``) or an async completion
    #: function; see ``get_model``.
    model: ClassVar[Any] = None
    #: The system prompt: a str, or a method ``def system_prompt(self) -> str`` (may read the Context).
    system_prompt: ClassVar[Any] = ""
    #: The tools: method names, or functions (a method of the class is bound to the agent).
    tools: ClassVar[list[Any]] = []
    max_tool_rounds: ClassVar[int] = 4
    tool_timeout: ClassVar[float | None] = 30.0
    #: Bounds of ``self.history()`` for the model's messages (None: no bound).
    history_messages: ClassVar[int | None] = 50
    history_tokens: ClassVar[int | None] = 8000
    #: Whether attached files' extracted text is sent with their message.
    history_files: ClassVar[bool] = True
    #: More arguments of every model call (``temperature``, ``stream_options``...).
    completion_kwargs: ClassVar[dict[str, Any]] = {}
    #: The end of a reply whose model kept calling tools past ``max_tool_rounds``.
    rounds_exceeded_text: ClassVar[str] = "I could not finish this answer: it needed more tool calls than I may make."

    def get_model(self) -> Any:
        """The model of this reply (default: ``model``). Override to choose per Context or setting."""
        # As declared: a completion function in the class body is not to be bound as a method.
        model = inspect.getattr_static(self, "model", None)
        return model.__func__ if isinstance(model, staticmethod) else model

    def get_system_prompt(self) -> str:
        """The system prompt: ``system_prompt``, called when it is a method."""
        prompt = self.system_prompt
        if callable(prompt):
            prompt = prompt()
        return str(prompt or "")

    def get_tools(self) -> list[Callable[..., Any]]:
        """The tools, bound to this agent: a name is looked up on it, a function of the class bound."""
        found: list[Callable[..., Any]] = []
        for tool in self.tools:
            if isinstance(tool, str):
                found.append(getattr(self, tool))
                continue
            name = getattr(tool, "__name__", None)
            if name and inspect.getattr_static(type(self), name, None) is tool:
                tool = getattr(self, name)
            found.append(tool)
        return found

    def get_messages(self) -> list[dict[str, Any]]:
        """The model's messages: the system prompt, then ``self.history(...)`` with the declared bounds."""
        prompt = self.get_system_prompt()
        system = [{"role": "system", "content": prompt}] if prompt else []
        history = self.history(
            max_messages=self.history_messages,
            max_tokens=self.history_tokens,
            include_files=self.history_files,
        )
        return system + history

    def get_completion_kwargs(self) -> dict[str, Any]:
        """More arguments of every model call (default: a copy of ``completion_kwargs``)."""
        return dict(self.completion_kwargs)

    async def get_response(self, message: str, request: HttpRequest | None = None, **kwargs: Any) -> str:
        """The tool loop (see the class docstring); returns the reply's whole text. Override the
        ``get_*`` steps to change a part, or this method for a loop of your own (docs/tools.md)."""
        state = current_turn.get()
        tools = self.get_tools()
        schemas = tool_schemas(tools) if tools else None
        model = self.get_model()
        stream = ResponseStream()
        round = 0
        try:
            if state is not None and state.resumed:
                round = await run_approved_steps(self, tools, tool_timeout=self.tool_timeout)
            messages = self.get_messages()
            while True:
                result = await stream_completion(
                    model, messages, tools=schemas, stream=stream, round=round, **self.get_completion_kwargs()
                )
                if not result.tool_calls:
                    break
                if round >= self.max_tool_rounds:
                    await record_refused_calls(
                        self,
                        result.tool_calls,
                        round=round,
                        code=ErrorCode.TOOL_ROUNDS_EXCEEDED,
                        message=f"More than {self.max_tool_rounds} rounds of tool calls: this call was not run.",
                    )
                    written = state.stream_text if state is not None else stream.content
                    stream.write(("\n\n" if written else "") + self.rounds_exceeded_text)
                    break
                messages.append(result.as_message())
                answers = await run_tool_calls(
                    self, tools, result.tool_calls, round=round, tool_timeout=self.tool_timeout
                )
                messages.extend(answers)
                round += 1
        finally:
            stream.end()
        return state.stream_text if state is not None else stream.content

    @classmethod
    def check_declaration(cls) -> None:
        super().check_declaration()
        name = cls.__name__
        if cls.model is None and cls.get_model is LLMAgent.get_model:
            raise ImproperlyDeclaredAgent(
                f"{name} declares no model: set model = 'gpt-4o-mini' (any litellm model name) or "
                "model = FakeModel(...), or override get_model()."
            )
        if not isinstance(cls.tools, (list, tuple)):
            raise ImproperlyDeclaredAgent(
                f"{name}.tools must be a list of method names or functions, not {cls.tools!r}."
            )
        for tool in cls.tools:
            if isinstance(tool, str):
                if not callable(getattr(cls, tool, None)):
                    raise ImproperlyDeclaredAgent(f"{name}.tools names {tool!r}, which is not a method of {name}.")
            elif not callable(tool):
                raise ImproperlyDeclaredAgent(f"{name}.tools holds {tool!r}, which is neither a name nor a function.")
        rounds = cls.max_tool_rounds
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise ImproperlyDeclaredAgent(f"{name}.max_tool_rounds must be an int >= 0, not {rounds!r}.")
        timeout = cls.tool_timeout
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ImproperlyDeclaredAgent(
                f"{name}.tool_timeout must be a number of seconds > 0, or None; not {timeout!r}."
            )
