"""The built-in exposed models: ``session``, ``message``, ``widget`` and ``file``.

Owners (users, or anonymous visitors by their id) see and act only on their own conversations:

- ``session``: read; rename (``title``) or archive (``status`` = ``archived``). Sessions are
  started with ``POST start/`` (the agent builds the context), never created here; context,
  metadata, owner and turn bookkeeping are neither readable nor writable.
- ``message``: read; create a *user* message (``session``, ``content``, optional ``files``) in an
  active session of theirs. Type and status are forced (``user``, ``pending``); the turn starts
  when the row commits.
- ``widget``: read; change ``display_data`` (presentation state), never ``data``.
- ``file``: read (the extracted text only when asked for with ``fields``); delete their own files
  (the stored file goes once the deletion commits). Uploads go through ``POST files/``.

Replace one with ``bridge_registry.register(...)`` under the same name, e.g. to add ``IsStaff``.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from ..constants import BridgeAction, MessageType, ProcessingStatus, SessionStatus
from ..exceptions import InvalidMessage, SessionNotActive, TurnInProgress
from ..models import ConversationMessage, ConversationSession, ConversationWidget, File
from .errors import FieldNotAllowed, ObjectNotFound, OperationIdReused
from .permissions import IsOwner, OnlyActions
from .registry import ExposedModel

__all__ = [
    "SessionFilterSet",
    "MessageFilterSet",
    "WidgetFilterSet",
    "FileFilterSet",
    "ExposedSession",
    "ExposedMessage",
    "ExposedWidget",
    "ExposedFile",
    "builtin_exposed_models",
]

RANGE = ["gt", "gte", "lt", "lte"]


class SessionFilterSet(django_filters.FilterSet):
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
    """The built-in models announce every change from model signals (realtime/sync.py), writes
    through the bridge included; the bridge adds no second ``model_change``."""

    def get_change_channels(self, request: Any, instance: Any) -> list[str]:
        return []


class ExposedSession(_BuiltinExposed):
    model = ConversationSession
    name = "session"
    permission_classes = (IsOwner(), OnlyActions(BridgeAction.READ, BridgeAction.UPDATE))
    read_fields = ("id", "agent_path", "title", "status", "created_at", "updated_at", "last_message_at")
    update_fields = ("title", "status")
    filterset_class = SessionFilterSet
    orderings = ("updated_at", "created_at", "last_message_at", "title")
    default_ordering = ("-updated_at",)

    #: Statuses an owner may set: archiving is allowed, anything else is the server's business.
    settable_statuses = frozenset({SessionStatus.ARCHIVED})

    def validate_write(self, request: Any, action: str, data: dict[str, Any], instance: Any) -> dict[str, Any]:
        status = data.get("status")
        if status is not None and status != getattr(instance, "status", None) and status not in self.settable_statuses:
            raise FieldNotAllowed(
                f"A conversation can only be set to {', '.join(sorted(self.settable_statuses))}.",
                code="invalid_status",
                field="status",
            )
        return data


class ExposedMessage(_BuiltinExposed):
    model = ConversationMessage
    name = "message"
    permission_classes = (IsOwner(path="session"), OnlyActions(BridgeAction.READ, BridgeAction.CREATE))
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
        "timestamp",
        "updated_at",
    )
    create_fields = ("session", "content", "files")
    filterset_class = MessageFilterSet
    orderings = ("timestamp", "updated_at")
    default_ordering = ("timestamp",)
    relations = {"session": "session", "files": "file", "reply_to": "message"}

    def get_create_defaults(self, request: Any, data: dict[str, Any]) -> dict[str, Any]:
        # Whatever the client sent: a user message, waiting for its turn.
        return {"message_type": MessageType.USER, "processing_status": ProcessingStatus.PENDING}

    def validate_write(self, request: Any, action: str, data: dict[str, Any], instance: Any) -> dict[str, Any]:
        from ..service import ConversationService

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

    def create(self, request: Any, data: Any) -> Any:
        """Create a user message; idempotent on the request's ``X-Operation-Id``.

        A client whose create answer was lost (a dropped connection) sends the same request again
        with the same operation id: it gets the message stored the first time (status 200, and
        no second turn) instead of a duplicate. The same id with other content is a 409.
        """
        from ..realtime.sync import current_operation_id

        operation_id = current_operation_id.get()
        if operation_id:
            replayed = self._replayed(request, data, operation_id)
            if replayed is not None:
                return replayed
        try:
            return super().create(request, data)
        except (IntegrityError, TurnInProgress):
            # Two requests with the same id at the same moment: the other one stored it first
            # (seen as the unique constraint, or as the turn it started under a reject policy).
            replayed = self._replayed(request, data, operation_id) if operation_id else None
            if replayed is None:
                raise
            return replayed

    def _replayed(self, request: Any, data: Any, operation_id: str) -> Any:
        from ..service import ConversationService

        session = data.get("session") if isinstance(data, dict) else None
        if not isinstance(session, str):
            return None
        try:
            existing = ConversationMessage.objects.filter(
                session_id=session, client_operation_id=operation_id, message_type=MessageType.USER
            ).first()
        except (ValueError, DjangoValidationError):
            return None  # not a uuid: the normal validation says so
        if existing is None:
            return None
        # The same visitor's conversation only: for anyone else the create goes on and is refused
        # as it would be without the id (they learn nothing about it).
        try:
            existing = self.get_object(request, BridgeAction.READ, str(existing.pk))
        except ObjectNotFound:
            return None
        try:
            content = ConversationService._clean_message(data.get("content", ""))
        except InvalidMessage:
            content = None
        files = data.get("files") or []
        same_files = isinstance(files, list) and sorted(map(str, files)) == sorted(str(pk) for pk in existing.files.values_list("pk", flat=True))
        if content != existing.content or not same_files:
            raise OperationIdReused(
                "This X-Operation-Id was already used for another message in this conversation; "
                "use a new id for a new message.",
            )
        existing._bridge_replayed = True
        return existing

    def perform_create(self, request: Any, instance: Any, many: dict[str, Any]) -> None:
        from ..realtime.sync import current_operation_id
        from ..registry import registry as agent_registry
        from ..service import ConversationService

        instance.client_operation_id = current_operation_id.get() or ""
        session = instance.session
        # Refuses (TurnInProgress, 409) or interrupts per the agent's policy, before anything is
        # written. ExposedModel.create runs this in one transaction: the policy's lock on the
        # session's row is held until the message is committed.
        ConversationService.apply_concurrency_policy(session, agent_registry.get(session.agent_path))
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
    name = "widget"
    permission_classes = (IsOwner(path="session"), OnlyActions(BridgeAction.READ, BridgeAction.UPDATE))
    read_fields = ("id", "session", "message", "widget_type", "data", "display_data", "created_at", "updated_at")
    update_fields = ("display_data",)
    filterset_class = WidgetFilterSet
    orderings = ("created_at", "updated_at")
    default_ordering = ("created_at",)
    relations = {"session": "session", "message": "message"}

    def validate_write(self, request: Any, action: str, data: dict[str, Any], instance: Any) -> dict[str, Any]:
        if "display_data" in data and not isinstance(data["display_data"], dict):
            raise FieldNotAllowed("display_data must be a JSON object.", code="invalid", field="display_data")
        return data


class ExposedFile(_BuiltinExposed):
    model = File
    name = "file"
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
    relations = {"session": "session"}

    def perform_delete(self, request: Any, instance: Any) -> None:
        stored = instance.file
        storage, name = (stored.storage, stored.name) if stored else (None, "")
        instance.delete()
        if storage is not None and name:
            # The bytes go only when the row is gone for good.
            transaction.on_commit(lambda: storage.delete(name), robust=True)


def builtin_exposed_models() -> list[ExposedModel]:
    return [ExposedSession(), ExposedMessage(), ExposedWidget(), ExposedFile()]
