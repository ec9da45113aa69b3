"""The admin: changelist and change pages of the four models render for staff, search finds rows,
the session's context is shown read-only and its messages inline."""

from __future__ import annotations

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
    session = SessionFactory(user=owner, agent_path="support", title="Billing question", context={"support_tier": "premium", "note": "<b>vip</b>"})
    file = FileFactory(user=owner, session=session, filename="invoice.pdf", text="Invoice 42")
    message = MessageFactory(session=session, content="Where is invoice 42?", files=[file])
    MessageFactory(session=session, message_type="agent", content="Here it is.", reply_to=message, metrics={"total_ms": 12})
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
    changelist = staff_client.get(reverse(f"admin:conversations_{MODELS[name]}_changelist"))
    assert changelist.status_code == 200
    assert str(obj.pk) in changelist.content.decode() or str(obj) in changelist.content.decode()
    change = staff_client.get(reverse(f"admin:conversations_{MODELS[name]}_change", args=[obj.pk]))
    assert change.status_code == 200


def test_session_change_page_shows_context_read_only_and_messages_inline(staff_client, conversation):
    session = conversation["session"]
    page = staff_client.get(reverse("admin:conversations_conversationsession_change", args=[session.pk])).content.decode()
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
    response = staff_client.get(reverse(f"admin:conversations_{MODELS[name]}_changelist"), {"q": term})
    assert response.status_code == 200
    shown = response.context["cl"].result_list
    assert (conversation[name] in shown) is found
    assert other not in shown


def test_session_filters(staff_client, conversation):
    archived = SessionFactory(agent_path="support", status="archived")
    url = reverse("admin:conversations_conversationsession_changelist")
    shown = staff_client.get(url, {"status__exact": "archived"}).context["cl"].result_list
    assert list(shown) == [archived]
    shown = staff_client.get(url, {"agent_path": "support", "status__exact": "active"}).context["cl"].result_list
    assert list(shown) == [conversation["session"]]


def test_admin_is_closed_to_non_staff(client, conversation):
    client.force_login(UserFactory())
    response = client.get(reverse("admin:conversations_conversationsession_changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]
