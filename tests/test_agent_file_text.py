"""``get_file_text`` and ``wait_for_file_text`` from an agent: pending and failed files, an
extraction that ends during the turn, the wait for attached files bounded by the turn's timeout,
and only the owner's files."""

from __future__ import annotations

import time

import pytest

from django_ai.conversations import ConversationAgent, register_agent
from django_ai.conversations.context import get_file_text, wait_for_file_text
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FileFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.django_db
def test_get_file_text_is_none_while_pending_or_failed(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path

    class Reader(ConversationAgent):
        file_wait_timeout = 0  # runs at once: the pending file is never extracted here

        async def get_response(self, message, request=None, **kwargs):
            return repr([get_file_text(f.id) for f in self.files])

    user = UserFactory()
    register_agent("under-test", Reader)
    session = ConversationService.create_session("under-test", user=user)
    done, pending, failed = (
        FileFactory(user=user, text="done text"),
        FileFactory(user=user),
        FileFactory(user=user, failed=True),
    )
    result = ConversationService.send_message(session.id, "read", user=user, files=[done, pending, failed])
    assert result["response"] == repr(["done text", None, None])


@pytest.mark.django_db
def test_get_file_text_sees_extraction_that_finished_during_the_turn(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    from django_ai.conversations.models import File

    class Late(ConversationAgent):
        file_wait_timeout = 0  # runs while the file is pending; the agent finishes its extraction

        def get_response(self, message, request=None, **kwargs):
            file = self.files[0]
            before = get_file_text(file.id)
            File.objects.filter(pk=file.pk).update(extraction_status="done", extracted_text="arrived")
            return f"{before}|{get_file_text(file.id)}|{wait_for_file_text(file.id, timeout=1)}"

    user = UserFactory()
    register_agent("under-test", Late)
    session = ConversationService.create_session("under-test", user=user)
    file = FileFactory(user=user)
    assert (
        ConversationService.send_message(session.id, "x", user=user, files=[file])["response"] == "None|arrived|arrived"
    )


def test_the_wait_for_attached_files_ends_at_the_turn_timeout(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    calls = []

    class Patient(ConversationAgent):
        turn_timeout = 0.5  # far below FILE_WAIT_TIMEOUT (60 s): the turn's timeout ends the wait

        async def get_response(self, message, request=None, **kwargs):
            calls.append(message)
            return "never"

    user = UserFactory()
    register_agent("under-test", Patient)
    session = ConversationService.create_session("under-test", user=user)
    started = time.monotonic()
    result = ConversationService.send_message(session.id, "read", user=user, files=[FileFactory(user=user)])
    assert time.monotonic() - started < 30
    assert result["status"] == "error" and calls == []
    notice = session.messages.get(message_type="system")
    assert notice.metadata["code"] == "turn_timeout"


@pytest.mark.django_db
def test_get_file_text_only_reaches_the_owners_files(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    from django_ai.conversations.exceptions import FileNotFound

    class Snooping(ConversationAgent):
        async def get_response(self, message, request=None, **kwargs):
            try:
                return str(get_file_text(message))
            except FileNotFound as exc:
                return exc.code

    owner, stranger = UserFactory(), UserFactory()
    mine = FileFactory(user=owner, text="mine")
    theirs = FileFactory(user=stranger, text="theirs")
    register_agent("under-test", Snooping)
    session = ConversationService.create_session("under-test", user=owner)
    answers = [
        ConversationService.send_message(session.id, m, user=owner)["response"]
        for m in (str(mine.id), str(theirs.id), "not-an-id")
    ]
    assert answers == ["mine", "file_not_found", "file_not_found"]
