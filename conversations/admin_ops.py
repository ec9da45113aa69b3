"""The operations view of the admin (docs/observability.md, "The operations view in the admin").

One page for staff: the turns running now, the turns that failed in the last hour (their generic
error and the ``error_id`` their log record and notice share, linked with ``LOG_LINK_TEMPLATE``),
the leases whose heartbeat stopped (a dead worker's), and the files stuck in extraction, with the
existing actions beside them: answer failed messages again (``turns.scheduling.rerun_messages``),
extract files again (``files.extraction.tasks.reextract``), and run the stale-turn sweep now
(``turns.sweeps.recover_now``). Each list shows at most :data:`ROWS` rows and costs one query.

``admin.py`` mounts it under the session admin's URLs (:func:`operations_urls`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.db.models import DateTimeField, F, Q, QuerySet
from django.db.models.functions import Now
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from .conf import ai_settings
from .constants import ExtractionStatus, MessageType, ProcessingStatus
from .files.extraction.tasks import reextract
from .models import ConversationMessage, ConversationSession, File
from .turns.lease import stale_before
from .turns.scheduling import rerun_messages
from .turns.sweeps import recover_now

__all__ = ["EXTRACTION_MARGIN", "FAILED_WINDOW", "ROWS", "URL_NAME", "operations_urls", "operations_view"]

#: Rows each list shows at most.
ROWS = 100
#: How far back the failed turns go.
FAILED_WINDOW = timedelta(hours=1)
#: Seconds beyond ``EXTRACTION_TIMEOUT`` after which a pending or running extraction counts as stuck.
EXTRACTION_MARGIN = 60
#: The view's URL name, in the admin site's namespace (``admin:<URL_NAME>``).
URL_NAME = "django_ai_conversations_operations"

_APP = ConversationSession._meta.app_label
_PERMISSIONS = {
    "rerun": f"{_APP}.change_conversationmessage",
    "reextract": f"{_APP}.change_file",
    "recover": f"{_APP}.change_conversationsession",
}


def operations_urls(site: AdminSite) -> list[URLPattern]:
    """The view's URL (``operations/``), behind the site's staff login."""
    return [path("operations/", site.admin_view(_view_for(site)), name=URL_NAME)]


def _view_for(site: AdminSite) -> Any:
    def view(request: HttpRequest) -> HttpResponse:
        return operations_view(request, site)

    return view


def operations_view(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """GET: the four lists; POST (``action`` = rerun, reextract or recover): the action, a message
    saying what it did, and back to the page."""
    user: Any = request.user
    if not (user.has_perm(f"{_APP}.view_conversationmessage") or user.has_perm(_PERMISSIONS["rerun"])):
        raise PermissionDenied
    if request.method == "POST":
        _act(request)
        return HttpResponseRedirect(request.path)
    # One query each, ROWS + 1 rows at most (the last one only tells that there are more).
    lists = {"running": _running(), "stale": _stale(), "failed": _failed(), "stuck": _stuck()}
    context = {
        **site.each_context(request),
        "title": "Operations",
        **{name: rows[:ROWS] for name, rows in lists.items()},
        # A list with more rows than it shows says so.
        "more": {name: len(rows) > ROWS for name, rows in lists.items()},
        "stale_after": ai_settings.STALE_TURN_TIMEOUT,
        "stuck_after": _stuck_after(),
        "may": {action: user.has_perm(permission) for action, permission in _PERMISSIONS.items()},
    }
    return TemplateResponse(request, "admin/django_ai_conversations/operations.html", context)


def _with_db_now(queryset: QuerySet[Any]) -> QuerySet[Any]:
    # Heartbeats are written with the database's clock (turns.lease): ages are measured with it too.
    return queryset.annotate(db_now=Now(output_field=DateTimeField()))


def _age(now: Any, then: Any) -> int | None:
    return None if then is None else max(int((now - then).total_seconds()), 0)


def _running() -> list[dict[str, Any]]:
    """User messages being answered by a turn that holds its conversation's lease and is alive."""
    rows = _with_db_now(
        ConversationMessage.objects.filter(
            message_type=MessageType.USER,
            processing_status=ProcessingStatus.PROCESSING,  # the convmsg_unfinished index
            session__active_turn=F("pk"),
            session__turn_heartbeat_at__gte=stale_before(ai_settings.STALE_TURN_TIMEOUT),
        )
        .exclude(session__turn_token="")
        .select_related("session")
        .only("id", "started_at", "session__id", "session__agent_path", "session__turn_heartbeat_at")
        .order_by("started_at")
    )[: ROWS + 1]
    return [
        {
            "message": row,
            "session": row.session,
            "heartbeat_age": _age(row.db_now, row.session.turn_heartbeat_at),
        }
        for row in rows
    ]


def _stale() -> list[dict[str, Any]]:
    """Leases whose heartbeat is older than STALE_TURN_TIMEOUT (or missing): what the sweep recovers."""
    stale = Q(turn_heartbeat_at__lt=stale_before(ai_settings.STALE_TURN_TIMEOUT)) | Q(turn_heartbeat_at__isnull=True)
    rows = (
        _with_db_now(ConversationSession.objects.exclude(turn_token="").filter(stale))
        .only("id", "agent_path", "active_turn", "turn_heartbeat_at")
        .order_by(F("turn_heartbeat_at").asc(nulls_first=True))
    )[: ROWS + 1]
    return [{"session": row, "heartbeat_age": _age(row.db_now, row.turn_heartbeat_at)} for row in rows]


def _failed() -> list[dict[str, Any]]:
    """The failures of the last hour: the system notices of failed turns, newest first."""
    rows = (
        ConversationMessage.objects.filter(
            message_type=MessageType.SYSTEM,
            reply_to__isnull=False,
            timestamp__gte=timezone.now() - FAILED_WINDOW,
        )
        .select_related("session", "reply_to")
        # Not the rows' JSON (Context snapshots) nor the user's text: what the list shows.
        .only(
            "id",
            "timestamp",
            "content",
            "metadata",
            "session__id",
            "session__agent_path",
            "reply_to__id",
            "reply_to__processing_status",
        )
        .order_by("-timestamp")
    )[: ROWS + 1]
    template = ai_settings.LOG_LINK_TEMPLATE
    failed = []
    for notice in rows:
        metadata = notice.metadata if isinstance(notice.metadata, dict) else {}
        error_id = str(metadata.get("error_id") or "")
        user_message = notice.reply_to
        failed.append(
            {
                "notice": notice,
                "session": notice.session,
                "user_message": user_message,
                "code": str(metadata.get("code") or ""),
                "error_id": error_id,
                "log_link": template.format(error_id=error_id) if template and error_id else "",
                # Answered again since (re-run, or a retry): nothing to re-run.
                "may_rerun": user_message is not None and user_message.processing_status == ProcessingStatus.FAILED,
            }
        )
    return failed


def _stuck_after() -> int:
    return int(ai_settings.EXTRACTION_TIMEOUT) + EXTRACTION_MARGIN


def _stuck_files(now: Any = None) -> QuerySet[File]:
    """Files pending or being extracted for longer than EXTRACTION_TIMEOUT plus a margin."""
    return File.objects.filter(
        extraction_status__in=[ExtractionStatus.PENDING, ExtractionStatus.PROCESSING],
        updated_at__lt=(now or timezone.now()) - timedelta(seconds=_stuck_after()),
    )


def _stuck() -> list[dict[str, Any]]:
    """Files pending or being extracted for longer than EXTRACTION_TIMEOUT plus a margin."""
    now = timezone.now()
    rows = (
        _stuck_files(now)
        .only("id", "filename", "content_type", "extraction_status", "updated_at", "session_id")
        .order_by("updated_at")
    )[: ROWS + 1]
    return [{"file": row, "age": _age(now, row.updated_at)} for row in rows]


def _ids(request: HttpRequest) -> list[uuid.UUID]:
    ids = []
    for value in request.POST.getlist("ids"):
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            continue
    return ids


def _act(request: HttpRequest) -> None:
    action = request.POST.get("action", "")
    if action not in _PERMISSIONS:
        messages.error(request, "Unknown action: nothing was done.")
        return
    user: Any = request.user
    if not user.has_perm(_PERMISSIONS[action]):
        raise PermissionDenied
    if action == "recover":
        done = recover_now()
        if done:
            summary = ", ".join(f"{item.action} {item.message_id}" for item in done[:10])
            more = f" and {len(done) - 10} more" if len(done) > 10 else ""
            messages.success(request, f"The stale-turn sweep ran: {len(done)} thing(s) done ({summary}{more}).")
        else:
            messages.info(request, "The stale-turn sweep ran: nothing to recover.")
        return
    ids = _ids(request)
    if not ids:
        messages.warning(request, "Nothing was selected: nothing was done.")
        return
    if action == "rerun":
        requeued = rerun_messages(ConversationMessage.objects.filter(pk__in=ids))
        if requeued:
            messages.success(request, f"{len(requeued)} message(s) queued to be answered again.")
        else:
            messages.warning(request, "None of the selected messages is still failed: nothing to re-run.")
        return
    # Only files still stuck (as the list shows them): not one a worker is extracting now, e.g.
    # the one a first click of the button just queued again.
    count = reextract(_stuck_files().filter(pk__in=ids))
    if count:
        messages.success(request, f"Text extraction of {count} file(s) was queued again.")
    else:
        messages.warning(request, "None of the selected files is still stuck in extraction: nothing to do.")
