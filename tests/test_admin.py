"""The admin: changelist and change pages of the four models render for staff, search finds rows,
the session's context is shown read-only and its messages inline; the lists are compact (short
columns, truncated titles, contents and ids) and empty inlines are not shown."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from django_ai.conversations.testing import FileFactory, MessageFactory, SessionFactory, UserFactory, WidgetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


@pytest.fixture
def conversation(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    owner = UserFactory(username="carol")
    session = SessionFactory(
        user=owner,
        agent_path="support",
        title="Billing question",
        context={"support_tier": "premium", "note": "<b>vip</b>"},
    )
    file = FileFactory(user=owner, session=session, filename="invoice.pdf", text="Invoice 42")
    message = MessageFactory(session=session, content="Where is invoice 42?", files=[file])
    MessageFactory(
        session=session, message_type="agent", content="Here it is.", reply_to=message, metrics={"total_ms": 12}
    )
    widget = WidgetFactory(session=session, widget_type="appointment_form", data={"slots": ["10:00"]})
    return {"session": session, "message": message, "widget": widget, "file": file}


MODELS = {
    "session": "conversationsession",
    "message": "conversationmessage",
    "widget": "conversationwidget",
    "file": "file",
}


@pytest.mark.parametrize("name", list(MODELS))
def test_changelist_and_change_pages_render(staff_client, conversation, name):
    obj = conversation[name]
    changelist = staff_client.get(reverse(f"admin:django_ai_conversations_{MODELS[name]}_changelist"))
    assert changelist.status_code == 200
    assert str(obj.pk) in changelist.content.decode() or str(obj) in changelist.content.decode()
    change = staff_client.get(reverse(f"admin:django_ai_conversations_{MODELS[name]}_change", args=[obj.pk]))
    assert change.status_code == 200


def test_session_change_page_shows_context_read_only_and_messages_inline(staff_client, conversation):
    session = conversation["session"]
    page = staff_client.get(
        reverse("admin:django_ai_conversations_conversationsession_change", args=[session.pk])
    ).content.decode()
    # The context as escaped, pretty-printed JSON, not as an editable field.
    assert "&quot;support_tier&quot;: &quot;premium&quot;" in page
    assert "&lt;b&gt;vip&lt;/b&gt;" in page and "<b>vip</b>" not in page
    assert 'name="context"' not in page
    assert "Where is invoice 42?" in page and "Here it is." in page
    assert "appointment_form" in page


@pytest.mark.parametrize(
    ("name", "term", "found"),
    [
        ("session", "Billing", True),
        ("session", "carol", True),
        ("session", "invoice 42", True),  # a message's content
        ("session", "nothing-like-this", False),
        ("message", "invoice 42", True),
        ("widget", "appointment", True),
        ("file", "invoice.pdf", True),
        ("file", "report.docx", False),
    ],
)
def test_search(staff_client, conversation, name, term, found):
    other = SessionFactory(agent_path="sales", title="Another one")
    MessageFactory(session=other, content="unrelated")
    response = staff_client.get(reverse(f"admin:django_ai_conversations_{MODELS[name]}_changelist"), {"q": term})
    assert response.status_code == 200
    shown = response.context["cl"].result_list
    assert (conversation[name] in shown) is found
    assert other not in shown


def test_session_filters(staff_client, conversation):
    archived = SessionFactory(agent_path="support", status="archived")
    url = reverse("admin:django_ai_conversations_conversationsession_changelist")
    shown = staff_client.get(url, {"status__exact": "archived"}).context["cl"].result_list
    assert list(shown) == [archived]
    shown = staff_client.get(url, {"agent_path": "support", "status__exact": "active"}).context["cl"].result_list
    assert list(shown) == [conversation["session"]]


def test_admin_is_closed_to_non_staff(client, conversation):
    client.force_login(UserFactory())
    response = client.get(reverse("admin:django_ai_conversations_conversationsession_changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]


class _ResultTable(HTMLParser):
    """The changelist's table (#result_list) as the text a person sees: headers and rows of cells."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[list[str]] = []
        self._in_table = False
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("id", "result_list") in attrs:
            self._in_table = True
        elif self._in_table and tag == "thead":
            self._in_head = True
        elif self._in_table and tag == "tr" and not self._in_head:
            self.rows.append([])
        elif self._in_table and tag in ("th", "td"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif tag == "thead":
            self._in_head = False
        elif self._in_table and tag in ("th", "td") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            (self.headers if self._in_head else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def result_table(response) -> _ResultTable:
    table = _ResultTable()
    table.feed(response.content.decode())
    # The first column is the action checkbox.
    table.headers = table.headers[1:]
    table.rows = [row[1:] for row in table.rows]
    return table


LONG_TITLE = "Question about the invoice of March that was charged twice to the company card " * 2


def test_session_list_fits_a_laptop_screen(staff_client):
    owner = UserFactory(username="a-rather-long-username-for-a-column@example.com")
    session = SessionFactory(user=owner, agent_path="support", title=LONG_TITLE)
    untitled = SessionFactory(agent_path="writer", title="")
    table = result_table(staff_client.get(reverse("admin:django_ai_conversations_conversationsession_changelist")))
    # Seven short columns, one date in a compact form.
    assert table.headers == ["Conversation", "Agent path", "Owner", "Status", "Tokens", "Cost", "Updated"]
    rows = {row[1]: row for row in table.rows}
    title, agent, who, status, tokens, cost, updated = rows["support"]
    assert (tokens, cost) == ("0", "-")
    assert len(title) <= 40 + 9 and title.startswith("Question about the invoice") and "…" in title
    assert title.endswith(str(session.pk)[:8]) and str(session.pk) not in title
    assert len(who) <= 20 and who.startswith("a-rather-long")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", updated)
    assert rows["writer"][0] == f"untitled {str(untitled.pk)[:8]}"
    # The whole title stays one hover away.
    assert (
        f'title="{LONG_TITLE.strip()}"'
        in staff_client.get(reverse("admin:django_ai_conversations_conversationsession_changelist")).content.decode()
    )


def test_message_list_shows_a_preview_of_the_content(staff_client):
    session = SessionFactory(title=LONG_TITLE)
    long_reply = "Invoices are in Settings, Billing. " * 30
    message = MessageFactory(session=session, message_type="agent", content=long_reply)
    table = result_table(staff_client.get(reverse("admin:django_ai_conversations_conversationmessage_changelist")))
    assert table.headers == ["Id", "Content", "Type", "Status", "Rating", "Conversation", "Sent"]
    [(short_id, preview, kind, status, rating, conversation, sent)] = table.rows
    assert short_id == str(message.pk)[:8] and rating == "-"  # not rated
    assert preview.startswith("Invoices are in Settings, Billing.") and preview.endswith("…") and len(preview) <= 80
    assert conversation.startswith("Question about the") and len(conversation) <= 24


def _change_form_data(response) -> dict:
    """The change form's fields as the browser would post them back unchanged."""
    data = {}
    forms = [response.context["adminform"].form]
    for formset in response.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        data.update({management.add_prefix(name): management[name].value() for name in management.fields})
        forms += list(formset.formset.forms)
    for form in forms:
        for name, field in form.fields.items():
            value = form[name].value()
            if value is None or value is False:
                continue
            data[form.add_prefix(name)] = field.widget.format_value(value) if hasattr(value, "isoformat") else value
    return data


def test_inlines_show_only_when_the_session_has_rows(staff_client, conversation):
    bare = SessionFactory(title="Nothing yet")
    page = staff_client.get(
        reverse("admin:django_ai_conversations_conversationsession_change", args=[bare.pk])
    ).content.decode()
    assert "widgets-TOTAL_FORMS" not in page and "messages-TOTAL_FORMS" not in page

    MessageFactory(session=bare, content="Hello")
    page = staff_client.get(
        reverse("admin:django_ai_conversations_conversationsession_change", args=[bare.pk])
    ).content.decode()
    assert 'name="messages-TOTAL_FORMS" value="1"' in page
    assert "widgets-TOTAL_FORMS" not in page

    # With widgets: the inline lists them, with no empty form to fill in.
    session = conversation["session"]
    page = staff_client.get(
        reverse("admin:django_ai_conversations_conversationsession_change", args=[session.pk])
    ).content.decode()
    assert 'name="widgets-TOTAL_FORMS" value="1"' in page

    # The change form saves with the inlines it shows, and without the ones it leaves out.
    for obj in (bare, session):
        url = reverse("admin:django_ai_conversations_conversationsession_change", args=[obj.pk])
        data = _change_form_data(staff_client.get(url))
        data["title"] = "Renamed"
        response = staff_client.post(url, data)
        assert response.status_code == 302, response.context and response.context["adminform"].form.errors
        obj.refresh_from_db()
        assert obj.title == "Renamed"
