"""Helpers for agent code: stream a reply, show widgets, read file text.

Every helper works inside an agent's turn (``get_response`` and the code it calls, on any thread
or event loop the turn started) and raises
:class:`~django_ai.conversations.exceptions.NoActiveConversation` elsewhere. ``update_widget`` and
``get_file_text`` reach only rows of the conversation being answered (and, for files, of its owner).
Outside a turn, read and write the models directly.

Agent modules import this one, possibly before Django's app registry is ready (as with
``agent.py``, importing it loads no model): the helpers import the models when they run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Q

from .constants import EventName, ExtractionStatus, MessageType, ProcessingStatus
from .exceptions import FileNotFound, InvalidInput, NoActiveConversation, WidgetNotFound
from .internal.jsonsafe import json_problem
from .realtime import get_backend, publish, publish_text
from .realtime.channels import session_channel
from .realtime.coalescer import utf16_len
from .telemetry.cost import UNKNOWN_MODEL
from .turns.state import TurnState, current_turn

logger = logging.getLogger("django_ai.conversations.realtime")

__all__ = [
    "ResponseStream",
    "current_session",
    "current_text_offset",
    "display_widget",
    "get_file_text",
    "report_usage",
    "update_widget",
    "wait_for_file_text",
]


def _require_turn(what: str) -> TurnState:
    state = current_turn.get()
    if state is None:
        raise NoActiveConversation(
            f"{what} can only be used while an agent answers a message (inside get_response). "
            "Use it from your agent's get_response, or from code that get_response calls."
        )
    return state


def current_session() -> Any:
    """The ConversationSession of the turn being answered."""
    return _require_turn("current_session()").session


class ResponseStream:
    """Stream the reply in chunks; each ``write()`` is sent as ``text_chunk`` text.

    ``with ResponseStream() as stream: stream.write("...")``, then ``return stream.content``.
    ``write()`` never waits for the network and builds no event: it appends the text to the
    stream's buffer in the realtime sender, which turns each coalescing window's writes into one
    event (``id``, ``timestamp``, ``offset`` in the streamed text) and splits long text. The agent
    message row exists from the first chunk (status ``streaming``) and its text is saved every
    ``STREAM_SAVE_INTERVAL`` seconds, so a client that joins late reads the row and applies only
    the text past it (docs/protocol.md, "Resuming a stream"). A cancelled or timed-out turn stops
    at the next ``write()``.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._state: TurnState | None = None
        self._ended = False
        # Where the chunks go, their payload's fixed part and the backend's sink for them, set by
        # start(): write() builds none of them.
        self._channel = ""
        self._template: dict[str, str] = {}
        self._sink: Callable[[int, str], None] | None = None

    def __enter__(self) -> ResponseStream:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.end()

    def start(self) -> ResponseStream:
        if self._state is not None:
            return self
        state = _require_turn("ResponseStream")
        state.raise_if_cancelled()
        self._state = state
        already_streaming = state.agent_message is not None
        message = state.ensure_agent_message()
        self._channel = session_channel(state.session.pk)
        self._template = {"session_id": str(state.session.pk), "message_id": str(message.pk)}
        try:
            self._sink = get_backend().text_sink(self._channel, self._template)
        except Exception:  # noqa: BLE001 - the writes go through publish_text, which reports it
            self._sink = None
        if not already_streaming or message.processing_status != ProcessingStatus.STREAMING:
            publish(
                EventName.STREAM_START,
                session_id=state.session.pk,
                message_id=message.pk,
                sequence=state.sequence,
                reply_to=state.user_message.pk,
            )
        return self

    def write(self, text: Any) -> None:
        """Append ``text`` to the reply and send it as a chunk."""
        state = self._state
        if state is None:
            state = self.start()._state
            assert state is not None
        if self._ended:
            raise RuntimeError("This ResponseStream has ended; start a new one to write more.")
        now = time.monotonic()
        # raise_if_cancelled() decides; asked only when one of its reasons may hold (a cancel, a
        # poll to make, the deadline reached), so that a write costs a few microseconds.
        if (
            state.cancel_reason is not None
            or state.poll is not None
            or (state.deadline is not None and now > state.deadline)
        ):
            state.raise_if_cancelled()
        # NUL cannot be stored in PostgreSQL text; it has no place in a chat reply either.
        if type(text) is not str:
            text = "" if text is None else str(text)
        if "\x00" in text:
            text = text.replace("\x00", "\ufffd")
        if not text:
            return
        self._parts.append(text)
        state.streamed.append(text)
        state.sequence += 1
        if state.first_chunk is None:
            state.first_chunk = now
        sink = self._sink
        if sink is None:
            publish_text(self._channel, self._template, state.sequence, text)
        else:
            try:
                sink(state.sequence, text)
            except Exception:  # noqa: BLE001 - e.g. the backend was replaced: publish_text reports failures
                self._sink = None
                publish_text(self._channel, self._template, state.sequence, text)
        state.stream_written(now)

    def end(self) -> None:
        """Finish this stream: save the text so far and send ``stream_end``."""
        if self._ended or self._state is None:
            self._ended = True
            return
        self._ended = True
        state = self._state
        state.stream_ended(time.monotonic())
        publish(
            EventName.STREAM_END,
            session_id=state.session.pk,
            message_id=state.ensure_agent_message().pk,
            sequence=state.sequence,
        )
        try:
            get_backend().flush_channel(self._channel, timeout=0)
        except Exception:
            logger.exception("Flushing realtime events at stream end failed")

    @property
    def content(self) -> str:
        """Everything written to this stream."""
        return "".join(self._parts)

    def __str__(self) -> str:
        return self.content


def display_widget(
    widget_type: str, data: dict[str, Any] | None = None, display_data: dict[str, Any] | None = None
) -> Any:
    """Show a UI component in the conversation; returns the ConversationWidget row.

    Saves a ``widget`` message and a ConversationWidget, and sends a ``widget`` event carrying the
    widget id so clients can reconcile it with the synced rows. The message's ``text_offset`` is
    where the widget sits in the reply's text (UTF-16 units), so clients place it among the reply's
    parts.
    """
    state = _require_turn("display_widget()")
    if not isinstance(widget_type, str) or not widget_type or len(widget_type) > 100:
        raise InvalidInput(
            f"display_widget() needs a widget type: a non-empty string of at most 100 characters, not {widget_type!r}.",
            field="widget_type",
        )
    data = _json_dict(data, "data")
    display_data = _json_dict(display_data, "display_data")
    from .models import ConversationMessage, ConversationWidget  # not at import: see the module docstring

    # Where the widget sits in the reply's text (UTF-16 units, as the SDK counts): parts order.
    text_offset = current_text_offset()

    def create() -> ConversationWidget:
        with transaction.atomic():
            message = ConversationMessage.objects.create(
                session=state.session,
                message_type=MessageType.WIDGET,
                component_type=widget_type,
                component_data=data,
                reply_to=state.user_message,
                text_offset=text_offset,
            )
            return ConversationWidget.objects.create(
                session=state.session,
                message=message,
                widget_type=widget_type,
                data=data,
                display_data=display_data,
            )

    widget = state.call_db(create)
    state.widgets.append(widget)
    publish(
        EventName.WIDGET,
        session_id=state.session.pk,
        widget_id=widget.pk,
        message_id=widget.message_id,
        widget_type=widget_type,
        data=data,
        display_data=display_data,
    )
    return widget


def update_widget(
    widget_id: Any, data: dict[str, Any] | None = None, display_data: dict[str, Any] | None = None
) -> Any:
    """Replace a widget's ``data`` and/or ``display_data``; sends ``widget_update``.

    Only widgets of the conversation being answered can be updated; an unknown id raises
    :class:`~django_ai.conversations.exceptions.WidgetNotFound`.
    """
    from .models import ConversationWidget  # not at import: see the module docstring

    state = _require_turn("update_widget()")
    if data is not None:
        data = _json_dict(data, "data")
    if display_data is not None:
        display_data = _json_dict(display_data, "display_data")

    def save() -> ConversationWidget:
        qs = ConversationWidget.objects.filter(session=state.session)
        try:
            widget = qs.get(pk=getattr(widget_id, "pk", widget_id))
        except (ConversationWidget.DoesNotExist, DjangoValidationError, ValueError, TypeError) as exc:
            raise WidgetNotFound(f"No widget {widget_id!r} in this conversation.", field="widget_id") from exc
        fields = ["updated_at"]
        if data is not None:
            widget.data = data
            fields.append("data")
        if display_data is not None:
            widget.display_data = display_data
            fields.append("display_data")
        widget.save(update_fields=fields)
        return widget

    widget = state.call_db(save)
    publish(
        EventName.WIDGET_UPDATE,
        session_id=widget.session_id,
        widget_id=widget.pk,
        message_id=widget.message_id,
        widget_type=widget.widget_type,
        data=widget.data,
        display_data=widget.display_data,
    )
    return widget


def _get_file(file_id: Any) -> Any:
    from .models import File  # not at import: see the module docstring

    state = _require_turn("get_file_text()")
    file_id = getattr(file_id, "pk", file_id)
    if str(file_id) in state.files:
        return state.files[str(file_id)]

    def load() -> File:
        session = state.session
        if session.user_id:
            owner = Q(user_id=session.user_id)
        elif session.anonymous_id:
            owner = Q(user__isnull=True, anonymous_id=session.anonymous_id)
        else:
            owner = Q(pk__in=[])
        try:
            return File.objects.filter(owner | Q(session_id=session.pk)).get(pk=file_id)
        except (File.DoesNotExist, DjangoValidationError, ValueError, TypeError) as exc:
            raise FileNotFound(f"No file {file_id!r} is available in this conversation.", field="file_id") from exc

    return state.call_db(load)


def get_file_text(file_id: Any) -> str | None:
    """The text extracted from a file; None while extraction is pending or after it failed."""
    file = _get_file(file_id)
    if file.extraction_status == ExtractionStatus.DONE:
        return file.extracted_text
    # The row may have been preloaded before extraction finished: read the current state.
    from .models import File  # not at import: see the module docstring

    state = _require_turn("get_file_text()")

    def reload() -> Any:
        return File.objects.filter(pk=file.pk).values_list("extraction_status", "extracted_text").first()

    row = state.call_db(reload)
    if row and row[0] == ExtractionStatus.DONE:
        return row[1]
    return None


def wait_for_file_text(file_id: Any, timeout: float = 30.0, poll_interval: float = 0.25) -> str | None:
    """Wait up to ``timeout`` seconds for extraction to finish; the text, or None if it failed or
    did not finish in time."""
    from .models import File  # not at import: see the module docstring

    file = _get_file(file_id)
    state = _require_turn("wait_for_file_text()")
    deadline = time.monotonic() + timeout

    def status() -> Any:
        return File.objects.filter(pk=file.pk).values_list("extraction_status", "extracted_text").first()

    while True:
        row = state.call_db(status)
        if row is None:
            return None
        if row[0] == ExtractionStatus.DONE:
            return row[1]
        if row[0] == ExtractionStatus.FAILED or time.monotonic() >= deadline:
            return None
        state.raise_if_cancelled()
        time.sleep(poll_interval)


def current_text_offset() -> int:
    """How far the reply being written has streamed, in UTF-16 units (JavaScript's ``length``):
    the ``text_offset`` that places a widget or a tool step among the reply's text."""
    return utf16_len(_require_turn("current_text_offset()").stream_text)


#: What is kept of a usage by model: the tokens that are priced, and a cost the agent reported.
PRICED_KEYS = ("prompt_tokens", "completion_tokens", "cost")
#: The largest value one call may report of each (tokens; USD): the turn's end adds them to the
#: session's columns, and a value they cannot hold would fail the transaction recording the reply.
USAGE_LIMITS = {"prompt_tokens": 10**12, "completion_tokens": 10**12, "cost": 10**6}
MODEL_NAME_CHARS = 200


def report_usage(*, prompt_tokens: int = 0, completion_tokens: int = 0, model: str | None = None, **other: Any) -> None:
    """Add token counts (or costs) for this turn; they are summed into the agent message's ``metrics``.

    Takes an LLM client's usage object as it dumps itself, e.g. ``report_usage(**usage.model_dump())``:
    ``None`` values are skipped and nested dicts are flattened to dotted keys
    (``prompt_tokens_details.cached_tokens``). Anything but numbers is refused with ``InvalidInput``,
    and so are ``prompt_tokens``, ``completion_tokens`` or ``cost`` below 0 or absurdly large.

    ``model`` names the model the tokens belong to (the declared tool loop passes it); without
    it they count under the agent's ``model`` attribute (a model name, or an object whose
    ``model`` is one), else under ``"unknown"``. At the turn's end each model's tokens are priced
    (``telemetry.cost``) unless a ``cost`` (USD) was reported for that model: it wins.
    """
    state = _require_turn("report_usage()")
    if model is not None and (not isinstance(model, str) or len(model) > MODEL_NAME_CHARS):
        raise InvalidInput(
            f"report_usage() takes the model's name as a str of at most {MODEL_NAME_CHARS} characters; "
            f"model={model!r} is not one.",
            field="model",
        )
    counts: dict[str, int | float] = {}
    _usage_numbers(counts, "", {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, **other})
    # A cost of 0 reported is a price (a free model), unlike tokens of 0.
    priced = {key: counts[key] for key in PRICED_KEYS if counts.get(key) or (key == "cost" and key in counts)}
    for key, value in priced.items():
        if not 0 <= value <= USAGE_LIMITS[key]:
            raise InvalidInput(
                f"report_usage() takes {key} from 0 to {USAGE_LIMITS[key]:,}; {key}={value!r} is not.", field=key
            )
    for key, value in counts.items():
        if value:
            state.usage[key] = state.usage.get(key, 0) + value
    if priced:
        per_model = state.model_usage.setdefault(model or _agent_model(state), {})
        for key, value in priced.items():
            per_model[key] = per_model.get(key, 0) + value


def _agent_model(state: TurnState) -> str:
    model = getattr(state.agent, "model", None)
    if not isinstance(model, str):
        model = getattr(model, "model", None)  # e.g. FakeModel("...") declared as the model
    return model if isinstance(model, str) and model else UNKNOWN_MODEL


def _usage_numbers(into: dict[str, int | float], prefix: str, values: dict[Any, Any]) -> None:
    for name, value in values.items():
        key = f"{prefix}{name}"
        if value is None:
            continue
        if isinstance(value, dict):
            _usage_numbers(into, key + ".", value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInput(
                f"report_usage() takes numbers (token counts, costs); {key}={value!r} is not one.", field=key
            )
        else:
            into[key] = value


def _json_dict(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"Widget {name} must be a dict, not {type(value).__name__}.", field=name)
    problem = json_problem(value)
    if problem:
        raise InvalidInput(f"Widget {name} cannot be stored: {problem}.", field=name)
    return json.loads(json.dumps(value))
