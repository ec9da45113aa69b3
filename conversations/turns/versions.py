"""Versions of a conversation: regenerate a reply, edit and resend a message, switch versions.

The bridge (``bridge/versions.py``) and ``ConversationService`` call these; docs/versions.md says
what each does.

The conversation is a tree of user messages: a user message's ``parent`` is the user message
before it on its path (filled in lazily by :func:`materialize_parents`), and the versions of a
message are the siblings that share its ``version_group``. The active path starts at the most
recently chosen root and follows, at each message, its most recently chosen child
(``selected_at``, else ``timestamp``). Rows on it have ``active=True``: the user messages and every
row whose ``reply_to`` is one of them (agent replies, tool steps, widget messages, notices); rows
with neither a path nor a ``reply_to`` (a greeting) are always active.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import router, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..constants import ErrorCode, MessageRevision, MessageType, ProcessingStatus, SessionStatus
from ..exceptions import InvalidInput, MessageNotFound, OperationIdReused, SessionNotActive, TurnInProgress
from ..messages import clean_message_text
from ..models import ConversationMessage, ConversationSession
from ..registry import registry
from .notify import send_path_change
from .policy import apply_concurrency_policy, supersede

__all__ = ["PathChange", "activate_version", "edit", "materialize_parents", "recompute_path", "regenerate"]


@dataclass
class PathChange:
    """What a change of the active path did: the rows that left it and joined it (all kinds, for
    ``model_change``), the user messages whose unfinished turns were superseded, and the Context
    (stored JSON) the new path ends with (None: unknown, the session's is left as it is)."""

    deactivated: list[Any] = field(default_factory=list)
    activated: list[Any] = field(default_factory=list)
    superseded: list[Any] = field(default_factory=list)
    end_context: dict[str, Any] | None = None


def materialize_parents(session_id: Any) -> None:
    """Give every active user message of the session sent since the last version change its
    ``parent`` (the active user message before it, in timestamp order). Call it under the
    session's lock, before any change of the path."""
    rows = (
        ConversationMessage.objects.filter(session_id=session_id, message_type=MessageType.USER, active=True)
        .order_by("timestamp", "id")
        .values_list("pk", "parent_id")
    )
    missing: list[ConversationMessage] = []
    previous = None
    for pk, parent_id in rows:
        if previous is not None and parent_id is None:
            missing.append(ConversationMessage(pk=pk, parent_id=previous))
        previous = pk
    if missing:
        ConversationMessage.objects.bulk_update(missing, ["parent"], batch_size=500)


def _chosen_at(row: tuple[Any, ...]) -> tuple[datetime, datetime, str]:
    # (selected_at or timestamp), then the newest, then the id: a total order among siblings.
    return (row[3] or row[4], row[4], str(row[0]))


def recompute_path(
    session: ConversationSession,
    *,
    with_context: bool = False,
    operation_id: str = "",
    also_changed: Iterable[Any] = (),
) -> PathChange:
    """Recompute the active path from ``selected_at`` and write the ``active`` flags that changed
    (user messages and their reply rows); unfinished turns of user messages that left the path are
    superseded (pending / awaiting approval: cancelled at once; running: asked to stop with reason
    ``"superseded"``). Inside the caller's transaction; events go on commit.

    ``with_context``: also find the Context the new path ends with (``PathChange.end_context``;
    one more query). ``also_changed``: more message ids for the one ``model_change`` sent (the
    siblings whose ``version_count`` a new version changed)."""
    rows = list(
        ConversationMessage.objects.filter(session=session, message_type=MessageType.USER)
        .order_by("timestamp", "id")
        .values_list("pk", "parent_id", "version_group", "selected_at", "timestamp", "active", "processing_status")
    )
    change = PathChange()
    path: list[Any] = []
    if rows:
        root_group = rows[0][2] or rows[0][0]
        roots = [r for r in rows if r[1] is None and (r[2] or r[0]) == root_group]
        children: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
        for row in rows:
            if row[1] is not None:
                children[row[1]].append(row)
        node: tuple[Any, ...] | None = max(roots, key=_chosen_at)
        seen: set[Any] = set()
        while node is not None and node[0] not in seen:
            seen.add(node[0])
            path.append(node[0])
            below = children.get(node[0])
            node = max(below, key=_chosen_at) if below else None
    on_path = set(path)
    leave = [r[0] for r in rows if r[5] and r[0] not in on_path]
    join = [r[0] for r in rows if not r[5] and r[0] in on_path]
    now = timezone.now()
    if leave:
        left = ConversationMessage.objects.filter(Q(pk__in=leave) | Q(reply_to__in=leave), session=session, active=True)
        change.deactivated = list(left.values_list("pk", flat=True))
        ConversationMessage.objects.filter(pk__in=change.deactivated).update(active=False, updated_at=now)
        unfinished = {ProcessingStatus.PENDING, ProcessingStatus.PROCESSING, ProcessingStatus.AWAITING_APPROVAL}
        busy = [r[0] for r in rows if r[0] in set(leave) and r[6] in unfinished]
        change.superseded = supersede(busy)
    if join:
        joined = ConversationMessage.objects.filter(
            Q(pk__in=join) | Q(reply_to__in=join), session=session, active=False
        )
        change.activated = list(joined.values_list("pk", flat=True))
        ConversationMessage.objects.filter(pk__in=change.activated).update(active=True, updated_at=now)
    if with_context and path:
        change.end_context = _end_context(path)
    send_path_change(session.pk, [*change.deactivated, *change.activated, *also_changed], operation_id=operation_id)
    return change


def _end_context(path: list[Any]) -> dict[str, Any] | None:
    """The Context a path ends with: from its end, the first message's ``context_after``, else its
    ``context_before`` (a turn that never ended); None when no message of the path has either."""
    rows = ConversationMessage.objects.filter(pk__in=path).values_list("pk", "context_before", "context_after")
    snapshots = {pk: (before, after) for pk, before, after in rows}
    for pk in reversed(path):
        before, after = snapshots.get(pk, (None, None))
        if after is not None:
            return after
        if before is not None:
            return before
    return None


def _message(message_id: Any) -> ConversationMessage:
    try:
        return ConversationMessage.objects.get(pk=message_id)
    except (ConversationMessage.DoesNotExist, DjangoValidationError, ValueError, TypeError) as exc:
        raise MessageNotFound(f"Message {message_id} does not exist.") from exc


def _user_message(message_id: Any) -> ConversationMessage:
    """The user message ``message_id`` names: itself, or the one it replies to."""
    row = _message(message_id)
    if row.message_type == MessageType.USER:
        return row
    if row.reply_to_id is not None:
        reply_to = ConversationMessage.objects.filter(pk=row.reply_to_id, message_type=MessageType.USER).first()
        if reply_to is not None:
            return reply_to
    raise InvalidInput(
        "This message answers no user message: name a user message, or a reply to one.",
        code=ErrorCode.NOT_A_USER_MESSAGE,
    )


def _lock(session_id: Any) -> ConversationSession:
    """Lock the conversation's row until the transaction ends and read it.

    Version operations, the concurrency policy and a turn's end (its ``renew_lease`` updates the
    row) are serialized by it."""
    using = router.db_for_write(ConversationSession)
    rows = ConversationSession.objects.using(using).filter(pk=session_id)
    if transaction.get_connection(using).features.has_select_for_update:
        return rows.select_for_update().get()
    # SQLite has no row locks: a write takes the database's write lock until the commit.
    rows.update(turn_token=F("turn_token"))
    return rows.get()


def _choose(session: ConversationSession, pk: Any, now: datetime) -> None:
    """Make the user message ``pk`` and the messages above it the most recently chosen among
    their siblings (``selected_at``), so the path runs through it: a version of a message off the
    path brings its own path back."""
    parents = dict(
        ConversationMessage.objects.filter(session=session, message_type=MessageType.USER).values_list(
            "pk", "parent_id"
        )
    )
    chain = [pk]
    while parents.get(chain[-1]) is not None and parents[chain[-1]] not in chain:
        chain.append(parents[chain[-1]])
    ConversationMessage.objects.filter(pk__in=chain).update(selected_at=now, updated_at=now)


def _starting_context(target: ConversationMessage) -> dict[str, Any] | None:
    """The ``context_before`` of a new version of ``target``: the Context its turn started from;
    for a message that never ran, the one the message before it ended with. Messages that never
    ran changed nothing: the walk goes up past them, and above them all it is the Context the
    conversation began with, the one its first turn that ran started from. None (the turn starts
    from the conversation's Context as it is then) when a message above has not ended yet (its end
    sets that Context), or ran before snapshots existed."""
    if target.context_before is not None:
        return target.context_before
    unfinished = {ProcessingStatus.PENDING, ProcessingStatus.PROCESSING, ProcessingStatus.AWAITING_APPROVAL}
    parent_id, seen = target.parent_id, set()
    while parent_id is not None and parent_id not in seen:
        seen.add(parent_id)
        row = (
            ConversationMessage.objects.filter(pk=parent_id)
            .values_list("parent_id", "attempts", "processing_status", "context_before", "context_after")
            .first()
        )
        if row is None:
            return None
        parent_id, attempts, status, before, after = row
        if after is not None:
            return after
        if status in unfinished:
            return None  # it runs, or will: its end sets the conversation's Context
        if attempts:
            return before  # it ended without its Context kept (crash recovery): its start
    first_run = (
        ConversationMessage.objects.filter(session_id=target.session_id, message_type=MessageType.USER, attempts__gt=0)
        .order_by("timestamp", "id")
        .values_list("context_before", flat=True)
        .first()
    )
    return first_run


def _new_version(
    message_id: Any,
    *,
    session: ConversationSession | None,
    operation_id: str,
    revision: MessageRevision,
    content: str | None = None,
    files: Iterable[Any] | None = None,
) -> ConversationMessage:
    target = _user_message(message_id)
    if session is not None and session.pk != target.session_id:
        raise MessageNotFound(f"Message {message_id} is not a message of conversation {session.pk}.")
    new_files = None if files is None else [getattr(f, "pk", f) for f in files]
    with transaction.atomic():
        locked = _lock(target.session_id)
        if session is not None:
            session.status, session.context = locked.status, locked.context
        session = locked
        if operation_id:
            # A retry of a request whose answer was lost: the version it made.
            done = ConversationMessage.objects.filter(
                session=session, message_type=MessageType.USER, client_operation_id=operation_id
            ).first()
            if done is not None:
                # The same request again: the same message, the same kind of version, the same
                # text and files. Anything else under this id is a client bug, refused as a
                # create's is.
                same = (
                    (done.version_group or done.pk) == (target.version_group or target.pk)
                    and done.revision == revision
                    and (content is None or done.content == content)
                    and (
                        new_files is None
                        or {str(pk) for pk in new_files} == {str(pk) for pk in done.files.values_list("pk", flat=True)}
                    )
                )
                if not same:
                    raise OperationIdReused(
                        "This X-Operation-Id was already used for another change in this conversation; "
                        "use a new id for a new request.",
                    )
                return done
        if session.status != SessionStatus.ACTIVE:
            raise SessionNotActive(f"Conversation {session.pk} is {session.status}; start a new one to continue.")
        apply_concurrency_policy(session, registry.get(session.agent_path))
        materialize_parents(session.pk)
        target.refresh_from_db()
        group = target.version_group or target.pk
        siblings = ConversationMessage.objects.filter(Q(pk=group) | Q(version_group=group), session=session)
        sibling_pks = list(siblings.values_list("pk", flat=True))
        count = len(sibling_pks) + 1
        now = timezone.now()
        ConversationMessage.objects.filter(pk=group, version_group__isnull=True).update(version_group=group)
        siblings.update(version_count=count, updated_at=now)
        context_before = _starting_context(target)
        version = ConversationMessage(
            session=session,
            message_type=MessageType.USER,
            content=target.content if content is None else content,
            processing_status=ProcessingStatus.PENDING,
            parent_id=target.parent_id,
            version_group=group,
            version_index=count,
            version_count=count,
            revision=revision,
            timestamp=now,
            selected_at=now,
            context_before=context_before,
            client_operation_id=operation_id,
        )
        # post_save (turns.hooks) schedules the conversation's turn when this commits.
        version.save()
        through = ConversationMessage.files.through
        if new_files is None:
            file_ids = list(
                through.objects.filter(conversationmessage_id=target.pk)
                .order_by("pk")
                .values_list("file_id", flat=True)
            )
        else:
            file_ids = new_files
        if file_ids:
            through.objects.bulk_create(
                [through(conversationmessage_id=version.pk, file_id=pk) for pk in dict.fromkeys(file_ids)]
            )
        if target.parent_id is not None and not target.active:
            # A version of a message off the path: the messages above it join the path with it.
            _choose(session, target.parent_id, now)
        recompute_path(session, operation_id=operation_id, also_changed=sibling_pks)
        if context_before is not None:
            session.context = context_before
            session.save(update_fields=["context", "updated_at"])
    return version


def regenerate(
    message_id: Any, *, session: ConversationSession | None = None, operation_id: str = ""
) -> ConversationMessage:
    """Answer a user message again (``message_id``: the user message, or any row replying to it)
    from the Context its turn started from: a new version of it (``revision="regenerate"``, same
    text and files) is created on the active path and its turn scheduled; the earlier reply and
    whatever followed it stay, as an inactive version. Applies the agent's concurrency policy.
    Ownership is the caller's business (the bridge's permission classes, the service's owner
    check). Returns the new user message (``pending``)."""
    return _new_version(message_id, session=session, operation_id=operation_id, revision=MessageRevision.REGENERATE)


def edit(
    message_id: Any,
    *,
    content: str,
    files: Iterable[Any] | None = None,
    session: ConversationSession | None = None,
    operation_id: str = "",
) -> ConversationMessage:
    """A new version of the user message ``message_id`` with ``content`` (and ``files``: None keeps
    the original's, a list replaces them), answered from the Context the original's turn started
    from. As :func:`regenerate` otherwise."""
    if _message(message_id).message_type != MessageType.USER:
        raise InvalidInput("Only a user message can be edited.", code=ErrorCode.NOT_A_USER_MESSAGE)
    return _new_version(
        message_id,
        session=session,
        operation_id=operation_id,
        revision=MessageRevision.EDIT,
        content=clean_message_text(content, field="content"),
        files=files,
    )


def activate_version(
    message_id: Any, *, session: ConversationSession | None = None, operation_id: str = ""
) -> ConversationMessage:
    """Make the version ``message_id`` (a user message, or a row replying to one) the active one:
    the path follows it (and below it, the versions last chosen there), and the session's Context
    becomes the one that path ends with. Refused with ``TurnInProgress`` while a turn of the
    conversation runs. Returns the user message."""
    target = _user_message(message_id)
    if session is not None and session.pk != target.session_id:
        raise MessageNotFound(f"Message {message_id} is not a message of conversation {session.pk}.")
    if target.active:
        return target
    with transaction.atomic():
        locked = _lock(target.session_id)
        running = ConversationMessage.objects.filter(
            session=locked, message_type=MessageType.USER, processing_status=ProcessingStatus.PROCESSING
        ).exists()
        if running or locked.active_turn is not None:
            raise TurnInProgress("A reply is being written in this conversation: switch versions once it ends.")
        materialize_parents(locked.pk)
        _choose(locked, target.pk, timezone.now())
        change = recompute_path(locked, with_context=True, operation_id=operation_id)
        if change.end_context is not None:
            locked.context = change.end_context
            locked.save(update_fields=["context", "updated_at"])
        if session is not None:
            session.context = locked.context
    target.refresh_from_db()
    return target
