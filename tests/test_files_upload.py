"""``POST files/``: validation, storage, ownership, and the extraction it starts.

Real parts: the demo project's URLs and middleware, the database, Django's storage API
(FileSystemStorage in a temporary MEDIA_ROOT, and InMemoryStorage for a storage without local
paths), the in-process task backend, and embedded Tika + tesseract for the text.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from django_ai.conversations.constants import EventName, ExtractionStatus, SessionStatus
from django_ai.conversations.files.sniffing import is_allowed_type, sniff_content_type
from django_ai.conversations.models import File
from django_ai.conversations.testing import SessionFactory, UserFactory, wait_for_turns
from tests.bridge_support import API, error_codes, error_fields
from tests.fixtures.files import generate

FILES = Path(generate.__file__).parent
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    cache.clear()  # throttle counts
    yield tmp_path / "media"
    cache.clear()


def stored_files(media: Path) -> list[Path]:
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


def upload(
    client: Client, name: str, data: bytes | None = None, *, content_type: str = "application/octet-stream", **fields
):
    data = (FILES / name).read_bytes() if data is None else data
    body = {"file": SimpleUploadedFile(name, data, content_type=content_type), **fields}
    response = client.post(API + "files/", body, **fields.pop("extra", {}))
    # The upload answers at once; extraction runs on the in-process task threads after it.
    wait_for_turns(timeout=60)
    return response


def the_row(response) -> dict:
    body = response.json()
    assert response.status_code == 201, body
    pk = body["data"]  # a write answers one row: ``data`` is its id
    return body["included"]["file"][pk]


def user_client(user=None) -> Client:
    client = Client()
    client.force_login(user or UserFactory())
    return client


def test_user_uploads_a_pdf_and_its_text_is_extracted(media, events):
    user = UserFactory()
    client = user_client(user)
    data = (FILES / "report.pdf").read_bytes()
    # The client's claimed type is ignored: the content decides.
    response = upload(client, "Q3 report.pdf", data, content_type="image/gif")
    row = the_row(response)
    assert row["filename"] == "Q3 report.pdf"
    assert row["content_type"] == "application/pdf"
    assert row["size"] == len(data)

    file = File.objects.get(pk=row["id"])
    assert file.user == user and file.anonymous_id == ""
    assert file.sha256 == hashlib.sha256(data).hexdigest()
    # Stored through the storage API under a random name, not the client's.
    assert file.file.name.endswith(".pdf") and "Q3" not in file.file.name
    assert file.file.read() == data
    # The in-process task backend ran extraction after the upload committed.
    assert file.extraction_status == ExtractionStatus.DONE
    assert generate.PDF_TEXT in " ".join(file.extracted_text.split())
    assert file.extractor == "tika-embedded" and file.extractor_version.startswith("3.")
    assert file.extraction_duration_ms is not None and file.extracted_at is not None
    assert file.metadata["extraction"]["pages"] == 1
    assert file.text == file.extracted_text

    # Every status change was a model_change event for this file.
    changes = [p for p in events.of(EventName.MODEL_CHANGE) if p["model"] == "file" and p["pks"] == [str(file.pk)]]
    assert [c["operation"] for c in changes] == ["create", "update", "update"]


def test_anonymous_visitor_gets_an_id_and_owns_the_file(media):
    client = Client()
    row = the_row(upload(client, "hours.txt"))
    file = File.objects.get(pk=row["id"])
    assert file.user is None
    assert file.anonymous_id.startswith("anon_")
    assert client.session["django_ai_anonymous_id"] == file.anonymous_id
    assert file.extraction_status == ExtractionStatus.DONE
    assert file.extracted_text == generate.TXT_TEXT.strip()


def test_stateless_client_uses_its_header_id(media):
    from django_ai.conversations.owners import new_anonymous_id

    anonymous_id = new_anonymous_id()
    response = Client().post(
        API + "files/",
        {"file": SimpleUploadedFile("notes.docx", (FILES / "notes.docx").read_bytes())},
        HTTP_X_CONVERSATION_ANONYMOUS_ID=anonymous_id,
    )
    wait_for_turns(timeout=60)
    file = File.objects.get(pk=the_row(response)["id"])
    assert file.anonymous_id == anonymous_id
    assert file.content_type == DOCX
    assert generate.DOCX_TEXT in file.extracted_text


def test_oversize_upload_is_refused_before_reading(media):
    with override_settings(DJANGO_AI={"MAX_UPLOAD_SIZE": 1000}):
        response = upload(user_client(), "big.txt", b"x" * 200_000)
    assert response.status_code == 413
    assert error_codes(response) == ["file_too_large"]
    assert response.json()["errors"][0]["message"] == "The file is larger than the limit of 1000 bytes."
    assert File.objects.count() == 0 and stored_files(media) == []


def test_oversize_upload_is_stopped_while_streaming(media):
    # Content-Length is within the multipart allowance: the byte counter stops it.
    with override_settings(DJANGO_AI={"MAX_UPLOAD_SIZE": 1000}):
        response = upload(user_client(), "big.txt", b"y" * 5000)
    assert response.status_code == 413
    assert error_codes(response) == ["file_too_large"]
    assert error_fields(response) == ["file"]
    assert File.objects.count() == 0 and stored_files(media) == []


def test_executable_named_png_is_refused(media):
    response = upload(user_client(), "program.png", content_type="image/png")
    assert response.status_code == 415
    assert error_codes(response) == ["unsupported_file_type"]
    assert "application/x-msdownload" in response.json()["errors"][0]["message"]
    assert File.objects.count() == 0 and stored_files(media) == []


def test_text_named_png_is_stored_as_text(media):
    row = the_row(upload(user_client(), "photo.png", b"just some words\n", content_type="image/png"))
    assert row["content_type"] == "text/plain"


def test_types_outside_the_allowed_list_are_refused(media):
    with override_settings(DJANGO_AI={"ALLOWED_UPLOAD_TYPES": ["text/*"]}):
        refused = upload(user_client(), "report.pdf")
        accepted = upload(user_client(), "hours.txt")
    assert refused.status_code == 415 and error_codes(refused) == ["unsupported_file_type"]
    assert accepted.status_code == 201


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "required"),
        ({"file": [SimpleUploadedFile("a.txt", b"a"), SimpleUploadedFile("b.txt", b"b")]}, "too_many_files"),
        ({"file": SimpleUploadedFile("empty.txt", b"")}, "empty_file"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason(media, body, code):
    response = user_client().post(API + "files/", body)
    assert response.status_code == 400
    assert error_codes(response) == [code]
    assert File.objects.count() == 0 and stored_files(media) == []


def test_more_files_than_django_accepts_is_an_envelope_400(media, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 5
    files = [SimpleUploadedFile(f"a{i}.txt", b"hello") for i in range(6)]
    response = user_client().post(API + "files/", {"file": files})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json", response.content[:200]
    assert error_codes(response) == ["too_many_files"]
    assert File.objects.count() == 0 and stored_files(media) == []


def test_upload_into_own_conversation(media):
    user = UserFactory()
    session = SessionFactory(user=user)
    row = the_row(upload(user_client(user), "hours.txt", session=str(session.pk)))
    assert row["session"] == str(session.pk)


@pytest.mark.parametrize("which", ["other-owner", "missing", "malformed"])
def test_upload_into_a_conversation_that_is_not_yours(media, which):
    session_id = {
        "other-owner": lambda: str(SessionFactory(user=UserFactory()).pk),
        "missing": lambda: "7b0f9a3e-1d1c-4a57-9f9e-2f6d7d6b8a11",
        "malformed": lambda: "not-an-id",
    }[which]()
    response = upload(user_client(), "hours.txt", session=session_id)
    assert response.status_code == 404
    assert error_codes(response) == ["session_not_found"]
    assert File.objects.count() == 0 and stored_files(media) == []


@pytest.mark.parametrize("status", [SessionStatus.ARCHIVED, SessionStatus.COMPLETED])
def test_no_upload_into_a_conversation_that_is_over(media, status):
    user = UserFactory()
    session = SessionFactory(user=user, status=status)
    response = user_client(user).post(
        API + "files/", {"file": SimpleUploadedFile("a.txt", b"hello"), "session": str(session.pk)}
    )
    assert response.status_code == 409, response.json()
    assert error_codes(response) == ["session_not_active"] and error_fields(response) == ["session"]
    assert File.objects.count() == 0 and stored_files(media) == []


def test_an_active_conversation_of_the_caller_still_takes_uploads(media):
    user = UserFactory()
    session = SessionFactory(user=user)
    response = upload(user_client(user), "a.txt", b"hello", session=str(session.pk))
    assert response.status_code == 201, response.json()
    assert File.objects.get().session_id == session.pk and len(stored_files(media)) == 1


@pytest.mark.parametrize("rate", [{"THROTTLE_RATES": {"upload": "2/min"}}, {"UPLOAD_THROTTLE_RATE": "2/min"}])
def test_uploads_are_throttled(media, rate):
    client = user_client()
    with override_settings(DJANGO_AI=rate):
        codes = [upload(client, "hours.txt").status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_projects_can_close_uploads_with_bridge_permissions(media):
    with override_settings(
        DJANGO_AI={"BRIDGE_PERMISSION_CLASSES": ["django_ai.conversations.bridge.permissions.IsAuthenticated"]}
    ):
        anonymous = upload(Client(), "hours.txt")
        user = upload(user_client(), "hours.txt")
    assert anonymous.status_code == 403 and error_codes(anonymous) == ["permission_denied"]
    assert user.status_code == 201


def test_corrupt_and_encrypted_uploads_end_failed_with_a_reason(media, held_tasks):
    client = user_client()
    corrupt_row = the_row(upload(client, "corrupt.pdf"))
    encrypted_id = the_row(upload(client, "encrypted.pdf"))["id"]
    # The upload answers before extraction (held here until the answer is checked); the reason
    # reaches the client with the row.
    assert corrupt_row["extraction_status"] == "pending"
    for extraction in held_tasks.results:
        extraction.task.call(*extraction.args)
    query = client.post(
        API + "models/file/query/", {"filter": {"id": corrupt_row["id"]}}, content_type="application/json"
    )
    corrupt_row = query.json()["included"]["file"][corrupt_row["id"]]
    assert corrupt_row["extraction_status"] == "failed"
    assert corrupt_row["extraction_error"].startswith("The file seems to be damaged")
    corrupt = File.objects.get(pk=corrupt_row["id"])
    encrypted = File.objects.get(pk=encrypted_id)
    assert corrupt.extraction_status == ExtractionStatus.FAILED
    assert (
        corrupt.extraction_error
        == "The file seems to be damaged or is not a valid PDF file, so its text cannot be read."
    )
    assert corrupt.metadata["extraction"] == {"error_code": "corrupt"}
    assert encrypted.extraction_status == ExtractionStatus.FAILED
    assert "password-protected" in encrypted.extraction_error
    assert corrupt.text is None and encrypted.text is None


def test_any_storage_backend_works(settings):
    """A storage without local paths (like S3): bytes go through the storage API both ways."""
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    row = the_row(upload(user_client(), "report.pdf"))
    file = File.objects.get(pk=row["id"])
    # InMemoryStorage names a path but keeps nothing there: extraction read through the storage.
    assert not os.path.exists(file.file.storage.path(file.file.name))
    assert file.extraction_status == ExtractionStatus.DONE
    assert generate.PDF_TEXT in " ".join(file.extracted_text.split())


def test_stored_bytes_are_removed_when_the_row_cannot_be_saved(media, monkeypatch):
    from django.db import DatabaseError

    def broken_save(self, *args, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(File, "save", broken_save)
    client = user_client()
    client.raise_request_exception = False
    response = upload(client, "hours.txt")
    assert response.status_code == 500
    assert stored_files(media) == []


def test_sniffing():
    assert sniff_content_type((FILES / "report.pdf").read_bytes()[:8192], "x.txt") == "application/pdf"
    assert sniff_content_type((FILES / "notes.docx").read_bytes()[:8192], "x.pdf") == DOCX
    assert sniff_content_type((FILES / "invoice.png").read_bytes()[:8192], "x.pdf") == "image/png"
    assert sniff_content_type((FILES / "help.html").read_bytes(), "help.txt") == "text/html"
    assert sniff_content_type(b"a,b\n1,2\n", "table.csv") == "text/csv"
    assert sniff_content_type(b"# Title\n", "readme.md") == "text/markdown"
    assert sniff_content_type(b'{"a": 1}', "data.json") == "application/json"
    assert sniff_content_type(b"not json", "data.json") == "text/plain"
    assert sniff_content_type("Grüße".encode("utf-16"), "x.txt") == "text/plain"
    assert sniff_content_type("caf\xe9 cr\xe8me".encode("cp1252"), "x.txt") == "text/plain"
    # A multi-byte character cut at the end of the sniffed head is still text.
    assert sniff_content_type(("é" * 10).encode()[:-1], "x.txt") == "text/plain"
    assert (
        sniff_content_type(os.urandom(2048).replace(b"\x00", b"\x01") + b"\x00", "x.txt") == "application/octet-stream"
    )
    assert sniff_content_type((FILES / "program.png").read_bytes(), "x.png") == "application/x-msdownload"


def test_allowed_types_patterns():
    assert is_allowed_type("application/pdf")
    assert not is_allowed_type("application/x-msdownload")
    with override_settings(DJANGO_AI={"ALLOWED_UPLOAD_TYPES": ["image/*"]}):
        assert is_allowed_type("image/png") and not is_allowed_type("text/plain")
    with override_settings(DJANGO_AI={"ALLOWED_UPLOAD_TYPES": None}):
        assert is_allowed_type("application/x-msdownload")


def test_a_cross_site_upload_cannot_plant_a_file_in_a_new_visitors_session(media):
    """A multipart POST needs no CORS preflight, so a foreign page could submit one with the
    victim's cookies. Without an anonymous id yet, the upload would create one in the victim's
    session: it must pass Django's CSRF check first."""
    from django_ai.conversations.owners import new_anonymous_id  # moved here whole from test_security_review.py

    attacker = Client(enforce_csrf_checks=True)
    response = attacker.post(API + "files/", {"file": SimpleUploadedFile("note.txt", b"planted")})
    assert response.status_code == 403
    assert error_codes(response) == ["permission_denied"]
    assert File.objects.count() == 0
    # The page's own script (CSRF cookie + header) and stateless clients (header id) still upload.
    browser = Client(enforce_csrf_checks=True)
    browser.get("/")  # the demo page sets the csrftoken cookie
    token = browser.cookies["csrftoken"].value
    ok = browser.post(API + "files/", {"file": SimpleUploadedFile("note.txt", b"mine")}, HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 201, ok.json()
    stateless = Client(enforce_csrf_checks=True)
    ok = stateless.post(
        API + "files/",
        {"file": SimpleUploadedFile("note.txt", b"mine too")},
        HTTP_X_CONVERSATION_ANONYMOUS_ID=new_anonymous_id(),
    )
    assert ok.status_code == 201, ok.json()
    assert File.objects.count() == 2
