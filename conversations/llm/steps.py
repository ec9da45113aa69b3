"""Running a round of the model's tool calls as tool steps: validated, approved or held for
approval, run in parallel with a timeout, recorded as rows and announced with the three
``tool_call_*`` events (docs/tools.md, "Tool steps").

Decisions recorded here:

- Nothing a tool does fails the turn. A tool that raises, times out, or is called with bad
  arguments gives a failed step and an error the model reads (``{"error": {"code", "message"}}``),
  so it can retry or explain.
- What the model and the user learn of a tool's exception: only the text of a :class:`ToolError`
  (raise it to say something on purpose, "No order 42"). Any other exception is logged with its
  traceback, and both read "The tool failed." An exception's text can hold what neither should
  see (SQL, paths, keys, injected Context values).
- Injected Context values never reach a row, an event or a log line of the loop's: steps record
  the visible arguments as the model sent them, and the log names the tool, not its arguments.
  (A tool's own exception goes to the log with its text: word yours accordingly.)
- The calls of one round run together: ``async def`` tools on the agent's event loop, plain
  ``def`` tools each in a worker thread (with its own database connection, closed after the
  call). A tool still running when ``tool_timeout`` passes is abandoned: an async one is
  cancelled, a thread cannot be, it finishes in the background and its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType
from typing import Any

import pydantic_core
from django.db import connections
from django.utils import timezone

from .. import telemetry
from ..conf import ai_settings
from ..constants import ApprovalStatus, ErrorCode, EventName, ProcessingStatus
from ..exceptions import NoActiveConversation
from ..realtime import publish
from ..realtime.coalescer import utf16_len
from ..tools.approval import needs_approval
from ..tools.dispatch import PreparedToolCall, prepare_tool_call, tool_span_attributes
from ..tools.errors import ToolCallError
from ..turns.state import TurnState, TurnSuspended, current_turn

logger = logging.getLogger("django_ai.conversations.llm")

__all__ = ["ToolError", "record_refused_calls", "run_approved_steps", "run_tool_calls"]

Tools = Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]]

GENERIC_FAILURE = "The tool failed."


class ToolError(Exception):
    """Raise it in a tool to tell the model (and the user, on the step) what went wrong.

    ``raise ToolError("There is no order 42.")``: the step fails with code ``tool_error`` and
    this message. Any other exception is reported as "The tool failed." (its text is logged only).
    """


def _records() -> ModuleType:
    # Not at the top: records imports the models, and agent modules import this package (through
    # LLMAgent) before Django's app registry is ready.
    from . import records

    return records


def _require_turn() -> TurnState:
    state = current_turn.get()
    if state is None:
        raise NoActiveConversation(
            "run_tool_calls() records tool steps of the reply being written: call it inside an agent's "
            "get_response. Outside a turn use dispatch_tool_call()."
        )
    return state


def new_call_id() -> str:
    """A tool call id for a call the model sent without one."""
    return f"call_{uuid.uuid4().hex[:24]}"


def error_content(code: str, message: str) -> str:
    """The JSON a model reads for a failed or refused call."""
    return json.dumps({"error": {"code": code, "message": message}})


@dataclass
class _Step:
    call_id: str
    name: str
    arguments: dict[str, Any]
    round: int
    index: int
    prepared: PreparedToolCall | None = None
    waits: bool = False
    status: str = ProcessingStatus.PROCESSING
    error: dict[str, str] | None = None
    content: str = ""
    result: Any = None
    duration_ms: int | None = None
    approval: dict[str, Any] | None = None
    text_offset: int = 0
    row: Any = None

    def fail(self, code: str, message: str, *, for_model: str | None = None) -> None:
        self.status = ProcessingStatus.FAILED
        self.error = {"code": code, "message": message}
        self.content = error_content(code, for_model or message)

    @property
    def data(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
            "round": self.round,
            "index": self.index,
            "text_offset": self.text_offset,
            "result": self.result,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "approval": self.approval,
        }

    def message(self) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": self.call_id, "content": self.content}


def _read(call: Any) -> tuple[str | None, str, Any]:
    """The id, name and raw arguments of a tool call (a dict from ToolCallCollector, or an object)."""
    if isinstance(call, Mapping):
        function = call.get("function") or {}
        get = function.get if isinstance(function, Mapping) else (lambda k: getattr(function, k, None))
        return call.get("id"), get("name") or "", get("arguments")
    function = getattr(call, "function", None)
    return getattr(call, "id", None), getattr(function, "name", None) or "", getattr(function, "arguments", None)


def _as_sent(arguments: Any) -> dict[str, Any]:
    """The arguments the model sent, as an object for the step (``{}`` when they are not one)."""
    if isinstance(arguments, (str, bytes, bytearray)):
        try:
            arguments = json.loads(arguments or "{}")
        except ValueError:
            return {}
    return dict(arguments) if isinstance(arguments, Mapping) else {}


def _plan(agent: Any, tools: Tools, call: Any, round: int, index: int) -> _Step:
    call_id, name, raw = _read(call)
    step = _Step(call_id=call_id or new_call_id(), name=name, arguments=_as_sent(raw), round=round, index=index)
    try:
        step.prepared = prepare_tool_call(tools, call, call_id=step.call_id)
    except ToolCallError as exc:
        step.fail(exc.code, exc.message)
        step.content = exc.as_message()["content"]
        return step
    step.arguments = step.prepared.raw_arguments
    try:
        step.waits = needs_approval(step.prepared.func, agent, step.prepared.arguments)
    except Exception:
        logger.exception("The approval rule of tool %s failed; the call is reported to the model as failed", name)
        step.fail(ErrorCode.TOOL_ERROR, GENERIC_FAILURE)
        return step
    if step.waits:
        step.status = ProcessingStatus.AWAITING_APPROVAL
        expires = timezone.now() + timedelta(seconds=float(ai_settings.APPROVAL_TIMEOUT))
        step.approval = {
            "status": ApprovalStatus.PENDING.value,
            "reason": "",
            "answered_by": None,
            "answered_at": None,
            "expires_at": expires.isoformat(),
        }
    return step


def _publish_arguments(state: TurnState, step: _Step) -> None:
    optional: dict[str, Any] = {"approval": step.approval} if step.approval is not None else {}
    publish(
        EventName.TOOL_CALL_ARGUMENTS,
        session_id=state.session.pk,
        message_id=step.row.pk,
        reply_to=state.user_message.pk,
        call_id=step.call_id,
        name=step.name,
        arguments=step.arguments,
        status=str(step.status),
        round=step.round,
        index=step.index,
        text_offset=step.text_offset,
        **optional,
    )


def _publish_result(state: TurnState, step: _Step) -> None:
    optional: dict[str, Any] = {}
    if step.status == ProcessingStatus.COMPLETED:
        optional["result"] = step.result
    if step.error is not None:
        optional["error"] = step.error
    if step.duration_ms is not None:
        optional["duration_ms"] = step.duration_ms
    if step.approval is not None:
        optional["approval"] = step.approval
    publish(
        EventName.TOOL_CALL_RESULT,
        session_id=state.session.pk,
        message_id=step.row.pk,
        reply_to=state.user_message.pk,
        call_id=step.call_id,
        name=step.name,
        status=str(step.status),
        **optional,
    )


def _create_rows(state: TurnState, steps: list[_Step]) -> None:
    offset = utf16_len(state.stream_text)
    for step in steps:
        step.text_offset = offset
    specs = [
        {
            "name": s.name,
            "status": s.status,
            "content": s.content,
            "data": s.data,
            "finished": s.status == ProcessingStatus.FAILED,
        }
        for s in steps
    ]
    records = _records()
    rows = state.call_db(lambda: records.create_steps(state.session, state.user_message, specs))
    for step, row in zip(steps, rows, strict=True):
        step.row = row
        _publish_arguments(state, step)
        if step.status == ProcessingStatus.FAILED:
            _publish_result(state, step)


def _save(state: TurnState, step: _Step, *, finished: bool = True) -> None:
    records = _records()
    row, status, content, data = step.row, str(step.status), step.content, step.data
    state.call_db(lambda: records.save_step(row, status=status, content=content, data=data, finished=finished))
    if finished:
        _publish_result(state, step)


def _in_thread(prepared: PreparedToolCall) -> asyncio.Future[Any]:
    """Run a sync tool in a thread of its own; the future is resolved on the agent's loop.

    Not the loop's default executor: ``asyncio.run`` waits for that one's threads when the agent
    returns, so a tool abandoned at its timeout would hold the turn until it finished.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()  # the turn (current_turn) reaches display_widget & co. there

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return  # timed out or cancelled meanwhile
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = context.run(prepared.call)
        except BaseException as exc:  # noqa: BLE001 - handed to the loop
            error = exc
        finally:
            connections.close_all()  # the tool's own database connections, if it used the ORM
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for this result
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name=f"django-ai-tool-{prepared.name}", daemon=True).start()
    return future


async def _run(step: _Step, tool_timeout: float | None) -> None:
    prepared = step.prepared
    assert prepared is not None
    # The span of the call (its arguments only with TELEMETRY_TOOL_ARGUMENTS: the model's, as
    # sent); a failure is marked with its code and the exception's type, never a text or result.
    attributes = {**tool_span_attributes(prepared), "django_ai.tool.round": step.round}
    with telemetry.span(f"execute_tool {step.name}", attributes) as span:
        failure = await _run_step(step, prepared, tool_timeout)
        if failure is not None and step.error is not None:
            span.error(failure, code=step.error["code"])
        span.set(**{"django_ai.tool.status": str(step.status)})


async def _run_step(step: _Step, prepared: PreparedToolCall, tool_timeout: float | None) -> BaseException | None:
    """Run the call and fill in ``step``; the exception that failed it, if one did."""
    started = time.monotonic()
    failure: BaseException | None = None
    limit = asyncio.timeout(tool_timeout)  # None: no limit
    try:
        async with limit:
            if prepared.is_async:
                value = await prepared.call()
            else:
                value = await _in_thread(prepared)
    except TimeoutError as exc:
        failure = exc
        if limit.expired():
            step.fail(ErrorCode.TOOL_TIMEOUT, f"The tool did not finish within {tool_timeout or 0:g} seconds.")
        else:  # raised by the tool itself
            logger.exception("Tool %s failed (call %s); the model is told it failed", step.name, step.call_id)
            step.fail(ErrorCode.TOOL_ERROR, GENERIC_FAILURE)
    except ToolError as exc:
        failure = exc
        step.fail(ErrorCode.TOOL_ERROR, str(exc) or GENERIC_FAILURE)
    except Exception as exc:
        failure = exc
        logger.exception("Tool %s failed (call %s); the model is told it failed", step.name, step.call_id)
        step.fail(ErrorCode.TOOL_ERROR, GENERIC_FAILURE)
    else:
        try:
            safe = _records().text_safe  # no NUL: PostgreSQL cannot store it, in the row nor in jsonb
            step.result = safe(pydantic_core.to_jsonable_python(value))
            step.content = safe(value) if isinstance(value, str) else json.dumps(step.result)
        except (pydantic_core.PydanticSerializationError, TypeError, ValueError) as exc:
            failure = exc
            logger.error("Tool %s returned %s, which cannot be sent as JSON", step.name, type(value).__name__)
            step.result = None
            step.fail(ErrorCode.TOOL_ERROR, "The tool returned a value that cannot be sent to the model as JSON.")
        else:
            step.status = ProcessingStatus.COMPLETED
    step.duration_ms = int((time.monotonic() - started) * 1000)
    return failure


async def _run_all(state: TurnState, steps: list[_Step], tool_timeout: float | None) -> None:
    """Run ``steps`` together; each is saved and announced as it ends. Cancel marks the unfinished
    ones ``cancelled`` and goes on up."""
    state.raise_if_cancelled()  # a cancelled turn starts no tool

    async def one(step: _Step) -> None:
        await _run(step, tool_timeout)
        _save(state, step)

    tasks = [asyncio.ensure_future(one(step)) for step in steps]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        for step in steps:
            if step.status == ProcessingStatus.PROCESSING:
                step.status = ProcessingStatus.CANCELLED
                step.error = None
                step.content = error_content(ErrorCode.TOOL_ERROR, "The turn was cancelled before the tool finished.")
                with contextlib.suppress(Exception):  # the turn may be closing: the runner records its end
                    _save(state, step)
        raise


async def run_tool_calls(
    agent: Any,
    tools: Tools,
    calls: Iterable[Any],
    *,
    round: int = 0,
    tool_timeout: float | None = None,
) -> list[dict[str, Any]]:
    """Run one round of the model's tool calls as steps of the reply; return the tool messages.

    ``calls`` are the model's tool calls (``ToolCallCollector.calls``, or the objects of
    ``message.tool_calls``); ``round`` numbers the model's round in this reply. Each call is
    validated, checked for approval (``@requires_approval``), recorded as a ``tool`` row with
    ``tool_call_arguments``, run (all of a round together, each within ``tool_timeout`` seconds) and
    ended with ``tool_call_result``. The returned ``{"role": "tool", ...}`` messages (in call
    order) carry results and errors alike, for the model.

    When some calls wait for the user's approval, the others run first, then this raises
    :class:`~django_ai.conversations.turns.state.TurnSuspended`: let it propagate; the turn is
    suspended and resumes (``run_approved_steps``) once every call is answered.
    """
    state = _require_turn()
    state.raise_if_cancelled()
    steps = [_plan(agent, tools, call, round, index) for index, call in enumerate(calls)]
    if not steps:
        return []
    _create_rows(state, steps)
    runnable = [s for s in steps if s.status == ProcessingStatus.PROCESSING]
    if runnable:
        await _run_all(state, runnable, tool_timeout)
    waiting = [s for s in steps if s.status == ProcessingStatus.AWAITING_APPROVAL]
    if waiting:
        raise TurnSuspended(f"{len(waiting)} tool call(s) wait for approval", step_ids=[s.row.pk for s in waiting])
    return [s.message() for s in steps]


async def run_approved_steps(agent: Any, tools: Tools, *, tool_timeout: float | None = None) -> int:
    """On a resumed turn: run the reply's approved steps (status ``pending``) with the current
    Context, record and announce them; return the number of the next round.

    Rejected and expired steps are already answered (their ``content`` is the refusal the model
    reads). Call it before building the model's messages with ``self.history()``.
    """
    state = _require_turn()
    records = _records()
    rows = state.call_db(lambda: records.reply_steps(state.user_message.pk))
    next_round = 0
    steps: list[_Step] = []
    for row in rows:
        data = dict(row.component_data or {})
        number = data.get("round")
        if isinstance(number, int) and not isinstance(number, bool):
            next_round = max(next_round, number + 1)
        if row.processing_status not in records.RUNNABLE:
            continue
        step = _Step(
            call_id=str(data.get("call_id") or new_call_id()),
            name=str(data.get("name") or row.component_type),
            arguments=_as_sent(data.get("arguments")),
            round=number if isinstance(number, int) else 0,
            index=records.int_or_zero(data.get("index")),
            approval=data.get("approval"),
            text_offset=records.int_or_zero(data.get("text_offset")),
            row=row,
        )
        try:
            step.prepared = prepare_tool_call(tools, step.name, step.arguments, call_id=step.call_id)
        except ToolCallError as exc:
            step.fail(exc.code, exc.message)
            step.content = exc.as_message()["content"]
            _save(state, step)
            continue
        steps.append(step)
    if steps:
        state.raise_if_cancelled()
        for step in steps:
            _save(state, step, finished=False)  # processing: it runs now
        await _run_all(state, steps, tool_timeout)
    return next_round


async def record_refused_calls(
    agent: Any, calls: Iterable[Any], *, round: int, code: str, message: str
) -> list[dict[str, Any]]:
    """Record calls the loop will not run (``tool_rounds_exceeded``) as failed steps, announced like
    others, so the reply shows them and the history answers every call the model made."""
    state = _require_turn()
    steps = []
    for index, call in enumerate(calls):
        call_id, name, raw = _read(call)
        step = _Step(call_id=call_id or new_call_id(), name=name, arguments=_as_sent(raw), round=round, index=index)
        step.fail(code, message)
        steps.append(step)
    if steps:
        _create_rows(state, steps)
    return [s.message() for s in steps]
