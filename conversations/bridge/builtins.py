"""The built-in exposed models: ``session``, ``message``, ``widget`` and ``file``.

Owners (users, or anonymous visitors by their id) see and act only on their own conversations:

- ``session``: read; rename (``title``), archive (``status`` = ``archived``) or unarchive
  (``archived`` -> ``active``); delete (soft: ``status`` = ``deleted``, see
  ``ExposedSession.perform_delete``). Sessions are started with ``POST start/`` (the agent builds
  the context), never created here; context, metadata, owner and turn bookkeeping are neither
  readable nor writable. ``search`` finds conversations by title and message text
  (:mod:`~django_ai.conversations.search`).
- ``message``: read; create a *user* message (``session``, ``content``, optional ``files``) in an
  active session of theirs. Type and status are forced (``user``, ``pending``); the turn starts
  when the row commits. The row action ``approve`` answers a tool call waiting for approval.
- ``widget``: read; change ``display_data`` (presentation state), never ``data``.
- ``file``: read (the extracted text only when asked for with ``fields``); delete their own files
  (the stored file goes once the deletion commits). Uploads go through ``POST files/``.

A deleted conversation (``status`` = ``deleted``) and every row in it are missing for everyone
here (``get_base_queryset``): 404 on reads, writes and row actions, absent from query answers.
Staff restore them in the admin until ``manage.py purge_conversations`` removes them.

Each announces every save of its model (``announce_all_saves``: the turn, the admin and the
bridge alike) on the channels its ``get_change_channels`` names: the conversation's, and for
sessions and files their owner's too. Message creation has its own throttles.

Replace one with ``exposed_models.register(...)`` under the same name, e.g. to add ``IsStaff``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, cast

import django_filters
from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ..api.throttling import AnonymousAddressThrottle, MessageCreateThrottle, RowActionThrottle
from ..constants import BridgeAction, BuiltinModel, ErrorCode, MessageType, ProcessingStatus, SessionStatus
from ..exceptions import InvalidInput, InvalidMessage, SessionNotActive, TurnInProgress
from ..models import ConversationMessage, ConversationSession, ConversationWidget, File
from ..owners import get_owner
from ..realtime.channels import owner_channel, owner_channel_for_session, session_channel
from ..registry import get_agent
from ..search import MAX_SEARCH_LENGTH, search_sessions
from ..service import ConversationService
from ..turns.approval import MAX_REASON_LENGTH, answer_approval
from ..turns.policy import apply_concurrency_policy, request_cancel
from . import feedback as message_feedback
from . import versions as message_versions
from .changes import current_operation_id
from .errors import FieldNotAllowed, ObjectNotFound, OperationIdReused
from .exposed import ExposedModel, row_action
from .permissions import IsOwner, OnlyActions

if TYPE_CHECKING:
    from rest_framework.request import Request


__all__ = [
    "ExposedFile",
    "ExposedMessage",
    "ExposedSession",
    "ExposedWidget",
    "FileFilterSet",
    "MessageFilterSet",
    "SessionFilterSet",
    "WidgetFilterSet",
    "builtin_exposed_models",
]

RANGE = ["gt", "gte", "lt", "lte"]


class _SearchField(forms.CharField):
    """Text only: a number or a boolean is refused instead of being read as its digits."""

    def to_python(self, value: Any) -> Any:
        if value not in self.empty_values and not isinstance(value, str):
            raise DjangoValidationError("search must be a string.", code="invalid")
        return super().to_python(value)


class SearchFilter(django_filters.CharFilter):
    field_class = _SearchField


class SessionFilterSet(django_filters.FilterSet):
    #: ``filter={"search": "words"}``: conversations whose title or active messages match
    #: (docs/conversations.md, "Search"). One string of at most ``MAX_SEARCH_LENGTH`` characters.
    search = SearchFilter(method="filter_search", max_length=MAX_SEARCH_LENGTH)

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return search_sessions(queryset, value)

    class Meta:
        model = ConversationSession
        fields = {
            "id": ["exact", "in"],
            "status": ["exact", "in"],
            "agent_path": ["exact", "in"],
            "title": ["exact", "icontains"],
            "created_at": RANGE,
            "updated_at": RANGE,
            "last_message_at": [*RANGE, "isnull"],
        }


class MessageFilterSet(django_filters.FilterSet):
    class Meta:
        model = ConversationMessage
        fields = {
            "id": ["exact", "in"],
            "session": ["exact", "in"],
            "session__status": ["exact"],
            "message_type": ["exact", "in"],
            "processing_status": ["exact", "in"],
            "reply_to": ["exact", "isnull"],
            "timestamp": RANGE,
            "updated_at": RANGE,
            # Versions (docs/versions.md): list queries see the active path unless they name
            # ``active``, ``version_group`` or ``id`` (ExposedMessage.filter_queryset).
            "active": ["exact"],
            "version_group": ["exact", "in"],
            "parent": ["exact", "isnull"],
            "revision": ["exact", "in"],
            "feedback": ["exact", "in"],
        }


class WidgetFilterSet(django_filters.FilterSet):
    class Meta:
        model = ConversationWidget
        fields = {
            "id": ["exact", "in"],
            "session": ["exact", "in"],
            "message": ["exact", "in", "isnull"],
            "widget_type": ["exact", "in"],
            "created_at": RANGE,
            "updated_at": RANGE,
        }


class FileFilterSet(django_filters.FilterSet):
    class Meta:
        model = File
        fields = {
            "id": ["exact", "in"],
            "session": ["exact", "in", "isnull"],
            "extraction_status": ["exact", "in"],
            "content_type": ["exact", "in"],
            "created_at": RANGE,
        }


class _BuiltinExposed(ExposedModel):
    """The built-in models announce every save, whoever writes (:mod:`.model_signals`), on the
    channel of the conversation the row belongs to."""

    announce_all_saves = True

    #: The path from a row to its conversation ("" for the conversation itself): rows of a
    #: deleted conversation are left out of every query, read, write and row action.
    session_path = "session"

    def get_base_queryset(self) -> QuerySet:
        status = f"{self.session_path}__status" if self.session_path else "status"
        # exclude(), not filter(status__ne): a file not in a conversation yet (session NULL) stays.
        return super().get_base_queryset().exclude(**{status: SessionStatus.DELETED})

    def get_change_channels(self, request: Request | None, instance: Any) -> list[str]:
        return [session_channel(instance.session_id)]


class ExposedSession(_BuiltinExposed):
    model = ConversationSession
    name = BuiltinModel.SESSION
    permission_classes = (IsOwner(), OnlyActions(BridgeAction.READ, BridgeAction.UPDATE, BridgeAction.DELETE))
    read_fields = ("id", "agent_path", "title", "status", "created_at", "updated_at", "last_message_at")
    update_fields = ("title", "status")
    filterset_class = SessionFilterSet
    orderings = ("updated_at", "created_at", "last_message_at", "title")
    default_ordering = ("-updated_at",)

    session_path = ""

    #: The status changes an owner may make (from -> to): archive an active conversation, and
    #: unarchive it. Deleting is ``DELETE models/session/<pk>/``, never an update; anything else
    #: (``completed``) is the server's business.
    allowed_status_changes = frozenset(
        {(SessionStatus.ACTIVE, SessionStatus.ARCHIVED), (SessionStatus.ARCHIVED, SessionStatus.ACTIVE)}
    )

    def validate_write(self, request: Request, action: str, data: dict[str, Any], instance: Any) -> dict[str, Any]:
        status = data.get("status")
        current = getattr(instance, "status", None)
        if status is not None and status != current and (current, status) not in self.allowed_status_changes:
            raise FieldNotAllowed(
                f"A conversation that is {current} cannot be set to {status}: archive an active "
                "conversation, unarchive (active) an archived one; delete with DELETE.",
                code=ErrorCode.INVALID_STATUS,
                field="status",
            )
        return data

    def perform_delete(self, request: Request, instance: Any) -> None:
        """Soft delete: the conversation becomes ``deleted`` (missing for its owner from now on,
        restorable in the admin until ``purge_conversations``); its unfinished turns are cancelled.
        Saved, not deleted: the owner's channel hears an update, and the SDK's list, which
        re-reads the row, no longer finds it."""
        request_cancel(instance)
        instance.status = SessionStatus.DELETED
        instance.deleted_at = timezone.now()
        instance.save(update_fields=["status", "deleted_at", "updated_at"])
        # A file of this conversation that a message of another one (not deleted) also names (a
        # message may name any file of its owner) stays readable there: it moves to that one.
        links = (
            ConversationMessage.files.through.objects.filter(file__session=instance)
            .exclude(conversationmessage__session=instance)
            .exclude(conversationmessage__session__status=SessionStatus.DELETED)
        )
        for file_pk, session_pk in dict(links.values_list("file_id", "conversationmessage__session_id")).items():
            row = File.objects.get(pk=file_pk)
            row.session_id = session_pk
            row.save(update_fields=["session", "updated_at"])  # its model_change reaches that conversation

    def get_change_channels(self, request: Request | None, instance: Any) -> list[str]:
        # The owner's channel carries their list of conversations.
        return [c for c in (session_channel(instance.pk), owner_channel_for_session(instance)) if c]


class ExposedMessage(_BuiltinExposed):
    model = ConversationMessage
    name = BuiltinModel.MESSAGE
    permission_classes = (
        IsOwner(path="session"),
        OnlyActions(BridgeAction.READ, BridgeAction.CREATE, "approve", "regenerate", "edit", "activate", "feedback"),
    )
    read_fields = (
        "id",
        "session",
        "message_type",
        "content",
        "component_type",
        "component_data",
        "files",
        "processing_status",
        "reply_to",
        "stream_sequence",
        "text_offset",
        "timestamp",
        "updated_at",
        # Versions (docs/versions.md).
        "active",
        "parent",
        "version_group",
        "version_index",
        "version_count",
        "revision",
        # The owner's rating of an agent reply.
        "feedback",
        "feedback_comment",
    )
    create_fields = ("session", "content", "files")
    filterset_class = MessageFilterSet
    orderings = ("timestamp", "updated_at")
    default_ordering = ("timestamp",)
    relations = {
        "session": BuiltinModel.SESSION,
        "files": BuiltinModel.FILE,
        "reply_to": BuiltinModel.MESSAGE,
        "parent": BuiltinModel.MESSAGE,
    }
    # Each message starts a turn: creation has rates of its own, per visitor and per address, and
    # so have regenerate and edit, which start one too.
    throttle_classes = {
        BridgeAction.CREATE: (MessageCreateThrottle, AnonymousAddressThrottle),
        "regenerate": (MessageCreateThrottle, AnonymousAddressThrottle),
        "edit": (MessageCreateThrottle, AnonymousAddressThrottle),
        "approve": (RowActionThrottle, AnonymousAddressThrottle),
        "activate": (RowActionThrottle, AnonymousAddressThrottle),
        "feedback": (RowActionThrottle, AnonymousAddressThrottle),
    }
    #: Fields whose filter (or exclude) makes a query see every version; any other query sees the
    #: active path only (docs/bridge.md#versions).
    version_filter_fields = frozenset({"active", "version_group", "id"})

    def filter_queryset(self, request: Request, queryset: Any, query: Any) -> Any:
        named = {cond.filter.field_name for cond in query.filter}
        named.update(cond.filter.field_name for group in query.exclude for cond in group)
        if named.isdisjoint(self.version_filter_fields):
            queryset = queryset.filter(active=True)
        return queryset

    @row_action()
    def regenerate(self, request: Request, instance: Any, data: dict[str, Any]) -> Any:
        """``POST models/message/<pk>/regenerate/``: answer the user message again (``pk``: it, or
        a row replying to it) as a new version; answers the new user message (docs/versions.md)."""
        return message_versions.regenerate_action(self, request, instance, data)

    @row_action(body_keys=("content", "files"))
    def edit(self, request: Request, instance: Any, data: dict[str, Any]) -> Any:
        """``POST models/message/<pk>/edit/`` ``{"content": str, "files"?: [file ids]}``: a new
        version of the user message with new text (and files), answered again; answers it."""
        return message_versions.edit_action(self, request, instance, data)

    @row_action()
    def activate(self, request: Request, instance: Any, data: dict[str, Any]) -> Any:
        """``POST models/message/<pk>/activate/``: make this version of a user message the active
        one (the "< 1/2 >" arrows); answers the user message."""
        return message_versions.activate_action(self, request, instance, data)

    @row_action(body_keys=("rating", "comment"))
    def feedback(self, request: Request, instance: Any, data: dict[str, Any]) -> Any:
        """``POST models/message/<pk>/feedback/`` ``{"rating": "up" | "down" | null, "comment"?: str}``:
        the owner's rating of an agent reply; answers the reply."""
        return message_feedback.feedback_action(self, request, instance, data)

    @row_action(body_keys=("approved", "reason"))
    def approve(self, request: Request, instance: Any, data: dict[str, Any]) -> Any:
        """``POST models/message/<tool step id>/approve/`` ``{"approved": bool, "reason"?: str}``:
        answer a tool call that waits for the owner's approval (``turns.approval.answer_approval``:
        400 ``not_a_tool_step``, 409 ``approval_already_answered`` / ``not_awaiting_approval``)."""
        approved = data.get("approved")
        if "approved" not in data:
            raise InvalidInput("approved is required: true or false.", code=ErrorCode.REQUIRED, field="approved")
        if not isinstance(approved, bool):
            raise InvalidInput("approved must be true or false.", field="approved")
        reason = data.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH or "\x00" in reason:
            raise InvalidInput(f"reason must be a string of at most {MAX_REASON_LENGTH} characters.", field="reason")
        # The permission classes chose the row (get_object for "approve"); the answer locks and
        # re-reads it.
        user = get_owner(request).user
        return answer_approval(
            instance.pk, approved=approved, reason=reason, answered_by=user.pk if user is not None else None
        )

    def get_create_defaults(self, request: Request, data: dict[str, Any]) -> dict[str, Any]:
        # Whatever the client sent: a user message, waiting for its turn.
        return {"message_type": MessageType.USER, "processing_status": ProcessingStatus.PENDING}

    def validate_write(self, request: Request, action: str, data: dict[str, Any], instance: Any) -> dict[str, Any]:
        if action != BridgeAction.CREATE:
            return data
        session = data["session"]
        if session.status != SessionStatus.ACTIVE:
            raise SessionNotActive(
                f"This conversation is {session.status}; start a new one to continue.", field="session"
            )
        try:
            data["content"] = ConversationService._clean_message(data.get("content", ""))
        except InvalidMessage as exc:
            raise InvalidMessage(exc.message.replace("message", "content", 1), field="content") from exc
        return data

    def create_or_replay(self, request: Request, data: Any) -> tuple[Any, bool]:
        """Create a user message; idempotent on the request's ``X-Operation-Id``.

        A client whose create answer was lost (a dropped connection) sends the same request again
        with the same operation id: it gets the message stored the first time (``replayed``, a
        200, and no second turn) instead of a duplicate. The same id with other content is a 409.
        """
        operation_id = current_operation_id.get()
        if operation_id:
            replayed = self._replayed(request, data, operation_id)
            if replayed is not None:
                return replayed, True
        try:
            return self.create(request, data), False
        except (IntegrityError, TurnInProgress):
            # Two requests with the same id at the same moment: the other one stored it first
            # (seen as the unique constraint, or as the turn it started under a reject policy).
            replayed = self._replayed(request, data, operation_id) if operation_id else None
            if replayed is None:
                raise
            return replayed, True

    def _replayed(self, request: Request, data: Any, operation_id: str) -> Any:
        session = data.get("session") if isinstance(data, dict) else None
        if not isinstance(session, str):
            return None
        try:
            existing = ConversationMessage.objects.filter(
                session_id=uuid.UUID(session), client_operation_id=operation_id, message_type=MessageType.USER
            ).first()
        except (ValueError, DjangoValidationError):
            return None  # not a uuid: the normal validation says so
        if existing is None:
            return None
        # The same visitor's conversation only: for anyone else the create goes on and is refused
        # as it would be without the id (they learn nothing about it).
        try:
            existing = cast(ConversationMessage, self.get_object(request, BridgeAction.READ, str(existing.pk)))
        except ObjectNotFound:
            return None
        try:
            content = ConversationService._clean_message(data.get("content", ""))
        except InvalidMessage:
            content = None
        files = data.get("files") or []
        same_files = isinstance(files, list) and sorted(map(str, files)) == sorted(
            str(pk) for pk in existing.files.values_list("pk", flat=True)
        )
        if content != existing.content or not same_files:
            raise OperationIdReused(
                "This X-Operation-Id was already used for another message in this conversation; "
                "use a new id for a new message.",
            )
        return existing

    def perform_create(self, request: Request, instance: Any, many: dict[str, Any]) -> None:
        instance.client_operation_id = current_operation_id.get() or ""
        session = instance.session
        # Refuses (TurnInProgress, 409) or interrupts per the agent's policy, before anything is
        # written. ExposedModel.create runs this in one transaction: the policy's lock on the
        # session's row is held until the message is committed.
        apply_concurrency_policy(session, get_agent(session.agent_path))
        instance.save()
        files = many.get("files") or []
        if files:
            instance.files.set(files)
            for row in files:
                if row.session_id is None:
                    # Saved one by one (at most 20) so each sends its model_change after commit.
                    row.session = session
                    row.save(update_fields=["session", "updated_at"])


class ExposedWidget(_BuiltinExposed):
    model = ConversationWidget
    name = BuiltinModel.WIDGET
    permission_classes = (IsOwner(path="session"), OnlyActions(BridgeAction.READ, BridgeAction.UPDATE))
    read_fields = ("id", "session", "message", "widget_type", "data", "display_data", "created_at", "updated_at")
    update_fields = ("display_data",)
    filterset_class = WidgetFilterSet
    orderings = ("created_at", "updated_at")
    default_ordering = ("created_at",)
    relations = {"session": BuiltinModel.SESSION, "message": BuiltinModel.MESSAGE}

    def validate_write(self, request: Request, action: str, data: dict[str, Any], instance: Any) -> dict[str, Any]:
        if "display_data" in data and not isinstance(data["display_data"], dict):
            raise FieldNotAllowed("display_data must be a JSON object.", code=ErrorCode.INVALID, field="display_data")
        return data


class ExposedFile(_BuiltinExposed):
    model = File
    name = BuiltinModel.FILE
    permission_classes = (IsOwner(), OnlyActions(BridgeAction.READ, BridgeAction.DELETE))
    read_fields = (
        "id",
        "session",
        "filename",
        "content_type",
        "size",
        "extraction_status",
        "extraction_error",
        "extracted_text",
        "extracted_text_truncated",
        "extracted_at",
        "created_at",
        "updated_at",
    )
    # The extracted text can be large: sent only when a query names it in ``fields``.
    default_fields = (
        "id",
        "session",
        "filename",
        "content_type",
        "size",
        "extraction_status",
        # Why extraction failed, in words a person understands (empty otherwise).
        "extraction_error",
        "extracted_text_truncated",
        "extracted_at",
        "created_at",
        "updated_at",
    )
    filterset_class = FileFilterSet
    orderings = ("created_at", "filename", "size")
    default_ordering = ("-created_at",)
    relations = {"session": BuiltinModel.SESSION}

    def get_change_channels(self, request: Request | None, instance: Any) -> list[str]:
        # The owner's channel: a file is theirs before it joins a conversation.
        channels = [owner_channel(user_id=instance.user_id, anonymous_id=instance.anonymous_id)]
        if instance.session_id:
            channels.append(session_channel(instance.session_id))
        return [c for c in channels if c]

    def perform_delete(self, request: Request, instance: Any) -> None:
        stored = instance.file
        storage, name = (stored.storage, stored.name) if stored else (None, "")
        instance.delete()
        if storage is not None and name:
            # The bytes go only when the row is gone for good.
            transaction.on_commit(lambda: storage.delete(name), robust=True)


def builtin_exposed_models() -> list[ExposedModel]:
    return [ExposedSession(), ExposedMessage(), ExposedWidget(), ExposedFile()]
