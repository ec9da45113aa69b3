"""Uploaded files reach their owner's agent, and never anyone else.

End to end on the real stack: upload through ``POST files/`` (embedded Tika extracts the text),
then read, attach and extract through the bridge, ``ConversationService`` and agent turns.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from django_ai.conversations import ConversationAgent
from django_ai.conversations.context import get_file_text, wait_for_file_text
from django_ai.conversations.exceptions import FileNotFound
from django_ai.conversations.models import File
from django_ai.conversations.owners import new_anonymous_id
from django_ai.conversations.registry import register_agent
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import FileFactory, UserFactory, wait_for_turns
from tests.bridge_support import API, Api, error_codes, error_fields, rows, user_api
from tests.example_agents import FileAgent
from tests.fixtures.files import generate

FILES = Path(generate.__file__).parent

pytestmark = pytest.mark.django_db(transaction=True)


class PeekingAgent(ConversationAgent):
    """Tries to read a file by id (the id is the message)."""

    def get_response(self, message, request=None, **kwargs):
        try:
            return f"text: {get_file_text(message)}"
        except FileNotFound as exc:
            return f"refused: {exc.code}"


@pytest.fixture(autouse=True)
def setup(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    cache.clear()
    register_agent("files", FileAgent)  # the README's file example, word for word
    register_agent("peek", PeekingAgent)
    yield
    cache.clear()


def upload(api: Api, name: str) -> File:
    response = api.client.post(
        API + "files/", {"file": SimpleUploadedFile(name, (FILES / name).read_bytes())}, **api.headers
    )
    assert response.status_code == 201, response.json()
    # Extraction runs on the process's background task threads; the upload answered before it.
    wait_for_turns(timeout=60)
    return File.objects.get(pk=response.json()["data"])


def test_the_readme_agent_reads_uploaded_files_including_ocr():
    alice = UserFactory()
    api = user_api(alice)
    pdf, image, broken = upload(api, "report.pdf"), upload(api, "invoice.png"), upload(api, "corrupt.pdf")
    assert broken.extraction_status == "failed"
    session = ConversationService.create_session("files", user=alice)
    result = ConversationService.send_message(
        session.pk, "What is in these?", user=alice, files=[pdf.pk, image.pk, broken.pk]
    )
    # The broken file does not break the turn: it simply has no text.
    assert result["status"] == "success"
    assert result["response"].startswith("File analysis:\nFrom report.pdf: ")
    assert "seventeen percent" in result["response"]
    assert "From invoice.png: " in result["response"] and "4711" in result["response"]
    assert "corrupt.pdf" not in result["response"]
    # Attaching links the files to the conversation.
    assert set(File.objects.filter(session=session).values_list("pk", flat=True)) == {pdf.pk, image.pk, broken.pk}


def test_another_users_file_is_never_reachable():
    alice, bob = UserFactory(), UserFactory()
    secret = upload(user_api(alice), "report.pdf")
    assert secret.extraction_status == "done"
    bob_api = user_api(bob)

    # Reading through the bridge: not listed, not found by id, text not searchable.
    assert rows(bob_api.query("file"), "file") == []
    assert rows(bob_api.query("file", {"filter": {"id": str(secret.pk)}}), "file") == []
    assert rows(user_api(alice).query("file", {"filter": {"id": str(secret.pk)}}), "file")[0]["id"] == str(secret.pk)

    # Attaching through the bridge.
    bob_session = ConversationService.create_session("peek", user=bob)
    response = bob_api.create(
        "message", {"session": str(bob_session.pk), "content": "mine now", "files": [str(secret.pk)]}
    )
    assert response.status_code == 400 and error_fields(response) == ["files"]

    # Attaching through the service.
    with pytest.raises(FileNotFound):
        ConversationService.send_message(bob_session.pk, "mine now", user=bob, files=[secret.pk])
    assert not File.objects.get(pk=secret.pk).messages.exists()

    # Reading the text inside Bob's turn, by id.
    result = ConversationService.send_message(bob_session.pk, str(secret.pk), user=bob)
    assert result["response"] == "refused: file_not_found"
    alice_session = ConversationService.create_session("peek", user=alice)
    result = ConversationService.send_message(alice_session.pk, str(secret.pk), user=alice)
    assert "seventeen percent" in result["response"]

    # Deleting through the bridge.
    response = bob_api.delete("file", secret.pk)
    assert response.status_code == 404 and error_codes(response) == ["not_found"]
    assert File.objects.filter(pk=secret.pk).exists()


def test_another_visitors_file_is_never_reachable():
    visitor, stranger = Api(anonymous_id=new_anonymous_id()), Api(anonymous_id=new_anonymous_id())
    secret = upload(visitor, "notes.docx")
    assert secret.anonymous_id == visitor.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"]
    assert rows(stranger.query("file", {"filter": {"id": str(secret.pk)}}), "file") == []
    assert rows(visitor.query("file", {"filter": {"id": str(secret.pk)}}), "file")[0]["filename"] == "notes.docx"
    stranger_session = ConversationService.create_session(
        "peek", anonymous_id=stranger.headers["HTTP_X_CONVERSATION_ANONYMOUS_ID"]
    )
    response = stranger.create(
        "message", {"session": str(stranger_session.pk), "content": "x", "files": [str(secret.pk)]}
    )
    assert response.status_code == 400 and error_fields(response) == ["files"]
    result = ConversationService.send_message(stranger_session.pk, str(secret.pk))
    assert result["response"] == "refused: file_not_found"
    # A logged-in user is not an anonymous visitor either.
    assert rows(user_api(UserFactory()).query("file"), "file") == []


class WaitingAgent(ConversationAgent):
    """Waits for the text of the file whose id is the message: ``timeout`` seconds at most, a look
    every ``poll_interval`` seconds."""

    timeout = 0.3
    poll_interval = 0.05

    def get_response(self, message, request=None, **kwargs):
        started = time.monotonic()
        text = wait_for_file_text(message, timeout=self.timeout, poll_interval=self.poll_interval)
        return f"{text!r} after {time.monotonic() - started:.3f}s"


class PatientAgent(WaitingAgent):
    """A minute between looks: an answer within seconds is one that did not wait."""

    timeout = poll_interval = 60.0


def test_wait_for_file_text_in_a_turn():
    register_agent("wait", WaitingAgent)
    register_agent("patient", PatientAgent)
    alice = UserFactory()
    api = user_api(alice)
    done, failed = upload(api, "notes.docx"), upload(api, "encrypted.pdf")
    pending = FileFactory(user=alice, content=b"not extracted yet")

    def ask(agent, file):
        session = ConversationService.create_session(agent, user=alice)
        text, _, seconds = ConversationService.send_message(session.pk, str(file.pk), user=alice)[
            "response"
        ].rpartition(" after ")
        return text, float(seconds.rstrip("s"))

    # The bounds are far from what a wrong answer takes (a minute), not from how fast this machine is.
    text, seconds = ask("patient", done)
    assert generate.DOCX_TEXT in text and seconds < 30  # already there: no waiting
    text, seconds = ask("patient", failed)
    assert text == "None" and seconds < 30  # failed: no point in waiting
    # Still pending when the wait ends: None, once the timeout has passed.
    text, seconds = ask("wait", pending)
    assert text == "None" and WaitingAgent.timeout <= seconds < 30


def test_upload_answer_is_the_bridge_row_of_the_caller(held_tasks):
    # The extraction task is held until the answer has been checked: on the in-process threads it
    # would race the answer (whose status is read after the commit that starts it: pending,
    # processing or done, as the threads go).
    client = Client()
    client.force_login(UserFactory())
    response = client.post(
        API + "files/", {"file": SimpleUploadedFile("hours.txt", (FILES / "hours.txt").read_bytes())}
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    row = body["included"]["file"][body["data"]]
    assert row["extraction_status"] == "pending"  # the upload answers without waiting for extraction
    assert "extracted_text" not in row  # large: read it with a query that names it in ``fields``
    (extraction,) = held_tasks.results
    assert extraction.task.func.__name__ == "extract_file_task" and list(extraction.args) == [body["data"]]
    extraction.task.call(*extraction.args)
    text_rows = rows(
        Api(client).query(
            "file", {"filter": {"id": body["data"]}, "fields": ["id", "extraction_status", "extracted_text"]}
        ),
        "file",
    )
    assert text_rows[0]["extraction_status"] == "done"
    assert text_rows[0]["extracted_text"] == generate.TXT_TEXT.strip()
