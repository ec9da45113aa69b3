"""The agent base class."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .constants import ConcurrencyPolicy
from .exceptions import ContextValidationError, ImproperlyDeclaredAgent
from .internal.jsonsafe import json_problem

if TYPE_CHECKING:
    from django.http import HttpRequest

    from .models import ConversationMessage, ConversationSession, File

__all__ = ["ConversationAgent", "EmptyContext"]


class EmptyContext(BaseModel):
    """The Context of agents that declare none: keeps whatever keys it is given."""

    model_config = ConfigDict(extra="allow")


class ConversationAgent:
    """Base class of chat agents.

    Override ``get_response`` (``async def`` or ``def``) to answer a message, declare an inner
    pydantic ``Context`` for typed per-conversation state, and override ``create_context`` to build
    it when a conversation starts. Inside ``get_response``:

    - ``self.context`` is the Context instance; changes are saved when the turn succeeds;
    - ``self.session`` is the :class:`ConversationSession`;
    - ``self.request`` is the request of the turn when there is one (None in workers);
    - ``self.files`` lists the :class:`File` rows attached to the message;
    - ``self.message`` is the user's :class:`ConversationMessage`;
    - ``self.cancelled`` turns True when someone asked to stop the turn.

    ``StartParams`` (a pydantic model, None by default) declares the start parameters a *client*
    may send (``start/``'s ``context``); anything else a client sends is refused, because the
    Context often holds values the agent trusts (the user id, the plan). Python callers
    (``start_conversation(context_kwargs=...)``) are trusted and may pass any keyword.

    Class attributes: ``concurrency`` (``"enqueue"``, ``"reject"`` or ``"interrupt"``) says what
    happens to a message sent while a turn runs; ``turn_timeout`` (seconds) overrides the setting;
    ``file_wait_timeout`` (seconds) overrides ``FILE_WAIT_TIMEOUT``, how long the turn waits for the
    text of attached files still being extracted before ``get_response`` runs (0: do not wait).
    """

    Context: ClassVar[type[BaseModel]] = EmptyContext
    #: The start parameters a client may send, as a pydantic model; None: clients send none.
    StartParams: ClassVar[type[BaseModel] | None] = None
    concurrency: ClassVar[str | None] = None
    turn_timeout: ClassVar[float | None] = None
    file_wait_timeout: ClassVar[float | None] = None
    #: Set by registration: whether get_response is a coroutine function.
    is_async: ClassVar[bool] = False

    def __init__(
        self,
        *,
        context: BaseModel | None = None,
        session: ConversationSession | None = None,
        request: HttpRequest | None = None,
        files: list[File] | None = None,
        message: ConversationMessage | None = None,
    ):
        self.context = context if context is not None else self.build_empty_context()
        self.session = session
        self.request = request
        self.files = list(files or [])
        self.message = message
        self._cancel_check: Any = None

    @classmethod
    def create_context(cls, request: HttpRequest | None = None, **kwargs: Any) -> BaseModel:
        """Build the Context when a conversation starts.

        The default validates ``kwargs`` against ``Context``; override it to read the request
        (the user, their plan, the page they came from).
        """
        return cls.Context(**kwargs)

    @classmethod
    def validate_start_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Check the start parameters a client sent (``start/``'s ``context``) against
        ``StartParams`` and return the keyword arguments for ``create_context``: only the keys the
        client sent, validated and coerced.

        Raises ContextValidationError naming the field: ``start_param_not_allowed`` for a key
        ``StartParams`` does not declare (every key, when it is None), ``invalid_context`` for a
        value that does not validate. Override it for rules a model cannot say.
        """
        declared = cls.StartParams
        if not params:
            return {}
        allowed: set[str] = set()
        if declared is not None:
            for name, field in declared.model_fields.items():
                allowed.add(name)
                if field.alias:
                    allowed.add(field.alias)
        extra_allowed = declared is not None and declared.model_config.get("extra") == "allow"
        refused = [key for key in params if key not in allowed and not extra_allowed]
        if refused:
            accepted = ", ".join(sorted(declared.model_fields)) if declared is not None else ""
            message = (
                f"{cls.__name__} accepts only these start parameters from clients: {accepted}."
                if accepted
                else f"{cls.__name__} accepts no start parameters from clients (it declares no StartParams)."
            )
            raise ContextValidationError(
                f"Start parameter {str(refused[0])[:64]!r} is not allowed. {message}",
                code="start_param_not_allowed",
                field=f"context.{str(refused[0])[:64]}",
                errors=[
                    {
                        "field": f"context.{str(key)[:64]}",
                        "message": f"Start parameter {str(key)[:64]!r} is not allowed. {message}",
                    }
                    for key in refused
                ],
            )
        assert declared is not None  # every key was refused otherwise
        try:
            validated = declared.model_validate(params, **_BY_NAME_AND_ALIAS)
        except ValidationError as exc:
            raise ContextValidationError(
                f"The start parameters do not fit {cls.__name__}.StartParams: {_format_errors(exc)}",
                errors=[{**e, "field": f"context.{e['field']}" if e["field"] else "context"} for e in _errors(exc)],
            ) from exc
        return validated.model_dump(exclude_unset=True)

    async def get_response(self, message: str, request: HttpRequest | None = None, **kwargs: Any) -> str:
        """Answer ``message``: return the text, or stream it with ResponseStream and return it."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement get_response(self, message, request=None, **kwargs)."
        )

    def history(
        self,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        include_files: bool = False,
        include_failed: bool = False,
    ) -> list[dict[str, Any]]:
        """The conversation so far, for a model: OpenAI / litellm chat messages, oldest first,
        ending with the message being answered (``self.message``) and, when the turn resumes after
        an approval, the reply's text and tool steps so far.

        Earlier replies come with their tool calls and results; system notices and widgets are left
        out, and so are failed or cancelled turns unless ``include_failed``. ``include_files``
        adds the extracted text of attached files to their message. ``max_messages`` and
        ``max_tokens`` (an estimate: characters / 4) drop whole turns, oldest first; the current
        one is always kept. The system prompt is yours to put first. One database query (two with
        ``include_files``); inside a turn it runs on the turn's thread, so sync and async agents
        call it alike. Outside a turn (tests) build the agent with ``session=`` and ``message=``
        and call it from sync code.
        """
        # Not at the top: history.py reads the models, and agent modules import this one before
        # Django's app registry is ready.
        from .history import agent_history

        return agent_history(
            self,
            max_messages=max_messages,
            max_tokens=max_tokens,
            include_files=include_files,
            include_failed=include_failed,
        )

    @property
    def cancelled(self) -> bool:
        """True once the turn was cancelled (or timed out); stop working when it is."""
        return bool(self._cancel_check and self._cancel_check())

    @classmethod
    def build_empty_context(cls) -> BaseModel:
        try:
            return cls.Context()
        except ValidationError as exc:
            raise ContextValidationError(
                f"{cls.__name__}.Context has required fields and no context was given: {_format_errors(exc)}",
                errors=_errors(exc),
            ) from exc

    @classmethod
    def validate_context(cls, value: Any) -> BaseModel:
        """Turn a Context instance or a dict into a validated Context.

        Anything else (None, another pydantic model, a str...) raises ContextValidationError:
        converting another model would silently drop the fields the two do not share. Dicts are
        read by field name or by alias, so a Context whose fields have aliases (``Field(alias=
        "userId")``) round-trips through the JSON stored on the session, which uses field names.
        """
        if isinstance(value, cls.Context):
            # Re-validated (pydantic does not validate attribute assignment by default).
            value = value.model_dump(warnings=False)
        elif not isinstance(value, dict):
            raise ContextValidationError(
                f"The context of {cls.__name__} must be a {cls.Context.__name__} instance or a dict, "
                f"not {type(value).__name__}.",
                field="context",
            )
        try:
            return cls.Context.model_validate(value, **_BY_NAME_AND_ALIAS)
        except ValidationError as exc:
            raise ContextValidationError(
                f"The context does not fit {cls.__name__}.Context: {_format_errors(exc)}",
                errors=_errors(exc),
            ) from exc

    @classmethod
    def dump_context(cls, value: Any) -> dict[str, Any]:
        """Validate ``value`` (a Context or a dict) and return the JSON stored on the session.

        Raises ContextValidationError when it does not fit ``Context`` or cannot be stored (values
        JSON cannot encode, NUL characters).
        """
        context = cls.validate_context(value)
        try:
            data = context.model_dump(mode="json")
        except (TypeError, ValueError) as exc:  # pydantic's serialisation error is a ValueError
            raise ContextValidationError(
                f"The context of {cls.__name__} cannot be stored as JSON: {exc}", field="context"
            ) from exc
        problem = json_problem(data)
        if problem:
            raise ContextValidationError(f"The context of {cls.__name__} cannot be stored: {problem}.", field="context")
        return data

    @classmethod
    def check_declaration(cls) -> None:
        """Raise ImproperlyDeclaredAgent naming the fix when the class is declared wrongly."""
        name = cls.__name__
        if not (isinstance(cls.Context, type) and issubclass(cls.Context, BaseModel)):
            raise ImproperlyDeclaredAgent(
                f"{name}.Context must be a pydantic BaseModel subclass "
                f"(class Context(BaseModel): ...), not {cls.Context!r}."
            )
        params = cls.StartParams
        if params is not None and not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise ImproperlyDeclaredAgent(
                f"{name}.StartParams must be a pydantic BaseModel subclass listing the start parameters "
                f"clients may send (class StartParams(BaseModel): tier: str = 'basic'), or None; not {params!r}."
            )
        method = cls.__dict__.get("get_response") or cls.get_response
        if method is ConversationAgent.get_response:
            raise ImproperlyDeclaredAgent(
                f"{name} does not define get_response. Add "
                f"'async def get_response(self, message, request=None, **kwargs):' returning the reply text."
            )
        if isinstance(inspect.getattr_static(cls, "get_response"), (staticmethod, classmethod)):
            raise ImproperlyDeclaredAgent(
                f"{name}.get_response must be a plain method "
                "(def get_response(self, message, request=None, **kwargs)), not a staticmethod or classmethod."
            )
        try:
            sig = inspect.signature(method)
            sig.bind(None, "message", request=None)
        except (TypeError, ValueError) as exc:
            raise ImproperlyDeclaredAgent(
                f"{name}.get_response must accept (self, message, request=None, **kwargs); "
                f"its signature is {sig if 'sig' in locals() else '?'} ({exc})."
            ) from exc
        if inspect.isasyncgenfunction(method):
            raise ImproperlyDeclaredAgent(
                f"{name}.get_response is an async generator. Use ResponseStream inside an "
                "'async def get_response' and return the text instead of yielding it."
            )
        create = inspect.getattr_static(cls, "create_context")
        if not isinstance(create, classmethod):
            raise ImproperlyDeclaredAgent(
                f"{name}.create_context must be a classmethod: add @classmethod above "
                "'def create_context(cls, request=None, **kwargs)'."
            )
        try:
            create_sig = inspect.signature(cls.create_context)
            create_sig.bind(request=None)
        except (TypeError, ValueError) as exc:
            raise ImproperlyDeclaredAgent(
                f"{name}.create_context must accept (cls, request=None, **kwargs) ({exc})."
            ) from exc
        policy = cls.concurrency
        if policy is not None and policy not in set(ConcurrencyPolicy):
            raise ImproperlyDeclaredAgent(
                f"{name}.concurrency is {policy!r}; use one of {', '.join(repr(str(p)) for p in ConcurrencyPolicy)}."
            )
        cls.is_async = inspect.iscoroutinefunction(method)


#: pydantic 2.11+ validates by field name and by alias when asked; older ones only by alias (or
#: by name too with ``populate_by_name=True`` in the Context's model_config).
_BY_NAME_AND_ALIAS: dict[str, Any] = (
    {"by_alias": True, "by_name": True} if "by_name" in inspect.signature(BaseModel.model_validate).parameters else {}
)


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False)
    ]


def _format_errors(exc: ValidationError) -> str:
    return "; ".join(f"{e['field'] or '(root)'}: {e['message']}" for e in _errors(exc))
