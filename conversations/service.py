"""``ConversationService``: the seed API. Create sessions, send a message and get the reply, cancel.

What a turn does is in ``turns/``; this module checks the caller's input and ownership and
hands over (``turns.inline``, ``turns.policy``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction

from .conf import ai_settings
from .constants import MessageType, ProcessingStatus, SessionStatus
from .exceptions import (
    ConversationError,
    ConversationPermissionDenied,
    FileNotFound,
    InvalidInput,
    MessageNotFound,
    SessionNotActive,
    SessionNotFound,
)
from .feedback import rate_reply
from .internal.jsonsafe import json_problem
from .messages import clean_message_text
from .models import ConversationMessage, ConversationSession, File
from .owners import Owner, get_owner, owns
from .registry import registry
from .turns import versions
from .turns.hooks import answered_by_caller
from .turns.inline import answer_inline, answer_new_message
from .turns.policy import apply_concurrency_policy, policy_locks, request_cancel

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request


__all__ = ["ConversationService", "SendMessageResult"]


class SendMessageResult(TypedDict):
    """What ``send_message`` returns: the seed's ``status``/``response``/``session_id`` plus ids."""

    #: "awaiting_approval": the reply stopped at a tool call the user must approve (``response`` is
    #: its text so far; the steps are in ``pending_approvals``); "queued": the message waits behind
    #: such a turn and a task answers it once that turn ends (or its steps were all answered before
    #: the turn stopped for them: a task resumes it).
    status: Literal["success", "error", "cancelled", "awaiting_approval", "queued"]
    response: str
    session_id: str
    user_message_id: str
    #: The agent message (None when the agent failed before writing anything).
    message_id: str | None
    #: Only with status "error": the generic text shown to the user.
    error: NotRequired[str]
    #: Only with status "awaiting_approval": the ids of the tool steps waiting for an answer
    #: (``POST models/message/<id>/approve/``).
    pending_approvals: NotRequired[list[str]]


def _int_or(data: Any, key: str) -> int:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, int) else 0


def _as_uuid(value: Any, error: type[ConversationError], what: str, field: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if value is None or value == "":
        raise error(f"{field} is required: pass the id of an existing {what.lower()}.", field=field)
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError) as exc:
        raise error(f"{what} {value!r} does not exist (not a valid id).", field=field) from exc


def _check_user(user: Any) -> Any:
    """The authenticated user, None for an anonymous one; anything else is a caller's mistake."""
    if user is None:
        return None
    if not hasattr(user, "is_authenticated"):
        raise InvalidInput(
            f"user must be a user instance (e.g. request.user), not {type(user).__name__}.", field="user"
        )
    if not user.is_authenticated:
        return None
    if getattr(user, "pk", None) is None:
        raise InvalidInput("user must be a saved user (it has no primary key).", field="user")
    return user


class ConversationService:
    """Server-side API for conversations. Every method validates its input and writes nothing when
    it raises."""

    @staticmethod
    def create_session(
        agent_path: str,
        user: Any = None,
        anonymous_id: str | None = None,
        context: dict[str, Any] | Any = None,
        *,
        title: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> ConversationSession:
        """Create a session for ``agent_path`` owned by ``user`` or by ``anonymous_id``.

        An authenticated ``user`` owns the session (``anonymous_id`` is then ignored); for an
        anonymous user (``AnonymousUser`` or None) ``anonymous_id`` is the owner, and it must be the
        id the visitor's requests carry (see :func:`~django_ai.conversations.owners.get_owner`).
        Without either the session has no owner and only server code can use it.

        ``context`` (a dict or a Context instance) is validated against the agent's Context; when
        omitted the Context's defaults are used. ``create_context`` is not called: use
        :func:`~django_ai.conversations.actions.start_conversation` for that.
        """
        agent_cls = registry.get(agent_path)
        path = ConversationService._registered_path(agent_path, agent_cls)
        user = _check_user(user)
        if anonymous_id is not None and (
            not isinstance(anonymous_id, str) or len(anonymous_id) > 128 or "\x00" in anonymous_id
        ):
            raise InvalidInput("anonymous_id must be a string of at most 128 characters.", field="anonymous_id")
        if user is not None:
            # As in the seed's example (user=request.user, anonymous_id="guest_123"): the anonymous
            # id is for anonymous visitors; a signed-in user owns the session.
            anonymous_id = None
        if not isinstance(title, str) or len(title) > 200 or "\x00" in title:
            raise InvalidInput("title must be a string of at most 200 characters.", field="title")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidInput(f"metadata must be a dict, not {type(metadata).__name__}.", field="metadata")
        problem = json_problem(metadata)
        if problem:
            raise InvalidInput(f"metadata cannot be stored: {problem}.", field="metadata")
        ctx = agent_cls.validate_context(context) if context is not None else agent_cls.build_empty_context()
        context_data = agent_cls.dump_context(ctx)
        return ConversationSession.objects.create(
            agent_path=path,
            user=user,
            anonymous_id=anonymous_id or "",
            context=context_data,
            metadata=metadata or {},
            title=title,
        )

    @staticmethod
    def get_session(
        session_id: Any, *, user: Any = None, request: HttpRequest | Request | None = None
    ) -> ConversationSession:
        """The session, checked against the owner that ``user``/``request`` act as (when given).

        A conversation its owner deleted is missing for them (``SessionNotFound``, 404, as the
        bridge answers); server code (no user, no request) still gets it."""
        pk = _as_uuid(session_id, SessionNotFound, "Conversation", "session_id")
        try:
            session = ConversationSession.objects.get(pk=pk)
        except ConversationSession.DoesNotExist as exc:
            raise SessionNotFound(f"Conversation {session_id} does not exist.") from exc
        if user is not None or request is not None:
            if session.status == SessionStatus.DELETED:
                raise SessionNotFound(f"Conversation {session_id} does not exist.")
            owner = get_owner(request, _check_user(user))
            if not owns(owner, session):
                raise ConversationPermissionDenied()
        return session

    @staticmethod
    def send_message(
        session_id: Any,
        message: str,
        user: Any = None,
        request: HttpRequest | Request | None = None,
        files: Iterable[Any] | None = None,
    ) -> SendMessageResult:
        """Save ``message`` as the user's, run the agent's turn inline and return
        ``{"status": "success", "response": ..., "session_id": ...}`` (``"error"`` with a generic
        ``error`` text when the agent fails; details go to the log). ``"awaiting_approval"``: the
        reply waits for the user to approve a tool call (``pending_approvals`` lists the steps);
        ``"queued"``: the message waits behind such a reply, and a task answers it later."""
        text = ConversationService._clean_message(message)
        session = ConversationService.get_session(session_id, user=user, request=request)
        if session.status != SessionStatus.ACTIVE:
            raise SessionNotActive(f"Conversation {session.pk} is {session.status}; start a new one to continue.")
        agent_cls = registry.get(session.agent_path)
        file_rows = ConversationService._resolve_files(files, session, user=user, request=request)

        if not file_rows and not policy_locks(agent_cls):
            # The default policy (enqueue) locks nothing: no transaction around the message's
            # INSERT, which starts the turn when the conversation is idle (turns/inline.py).
            user_message, outcome = answer_new_message(session, text, request)
        else:
            user_message = ConversationMessage(
                session=session,
                message_type=MessageType.USER,
                content=text,
                processing_status=ProcessingStatus.PENDING,
            )
            with transaction.atomic():
                # In the transaction that saves the message: the policy holds the session's row
                # lock until the commit, so two messages sent at once are checked one after the other.
                apply_concurrency_policy(session, agent_cls)
                with answered_by_caller():  # answered below, inline: no turn task for it
                    user_message.save()
                if file_rows:
                    # One link per file in the caller's order (files.set() would lose the order):
                    # the agent sees self.files in that order.
                    through = ConversationMessage.files.through
                    through.objects.bulk_create(
                        [through(conversationmessage=user_message, file=f) for f in dict.fromkeys(file_rows)]
                    )
                    File.objects.filter(pk__in=[f.pk for f in file_rows], session__isnull=True).update(session=session)
            # Without files the turn need not read them (with files: read back in their saved order).
            outcome = answer_inline(session, user_message, request, files=None if file_rows else [])
        result: SendMessageResult = {
            "status": "success",
            "response": outcome.response if outcome else "",
            "session_id": str(session.pk),
            "user_message_id": str(user_message.pk),
            "message_id": str(outcome.agent_message.pk) if outcome and outcome.agent_message else None,
        }
        if outcome is None or outcome.status == ProcessingStatus.FAILED:
            result["status"] = "error"
            result["response"] = ""
            result["error"] = (
                outcome.error_message.content
                if outcome and outcome.error_message
                else ai_settings.GENERIC_ERROR_MESSAGE
            )
        elif outcome.status == ProcessingStatus.CANCELLED:
            result["status"] = "cancelled"
        elif outcome.status == ProcessingStatus.AWAITING_APPROVAL:
            result["status"] = "awaiting_approval"
            waiting = ConversationMessage.objects.filter(
                reply_to=user_message,
                message_type=MessageType.TOOL,
                processing_status=ProcessingStatus.AWAITING_APPROVAL,
            ).values_list("pk", "component_data")
            # In the model's order: the round, then the call's place in it.
            result["pending_approvals"] = [
                str(pk)
                for pk, data in sorted(
                    waiting, key=lambda row: (_int_or(row[1], "round"), _int_or(row[1], "index"), str(row[0]))
                )
            ]
        elif outcome.status == ProcessingStatus.PENDING:
            result["status"] = "queued"
        return result

    @staticmethod
    async def asend_message(
        session_id: Any,
        message: str,
        user: Any = None,
        request: HttpRequest | Request | None = None,
        files: Iterable[Any] | None = None,
    ) -> SendMessageResult:
        """``send_message`` for async code: the turn runs in a worker thread, off the event loop."""
        return await sync_to_async(ConversationService.send_message, thread_sensitive=True)(
            session_id, message, user=user, request=request, files=files
        )

    @staticmethod
    def cancel_turn(
        session_id: Any, *, user: Any = None, request: HttpRequest | Request | None = None
    ) -> dict[str, Any]:
        """Ask the running turn of a session to stop, and drop its waiting messages.

        The agent stops at its next ``stream.write()`` (or when it checks ``self.cancelled``); the
        message ends ``cancelled`` with the partial text kept. With nothing running this is a no-op
        that says so: ``{"status": "idle", "cancelled": []}``.
        """
        session = ConversationService.get_session(session_id, user=user, request=request)
        cancelled = request_cancel(session)
        return {"status": "cancelling" if cancelled else "idle", "cancelled": [str(pk) for pk in cancelled]}

    @staticmethod
    def apply_concurrency_policy(session: ConversationSession, agent_cls: Any) -> None:
        """Apply the agent's policy for a message that arrives while a turn runs, inside the
        transaction that saves the message, just before the save (docs/turns.md): see
        :func:`django_ai.conversations.turns.policy.apply_concurrency_policy`."""
        apply_concurrency_policy(session, agent_cls)

    @staticmethod
    def regenerate(
        message_id: Any, *, user: Any = None, request: HttpRequest | Request | None = None, operation_id: str = ""
    ) -> ConversationMessage:
        """Answer a user message again (``message_id``: it, or a row replying to it): a new version
        of it joins the active path, answered from the Context its turn started from; the earlier
        reply and what followed stay as an inactive version (docs/versions.md). Returns the new
        user message, ``pending``: a task answers it, as a message sent through the bridge
        (``django_ai.conversations.testing.wait_for_turns`` waits for it in tests).

        With ``user``/``request`` only the owner's messages are found (``MessageNotFound``, 404,
        for any other). ``InvalidInput`` ``not_a_user_message`` (400) for a row that answers no
        user message; ``SessionNotActive`` (409); ``TurnInProgress`` (409) under the agent's
        ``reject`` policy while a turn runs. ``operation_id``: a retry with the same id returns
        the version the first call made."""
        message, session = ConversationService._owned_message(message_id, user=user, request=request)
        return versions.regenerate(message.pk, session=session, operation_id=operation_id)

    @staticmethod
    def edit_message(
        message_id: Any,
        content: str,
        *,
        files: Iterable[Any] | None = None,
        user: Any = None,
        request: HttpRequest | Request | None = None,
        operation_id: str = "",
    ) -> ConversationMessage:
        """A new version of the user message ``message_id`` with the text ``content`` (checked as a
        new message's) and, when ``files`` is a list, these files instead of the message's own
        (File rows or ids the caller owns, as ``send_message`` takes them); answered from the
        Context the original's turn started from. As :meth:`regenerate` otherwise; a row that is
        not a user message is ``InvalidInput`` ``not_a_user_message``."""
        text = clean_message_text(content, field="content")
        message, session = ConversationService._owned_message(message_id, user=user, request=request)
        file_rows = None
        if files is not None:
            file_rows = ConversationService._resolve_files(files, session, user=user, request=request)
        with transaction.atomic():
            version = versions.edit(
                message.pk, content=text, files=file_rows, session=session, operation_id=operation_id
            )
            if file_rows:
                File.objects.filter(pk__in=[f.pk for f in file_rows], session__isnull=True).update(session=session)
        return version

    @staticmethod
    def activate_version(
        message_id: Any, *, user: Any = None, request: HttpRequest | Request | None = None
    ) -> ConversationMessage:
        """Make the version ``message_id`` (a user message, or a row replying to one) the active
        one: the conversation shows (and the model is sent) that version's path, and its Context
        becomes the one that path ends with. ``TurnInProgress`` (409) while a turn of the
        conversation runs. Returns the user message. Owner checks as :meth:`regenerate`."""
        message, session = ConversationService._owned_message(message_id, user=user, request=request)
        return versions.activate_version(message.pk, session=session)

    @staticmethod
    def _owned_message(
        message_id: Any, *, user: Any, request: HttpRequest | Request | None
    ) -> tuple[ConversationMessage, ConversationSession]:
        """The message and its conversation; with ``user``/``request``, only one of their own
        conversations (a deleted one is missing): else ``MessageNotFound``."""
        pk = _as_uuid(message_id, MessageNotFound, "Message", "message_id")
        message = ConversationMessage.objects.select_related("session").filter(pk=pk).first()
        if message is None:
            raise MessageNotFound(f"Message {message_id} does not exist.")
        session = message.session
        if user is not None or request is not None:
            owner = get_owner(request, _check_user(user))
            if session.status == SessionStatus.DELETED or not owns(owner, session):
                raise MessageNotFound(f"Message {message_id} does not exist.")
        return message, session

    @staticmethod
    def _clean_message(message: Any) -> str:
        return clean_message_text(message)

    @staticmethod
    def _resolve_files(
        files: Iterable[Any] | None, session: ConversationSession, *, user: Any, request: HttpRequest | Request | None
    ) -> list[File]:
        if files is None:
            return []
        if isinstance(files, (str, bytes, uuid.UUID, File)) or not isinstance(files, Iterable):
            raise InvalidInput(
                f"files must be a list of File rows or file ids, not {type(files).__name__}.", field="files"
            )
        files = list(files)
        if not files:
            return []
        # Files of the caller's owner; server code (no user, no request) acts as the session's.
        if user is not None or request is not None:
            owner = get_owner(request, _check_user(user))
        else:
            owner = Owner(session.user, session.anonymous_id)
        rows: list[File] = []
        for item in files:
            pk = item.pk if isinstance(item, File) else _as_uuid(item, FileNotFound, "File", "files")
            try:
                row = File.objects.select_related("session").get(pk=pk)
            except (File.DoesNotExist, DjangoValidationError) as exc:
                raise FileNotFound(f"File {pk} does not exist.", field="files") from exc
            mine = owns(owner, row) if owner.is_known else False
            if not mine and row.session_id != session.pk:
                raise FileNotFound(f"File {pk} does not exist.", field="files")
            if row.session is not None and row.session.status == SessionStatus.DELETED:
                # A file of a conversation its owner deleted is missing, as on the bridge.
                raise FileNotFound(f"File {pk} does not exist.", field="files")
            rows.append(row)
        return rows

    @staticmethod
    def _registered_path(requested: str, agent_cls: Any) -> str:
        if requested in registry:
            return requested
        for path, cls in registry.items():
            if cls is agent_cls:
                return path
        return requested

    @staticmethod
    def give_feedback(
        message_id: Any,
        rating: str | None,
        comment: str = "",
        *,
        user: Any = None,
        request: HttpRequest | Request | None = None,
    ) -> ConversationMessage:
        """Rate the agent reply ``message_id``: ``"up"``, ``"down"``, or None to withdraw the
        rating (and its comment); ``comment`` at most 2,000 characters. Returns the message.

        With ``user``/``request`` only their own replies can be rated: any other message, or one
        of a deleted conversation, is ``MessageNotFound`` (404 ``not_found``). A message that is
        not an agent reply is ``InvalidInput`` with code ``not_an_agent_reply`` (400). The
        ``message_feedback`` signal is sent once the rating commits (docs/conversations.md)."""
        message, _ = ConversationService._owned_message(message_id, user=user, request=request)
        acting = _check_user(user)
        return rate_reply(message, rating, comment, user=acting if acting is not None else get_owner(request).user)
