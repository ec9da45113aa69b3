"""The admin's operations view (conversations/admin_ops.py): each list shows what it should and
not what it should not, its actions work through real admin requests (staff, the permission of
each action, CSRF), others are sent to the login page, and the page's queries do not grow with
its rows. The failures it lists carry the error_id their log record has (LOG_LINK_TEMPLATE makes
it a link), and the setting is checked."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_ai.conversations.admin_ops import EXTRACTION_MARGIN, ROWS
from django_ai.conversations.checks import check_settings
from django_ai.conversations.constants import ExtractionStatus, MessageType, ProcessingStatus
from django_ai.conversations.models import ConversationMessage, ConversationSession, File
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import (
    FileFactory,
    MessageFactory,
    SessionFactory,
    UserFactory,
    isolated_registry,
    wait_until,
)

from .turns_support import AGENTS, IMMEDIATE, ai_settings, status_of

URL = "/admin/django_ai_conversations/conversationsession/operations/"


@pytest.fixture(autouse=True)
def _setup():
    with isolated_registry(AGENTS), override_settings(TASKS=IMMEDIATE), ai_settings(IN_PROCESS_TURN_THREADS=0):
        yield


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def _running_turn(heartbeat_age=0, started_age=10):
    """A turn whose worker holds the lease (a heartbeat ``heartbeat_age`` seconds old)."""
    session = SessionFactory(agent_path="slow")
    message = MessageFactory(
        session=session,
        processing_status=ProcessingStatus.PROCESSING,
        started_at=timezone.now() - timedelta(seconds=started_age),
        attempts=1,
    )
    ConversationSession.objects.filter(pk=session.pk).update(
        turn_token=f"token-{message.pk.hex[:8]}",
        active_turn=message.pk,
        turn_heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_age),
    )
    return session, message


def _failed_turn(path="failing"):
    """A turn that really failed (the failing agent raises): its notice has an error_id."""
    session = ConversationService.create_session(path)
    result = ConversationService.send_message(session.pk, "please fail")
    message = ConversationMessage.objects.get(pk=result["user_message_id"])
    assert message.processing_status == ProcessingStatus.FAILED
    return session, message, message.replies.get(message_type=MessageType.SYSTEM)


def _stuck_file(status=ExtractionStatus.PENDING, age=None, **fields):
    file = FileFactory(filename=f"{status}-{age}.txt", content_type="text/plain", **fields)
    age = 120 + EXTRACTION_MARGIN + 30 if age is None else age
    File.objects.filter(pk=file.pk).update(extraction_status=status, updated_at=timezone.now() - timedelta(seconds=age))
    return file


def _rows(page: str, kind: str) -> list[str]:
    return re.findall(rf'<tr class="{kind}">(.*?)</tr>', page, re.S)


def _page(client) -> str:
    response = client.get(URL)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_each_list_shows_what_it_should_and_not_what_it_should_not(staff):
    running_session, running = _running_turn(heartbeat_age=0)
    stale_session, stale = _running_turn(heartbeat_age=600)
    _, failed, notice = _failed_turn()
    # Not a failure of the last hour: an old notice.
    _, old_failed, old_notice = _failed_turn()
    ConversationMessage.objects.filter(pk=old_notice.pk).update(timestamp=timezone.now() - timedelta(hours=2))
    ok = ConversationService.send_message(ConversationService.create_session("quick-echo").pk, "hi")
    stuck = _stuck_file(ExtractionStatus.PENDING)
    stuck_running = _stuck_file(ExtractionStatus.PROCESSING)
    recent = _stuck_file(ExtractionStatus.PENDING, age=5)
    done_long_ago = _stuck_file(ExtractionStatus.DONE)

    page = _page(staff)

    running_rows = _rows(page, "running-turn")
    assert len(running_rows) == 1
    assert str(running.pk) in running_rows[0] and str(running_session.pk) in running_rows[0]
    assert "slow" in running_rows[0]
    assert str(stale.pk) not in "".join(running_rows) and ok["user_message_id"] not in "".join(running_rows)

    stale_rows = _rows(page, "stale-lease")
    assert len(stale_rows) == 1
    assert str(stale_session.pk) in stale_rows[0] and str(stale.pk) in stale_rows[0]
    assert re.search(r">\s*6\d\d s<", stale_rows[0])  # its heartbeat's age (600 s and the test's own time)
    assert str(running_session.pk) not in "".join(stale_rows)

    failed_rows = _rows(page, "failed-turn")
    assert len(failed_rows) == 1
    (row,) = failed_rows
    assert str(failed.pk) in row and "failing" in row
    assert notice.content in row and "agent_error" in row
    assert notice.metadata["error_id"] and f"<code>{notice.metadata['error_id']}</code>" in row
    assert f'value="{failed.pk}"' in row  # may be re-run
    assert str(old_failed.pk) not in page

    stuck_rows = "".join(_rows(page, "stuck-file"))
    assert len(_rows(page, "stuck-file")) == 2
    assert str(stuck.pk) in stuck_rows and str(stuck_running.pk) in stuck_rows
    assert str(recent.pk) not in stuck_rows and str(done_long_ago.pk) not in stuck_rows


@pytest.mark.django_db(transaction=True)
def test_empty_lists_say_so(staff):
    page = _page(staff)
    for text in (
        "No turn is running.",
        "No turn failed in the last hour.",
        "No stale lease.",
        "No file is stuck in extraction.",
    ):
        assert text in page


@pytest.mark.django_db(transaction=True)
def test_the_log_record_and_the_notice_share_the_error_id_and_the_link_template_makes_it_a_link(staff, caplog):
    caplog.set_level(logging.ERROR, logger="django_ai.conversations.turns")
    _, failed, notice = _failed_turn()
    error_id = notice.metadata["error_id"]
    assert re.fullmatch(r"[0-9a-f]{12}", error_id)
    records = [r for r in caplog.records if getattr(r, "error_id", None) == error_id]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert records[0].exc_info is not None  # the full traceback is in the log, not in the notice
    assert "the model is down" not in notice.content

    with ai_settings(LOG_LINK_TEMPLATE="https://logs.example.com/?q={error_id}&amp=1"):
        row = _rows(_page(staff), "failed-turn")[0]
    assert f'href="https://logs.example.com/?q={error_id}&amp;amp=1"' in row


@pytest.mark.django_db(transaction=True)
def test_a_timed_out_turn_and_a_recovered_one_have_their_error_id_too(staff, caplog):
    caplog.set_level(logging.WARNING, logger="django_ai.conversations.turns")
    with ai_settings(TURN_TIMEOUT=0.3, TURN_CANCEL_GRACE=0.5):
        session = ConversationService.create_session("polite")
        message_id = ConversationService.send_message(session.pk, "wait")["user_message_id"]
    timeout_notice = ConversationMessage.objects.get(reply_to_id=message_id, message_type=MessageType.SYSTEM)
    assert timeout_notice.metadata["code"] == "turn_timeout"
    assert any(getattr(r, "error_id", None) == timeout_notice.metadata["error_id"] for r in caplog.records)

    stale_session, stale = _running_turn(heartbeat_age=600)
    response = staff.post(URL, {"action": "recover"}, follow=True)
    assert "The stale-turn sweep ran: 1 thing(s) done (failed " in response.content.decode()
    recovered_notice = ConversationMessage.objects.get(reply_to=stale, message_type=MessageType.SYSTEM)
    assert recovered_notice.metadata["code"] == "turn_interrupted"
    (record,) = [r for r in caplog.records if getattr(r, "error_id", None) == recovered_notice.metadata["error_id"]]
    assert record.message_id == str(stale.pk) and record.conversation_id == str(stale_session.pk)

    page = response.content.decode()
    failed_rows = "".join(_rows(page, "failed-turn"))
    assert timeout_notice.metadata["error_id"] in failed_rows and recovered_notice.metadata["error_id"] in failed_rows
    assert "No stale lease." in page


@pytest.mark.django_db(transaction=True)
def test_rerun_action_answers_the_selected_failed_messages_again(staff):
    _, failed, _ = _failed_turn()
    AGENTS_FIXED = {**AGENTS, "failing": AGENTS["quick-echo"]}  # the agent works again
    with isolated_registry(AGENTS_FIXED):
        response = staff.post(URL, {"action": "rerun", "ids": [str(failed.pk), "not-a-uuid"]}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain == [(URL, 302)]
    assert "1 message(s) queued to be answered again." in response.content.decode()
    assert status_of(failed) == ProcessingStatus.COMPLETED
    response = staff.post(URL, {"action": "rerun", "ids": [str(failed.pk)]}, follow=True)
    assert "None of the selected messages is still failed: nothing to re-run." in response.content.decode()
    response = staff.post(URL, {"action": "rerun"}, follow=True)
    assert "Nothing was selected: nothing was done." in response.content.decode()
    response = staff.post(URL, {"action": "drop-tables"}, follow=True)
    assert "Unknown action: nothing was done." in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_reextract_action_extracts_stuck_files_again(staff, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    stuck = _stuck_file(ExtractionStatus.PROCESSING)
    with ai_settings(TEXT_EXTRACTOR="django_ai.conversations.files.extraction.plain.PlainTextExtractor"):
        response = staff.post(URL, {"action": "reextract", "ids": [str(stuck.pk)]}, follow=True)
        assert "Text extraction of 1 file(s) was queued again." in response.content.decode()
        wait_until(lambda: File.objects.get(pk=stuck.pk).extraction_status == ExtractionStatus.DONE)
    assert File.objects.get(pk=stuck.pk).text == "Hello from a test file."
    response = staff.post(URL, {"action": "reextract", "ids": [str(stuck.pk)]}, follow=True)
    assert "None of the selected files is still stuck in extraction" in response.content.decode()
    assert "No file is stuck in extraction." in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_reextract_action_leaves_a_file_that_is_not_stuck_alone(staff, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    # Being extracted for 5 s (e.g. queued again by a first click of the button a moment ago).
    busy = _stuck_file(ExtractionStatus.PROCESSING, age=5)
    before = File.objects.get(pk=busy.pk).updated_at
    response = staff.post(URL, {"action": "reextract", "ids": [str(busy.pk)]}, follow=True)
    assert "None of the selected files is still stuck in extraction: nothing to do." in response.content.decode()
    after = File.objects.get(pk=busy.pk)
    assert (after.extraction_status, after.updated_at) == (ExtractionStatus.PROCESSING, before)


@pytest.mark.django_db(transaction=True)
def test_actions_need_the_csrf_token():
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    _, stale = _running_turn(heartbeat_age=600)
    assert client.post(URL, {"action": "recover"}).status_code == 403
    assert status_of(stale) == ProcessingStatus.PROCESSING
    page = client.get(URL).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(URL, {"action": "recover", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert status_of(stale) == ProcessingStatus.FAILED


@pytest.mark.django_db
def test_others_are_sent_to_the_login_page_and_staff_need_the_permissions(client):
    login = reverse("admin:login")
    response = client.get(URL)
    assert response.status_code == 302 and response.url.startswith(login)
    client.force_login(UserFactory(is_staff=False))
    response = client.get(URL)
    assert response.status_code == 302 and response.url.startswith(login)
    response = client.post(URL, {"action": "recover"})
    assert response.status_code == 302 and response.url.startswith(login)

    # Staff without a permission on messages: refused.
    viewer = UserFactory(is_staff=True)
    client.force_login(viewer)
    assert client.get(URL).status_code == 403
    # With the view permission: the lists, without the actions.
    viewer.user_permissions.add(Permission.objects.get(codename="view_conversationmessage"))
    client.force_login(viewer)
    _, stale = _running_turn(heartbeat_age=600)
    page = _page(client)
    assert len(_rows(page, "stale-lease")) == 1
    assert 'value="recover"' not in page and 'value="rerun"' not in page
    assert client.post(URL, {"action": "recover"}).status_code == 403
    assert status_of(stale) == ProcessingStatus.PROCESSING


@pytest.mark.django_db
def test_linked_from_the_app_index_and_the_conversations_list(staff):
    for page in (
        reverse("admin:app_list", kwargs={"app_label": "django_ai_conversations"}),
        reverse("admin:django_ai_conversations_conversationsession_changelist"),
    ):
        assert f'href="{URL}"' in staff.get(page).content.decode()


def _count_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        _page(client)
    return len(queries)


@pytest.mark.django_db(transaction=True)
def test_the_page_makes_a_fixed_number_of_queries_and_lists_at_most_rows_each(staff):
    _running_turn(heartbeat_age=0)
    _running_turn(heartbeat_age=600)
    _failed_turn()
    _stuck_file()
    few = _count_queries(staff)
    # The session and user of the admin request, then one query per list.
    assert few == 2 + 4, few
    for _ in range(3):
        _running_turn(heartbeat_age=0)
        _running_turn(heartbeat_age=600)
        _failed_turn()
        _stuck_file()
    assert _count_queries(staff) == few

    # At most ROWS rows a list; one more than that says there are more.
    File.objects.all().delete()
    old = timezone.now() - timedelta(hours=1)
    for count in (ROWS, 1):
        File.objects.bulk_create(
            [
                File(filename=f"bulk-{i}.txt", file="bulk.txt", extraction_status=ExtractionStatus.PENDING)
                for i in range(count)
            ]
        )
        File.objects.update(updated_at=old)
        page = _page(staff)
        assert len(_rows(page, "stuck-file")) == ROWS
        assert (f"({ROWS}+)" in page, f"({ROWS})" in page) == ((False, True) if count == ROWS else (True, False))


@pytest.mark.parametrize(
    ("template", "errors"),
    [
        (None, 0),
        ("https://logs.example.com/?q={error_id}", 0),
        ("https://logs.example.com/?q={{x}}&id={error_id}", 0),
        ("https://logs.example.com/", 1),
        ("https://logs.example.com/?q={error_id}&t={time}", 1),
        ("https://logs.example.com/?q={error_id}{", 1),
        ("https://logs.example.com/?q={error_id}&n={error_id.nothing}", 1),  # AttributeError
        (42, 1),
    ],
)
def test_log_link_template_is_checked(template, errors):
    with ai_settings(LOG_LINK_TEMPLATE=template):
        found = [e for e in check_settings() if e.id == "django_ai.E030"]
    assert len(found) == errors


@pytest.mark.django_db(transaction=True)
def test_a_turn_whose_agent_is_not_registered_has_an_error_id_too(staff, caplog):
    caplog.set_level(logging.ERROR, logger="django_ai.conversations.turns")
    session = SessionFactory(agent_path="not-registered-here")
    message = MessageFactory(session=session, content="hello?", processing_status=ProcessingStatus.PENDING)
    wait_until(lambda: status_of(message) == ProcessingStatus.FAILED)
    notice = ConversationMessage.objects.get(reply_to=message, message_type=MessageType.SYSTEM)
    assert notice.metadata["code"] == "agent_not_found"
    assert [r.levelno for r in caplog.records if getattr(r, "error_id", None) == notice.metadata["error_id"]] == [
        logging.ERROR
    ]
    assert notice.metadata["error_id"] in "".join(_rows(_page(staff), "failed-turn"))
