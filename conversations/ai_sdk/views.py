"""The AI SDK endpoints (docs/ai-sdk.md):

- ``POST ai-sdk/chat/``: ``DefaultChatTransport``'s request. The new user message goes through the
  bridge's message create (the conversation must be the caller's, else 404; the message model's
  permissions, throttles and the agent's concurrency policy apply; the turn is scheduled as for any
  message), then the reply streams back as UI message chunks until the turn ends. After
  ``addToolApprovalResponse`` the last message is the assistant's: its answers go through the
  bridge's ``approve`` row action, then the rest of the reply streams. ``regenerate()``
  (``trigger: "regenerate-message"``) goes through the bridge's ``regenerate`` row action of the
  message it names, then the new version's reply streams as for a new message.
- ``GET ai-sdk/chat/<id>/stream/``: the transport's ``reconnectToStream``: the reply still being
  written (its saved rows, then live), or 204 when none is.
- ``GET ai-sdk/chat/<id>/messages/``: the conversation as ``UIMessage`` objects, for
  ``useChat({messages})`` when a page opens it again.

Errors before the stream starts are the app's JSON envelope with their status; once it has
started, a failed turn is an ``error`` chunk.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from ..api.views import BaseAPIView
from ..bridge.catalog import get_exposed
from ..bridge.changes import operation
from ..constants import BridgeAction, BuiltinModel, MessageType
from ..exceptions import InvalidQuery, ObjectNotFound
from ..models import ConversationMessage, ConversationSession
from ..realtime import get_backend, session_channel
from ..realtime.local import LocalBackend, Subscription
from ..realtime.views import RealtimeEventsView
from .chunks import CONTENT_TYPE, STREAM_HEADERS
from .messages import conversation_messages
from .request import ApprovalRequest, RegenerateRequest, parse_chat_request
from .rows import read_reply, streaming_reply
from .streaming import ReplyStream
from .translate import ReplyTranslator, WidgetRow

__all__ = ["ChatMessagesView", "ChatStreamView", "ChatView", "UIMessageStreamResponse"]


class UIMessageStreamResponse(StreamingHttpResponse):
    """A UI message stream (``text/event-stream`` with ``x-vercel-ai-ui-message-stream: v1``).
    Closing it ends the stream, so a reply whose response never started still counts as left."""

    def __init__(self, stream: ReplyStream, *, asynchronous: bool):
        super().__init__(aiter(stream) if asynchronous else iter(stream), content_type=CONTENT_TYPE)
        for name, value in STREAM_HEADERS.items():
            self[name] = value
        self.stream = stream

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.stream.close()


class _ChatBaseView(BaseAPIView):
    """What the AI SDK endpoints share: the conversation lookup, the broker subscription and the
    stream's timings. Override the ``get_*`` steps to change them."""

    #: Seconds a reply goes on after its last client left (a reload re-attaches within them);
    #: then its turn is cancelled.
    disconnect_grace = 3.0
    #: Seconds of silence after which an open stream sends a heartbeat comment and reads the rows.
    heartbeat_interval = 2.0
    #: Seconds between two reads of the rows when the realtime backend is not the Local one.
    poll_interval = 0.5

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[Any, str]:
        # The stream is written by the view itself; DRF only renders errors, always as JSON.
        renderer = JSONRenderer()
        return renderer, renderer.media_type

    def get_session(self, request: Request, session_id: str) -> ConversationSession:
        """The caller's conversation ``session_id`` (404 for any other, as the bridge answers)."""
        session = get_exposed(BuiltinModel.SESSION).get_object(request, BridgeAction.READ, session_id)
        assert isinstance(session, ConversationSession)
        return session

    def get_disconnect_grace(self) -> float:
        return self.disconnect_grace

    def subscribe(self, request: Request, session: ConversationSession, *, replay: bool) -> Subscription | None:
        """The conversation's channel on the Local backend's broker (counted under the visitor's
        open streams, as ``realtime/events/`` counts them: 429 beyond); None with another backend,
        whose events this process does not see (the stream reads the rows instead). ``replay``:
        start with the events the broker still holds."""
        backend = get_backend()
        if not isinstance(backend, LocalBackend):
            return None
        broker = backend.broker
        return broker.subscribe(
            [session_channel(session.pk)],
            last_event_id=broker.event_id(0) if replay else None,
            limits=RealtimeEventsView().get_stream_limits(request),
        )

    def stream_response(self, request: Request, stream: ReplyStream) -> UIMessageStreamResponse:
        return UIMessageStreamResponse(stream, asynchronous=isinstance(request._request, ASGIRequest))

    def new_stream(self, translator: ReplyTranslator, subscription: Subscription | None, **kwargs: Any) -> ReplyStream:
        return ReplyStream(
            translator=translator,
            subscription=subscription,
            heartbeat=self.heartbeat_interval,
            poll_interval=self.poll_interval,
            grace=self.get_disconnect_grace(),
            **kwargs,
        )


class ChatView(_ChatBaseView):
    """``POST ai-sdk/chat/``: send the new user message, stream the reply."""

    def get_throttles(self) -> list[Any]:
        # A message starts a turn: the message model's create rates apply, as on models/message/.
        throttles = get_exposed(BuiltinModel.MESSAGE).get_throttles(BridgeAction.CREATE)
        return throttles if throttles is not None else super().get_throttles()

    def post(self, request: Request) -> HttpResponseBase:
        chat = parse_chat_request(request.data)
        session = self.get_session(request, chat.session_id)
        if isinstance(chat, ApprovalRequest):
            return self.answer_approvals(request, session, chat)
        if isinstance(chat, RegenerateRequest):
            return self.regenerate(request, session, chat)
        data: dict[str, Any] = {"session": str(session.pk), "content": chat.text}
        if chat.file_ids:
            data["files"] = list(chat.file_ids)
        # Subscribed before the message exists: no event of its turn can be missed.
        subscription = self.subscribe(request, session, replay=False)
        try:
            with operation(chat.client_message_id):
                message, replayed = get_exposed(BuiltinModel.MESSAGE).create_or_replay(request, data)
            translator = ReplyTranslator(user_message_id=str(message.pk), session_id=str(session.pk))
            # A retried request (same message id) gets the reply of the message stored the first time.
            initial = translator.apply_snapshot(read_reply(message.pk)) if replayed else []
        except BaseException:
            if subscription is not None:
                subscription.broker.unsubscribe(subscription)
            raise
        return self.stream_response(request, self.new_stream(translator, subscription, initial=initial))

    def answer_approvals(
        self, request: Request, session: ConversationSession, approvals: ApprovalRequest
    ) -> HttpResponseBase:
        """Record the answers (``POST models/message/<id>/approve/`` for each: its permission and
        rules), then stream what the resumed turn adds to the reply the client already shows."""
        step_ids = [answer.step_id for answer in approvals.answers]
        replies = {
            str(pk): reply_to
            for pk, reply_to in ConversationMessage.objects.filter(
                pk__in=_uuids(step_ids), session=session, message_type=MessageType.TOOL
            ).values_list("pk", "reply_to_id")
        }
        for step_id in step_ids:
            if step_id not in replies:
                raise ObjectNotFound(f"No tool step with id {step_id:.64} in this conversation.")
        if len(set(replies.values())) != 1:
            raise InvalidQuery("The approvals answered at once must be of one reply.", field="messages")
        user_message_id = str(next(iter(replies.values())))
        subscription = self.subscribe(request, session, replay=False)
        try:
            # What the client shows: read before the answers can resume the turn.
            before = read_reply(user_message_id)
            exposed = get_exposed(BuiltinModel.MESSAGE)
            for answer in approvals.answers:
                data: dict[str, Any] = {"approved": answer.approved}
                if answer.reason:
                    data["reason"] = answer.reason
                exposed.run_row_action(request, "approve", answer.step_id, data)
        except BaseException:
            if subscription is not None:
                subscription.broker.unsubscribe(subscription)
            raise
        translator = ReplyTranslator(user_message_id=user_message_id, session_id=str(session.pk))
        translator.apply_snapshot(before)  # not sent again: the client has it
        translator.ended_status = None  # the turn goes on (or the rows say it still waits)
        translator.needs_rows = True
        return self.stream_response(request, self.new_stream(translator, subscription, initial=[]))

    def regenerate(
        self, request: Request, session: ConversationSession, regenerate: RegenerateRequest
    ) -> HttpResponseBase:
        """Answer again the message ``regenerate()`` names (``POST models/message/<id>/regenerate/``:
        its permission and rules, 409 under a ``reject`` policy while a turn runs...), then stream
        the new version's reply from its start."""
        target = regenerated_row(session, regenerate.message_id)
        subscription = self.subscribe(request, session, replay=False)
        try:
            with operation(None):
                message = get_exposed(BuiltinModel.MESSAGE).run_row_action(request, "regenerate", target, {})
        except BaseException:
            if subscription is not None:
                subscription.broker.unsubscribe(subscription)
            raise
        translator = ReplyTranslator(user_message_id=str(message.pk), session_id=str(session.pk))
        return self.stream_response(request, self.new_stream(translator, subscription, initial=[]))


#: The id ``messages/`` gives a reply that has no agent message (a failure notice only).
_REPLY_SUFFIX = "-reply"


def regenerated_row(session: ConversationSession, client_id: str) -> str:
    """The pk of the row of ``session`` that ``client_id`` names: a message's id (the assistant
    messages the stream and ``messages/`` show carry their agent message's id, user messages from
    ``messages/`` theirs), ``<user message id>-reply`` (a reply without an agent message), or the
    client's own id of a user message it sent (kept as its operation id). ObjectNotFound else."""
    rows = ConversationMessage.objects.filter(session=session)
    try:
        found = rows.filter(pk=uuid.UUID(client_id.removesuffix(_REPLY_SUFFIX))).values_list("pk", flat=True).first()
    except ValueError:
        found = None
    if found is None:
        found = (
            rows.filter(message_type=MessageType.USER, client_operation_id=client_id)
            .values_list("pk", flat=True)
            .first()
        )
    if found is None:
        raise ObjectNotFound(f"No message with id {client_id:.64} in this conversation.", field="messageId")
    return str(found)  # as a URL carries it


def _uuids(values: list[str]) -> list[uuid.UUID]:
    found = []
    for value in values:
        try:
            found.append(uuid.UUID(value))
        except ValueError as exc:
            raise ObjectNotFound(f"No tool step with id {value:.64} in this conversation.") from exc
    return found


class ChatStreamView(_ChatBaseView):
    """``GET ai-sdk/chat/<id>/stream/``: re-attach to the reply being written, from its saved
    rows (replayed from its start, as the AI SDK's resume expects) then live; 204 when no reply
    of the conversation is under way."""

    def get(self, request: Request, session_id: str) -> HttpResponseBase:
        session = self.get_session(request, session_id)
        subscription = self.subscribe(request, session, replay=True)
        try:
            message = streaming_reply(session.pk)
            if message is None:
                if subscription is not None:
                    subscription.broker.unsubscribe(subscription)
                return HttpResponse(status=204)
            # The held events first, then the rows: every event held has its rows saved already,
            # so the rows tell which of the held widget events are this reply's.
            held = subscription.drain() if subscription is not None else None
            snapshot = read_reply(message.pk)
        except BaseException:
            if subscription is not None:
                subscription.broker.unsubscribe(subscription)
            raise
        translator = ReplyTranslator(user_message_id=str(message.pk), session_id=str(session.pk))
        initial = translator.apply_snapshot(snapshot)
        known = frozenset(p.widget_id for p in snapshot.parts if isinstance(p, WidgetRow))
        stream = self.new_stream(translator, subscription, initial=initial, replay=held, known_widgets=known)
        return self.stream_response(request, stream)


class ChatMessagesView(_ChatBaseView):
    """``GET ai-sdk/chat/<id>/messages/``: ``{"id", "messages": [UIMessage, ...]}``, the
    conversation's rows as the stream showed them (a reply being written: its saved part)."""

    def get(self, request: Request, session_id: str) -> Response:
        session = self.get_session(request, session_id)
        return Response({"id": str(session.pk), "messages": conversation_messages(session)})
