"""Versions of a conversation: regenerate a reply, edit an earlier message, switch between versions.

The agent (``versions_support.TallyAgent``) counts its turns in its Context and answers
``#<count> <message>``, so a reply shows which Context its turn started from: regenerating the
third reply must answer ``#3`` again (the Context before that turn restored), not ``#4``.

Real parts: the database (SQLite and PostgreSQL), the in-process task runner's background
threads answering the new versions as in the demo, the real realtime memory backend for events.
Tests wait for states (``wait_until``, ``wait_for_turns``), never for a fixed time.
"""

from __future__ import annotations

import pytest

from django_ai.conversations.ai_sdk.messages import conversation_messages
from django_ai.conversations.constants import (
    ErrorCode,
    EventName,
    MessageRevision,
    MessageType,
    ProcessingStatus,
    SessionStatus,
)
from django_ai.conversations.exceptions import (
    InvalidInput,
    InvalidMessage,
    MessageNotFound,
    OperationIdReused,
    SessionNotActive,
    TurnInProgress,
)
from django_ai.conversations.history import conversation_history
from django_ai.conversations.models import ConversationMessage, ConversationSession
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import wait_for_turns, wait_until
from django_ai.conversations.testing.factories import FileFactory, UserFactory
from django_ai.conversations.turns import versions

from .turns_support import post, reply_to, status_of, waiting_message
from .versions_support import HOLD, background_turns, conversation, path_texts, user_messages

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _turns():
    with background_turns():
        yield


def _context(session: ConversationSession) -> dict:
    session.refresh_from_db()
    return session.context


def _answered(message: ConversationMessage) -> ConversationMessage:
    """``message`` once its turn has ended (waits for it)."""
    wait_until(
        lambda: status_of(message) not in {ProcessingStatus.PENDING, ProcessingStatus.PROCESSING},
        20,
        message=f"the turn of {message.content!r} did not end",
    )
    message.refresh_from_db()
    return message


def _versions(message: ConversationMessage) -> list[ConversationMessage]:
    message.refresh_from_db()
    group = message.version_group or message.pk
    return list(ConversationMessage.objects.filter(version_group=group).order_by("version_index"))


def test_regenerating_the_last_reply_answers_it_again_from_the_context_its_turn_started_from():
    session = conversation("tally", "a", "b", "c")
    assert _context(session) == {"count": 3, "seen": ["a", "b", "c"]}
    a, b, c = user_messages(session)
    old_reply = reply_to(c)

    version = versions.regenerate(c.pk)
    assert (version.processing_status, version.revision, version.content) == ("pending", "regenerate", "c")
    assert _answered(version).processing_status == ProcessingStatus.COMPLETED

    # The Context before c's turn was restored: the count shows the third turn again, not a fourth.
    assert reply_to(version).content == "#3 c"
    assert _context(session) == {"count": 3, "seen": ["a", "b", "c"]}
    assert path_texts(session) == [
        ("user", "a"),
        ("agent", "#1 a"),
        ("user", "b"),
        ("agent", "#2 b"),
        ("user", "c"),
        ("agent", "#3 c"),
    ]
    # The old reply is kept, as an inactive version.
    old_reply.refresh_from_db()
    c.refresh_from_db()
    assert (old_reply.content, old_reply.active, c.active) == ("#3 c", False, False)
    assert [(m.pk, m.version_index, m.version_count, m.version_group, m.revision) for m in _versions(c)] == [
        (c.pk, 1, 2, c.pk, MessageRevision.ORIGINAL),
        (version.pk, 2, 2, c.pk, MessageRevision.REGENERATE),
    ]
    assert version.parent_id == b.pk
    # A message without other versions keeps an empty group and a count of 1.
    b.refresh_from_db()
    assert (b.version_group, b.version_index, b.version_count) == (None, 1, 1)


def test_regenerating_an_earlier_reply_drops_what_followed_from_the_path_and_the_context():
    session = conversation("tally", "a", "b", "c", "d")
    a, b, c, d = user_messages(session)

    version = versions.regenerate(reply_to(b).pk)  # the agent reply names its user message
    _answered(version)
    assert reply_to(version).content == "#2 b"
    assert _context(session) == {"count": 2, "seen": ["a", "b"]}
    assert [text for _, text in path_texts(session)] == ["a", "#1 a", "b", "#2 b"]
    assert not ConversationMessage.objects.filter(pk__in=[b.pk, c.pk, d.pk], active=True).exists()
    assert not ConversationMessage.objects.filter(reply_to__in=[b, c, d], active=True).exists()

    # The conversation goes on from there.
    ConversationService.send_message(session.pk, "e")
    assert [text for _, text in path_texts(session)][-2:] == ["e", "#3 e"]
    assert _context(session) == {"count": 3, "seen": ["a", "b", "e"]}


def test_regenerating_again_adds_versions_and_keeps_index_and_count_right_on_every_sibling():
    session = conversation("tally", "a", "b")
    a, b = user_messages(session)
    second = _answered(versions.regenerate(b.pk))
    third = _answered(versions.regenerate(b.pk))  # of the original, now inactive: allowed
    fourth = _answered(versions.regenerate(second.pk))
    group = _versions(b)
    assert [m.pk for m in group] == [b.pk, second.pk, third.pk, fourth.pk]
    assert [(m.version_index, m.version_count, m.version_group) for m in group] == [
        (1, 4, b.pk),
        (2, 4, b.pk),
        (3, 4, b.pk),
        (4, 4, b.pk),
    ]
    assert [m.active for m in group] == [False, False, False, True]
    assert {m.parent_id for m in group} == {a.pk}
    assert [reply_to(m).content for m in group] == ["#2 b"] * 4
    assert _context(session)["count"] == 2


def test_regenerating_a_message_off_the_path_brings_its_path_back_and_its_context():
    session = conversation("tally", "a", "b")
    a, b = user_messages(session)
    _answered(versions.edit(a.pk, content="x"))  # b is now below an inactive version of a
    assert _context(session) == {"count": 1, "seen": ["x"]}

    version = versions.regenerate(b.pk)
    assert version.active
    assert reply_to(_answered(version)).content == "#2 b"
    assert [text for _, text in path_texts(session)] == ["a", "#1 a", "b", "#2 b"]
    assert _context(session) == {"count": 2, "seen": ["a", "b"]}


def test_editing_an_earlier_message_answers_the_new_text_from_that_turns_context():
    session = conversation("tally", "a", "b", "c")
    a, b, c = user_messages(session)
    version = versions.edit(b.pk, content="B!")
    assert (version.content, version.revision, version.version_index) == ("B!", MessageRevision.EDIT, 2)
    _answered(version)
    assert reply_to(version).content == "#2 B!"
    assert _context(session) == {"count": 2, "seen": ["a", "B!"]}
    assert [text for _, text in path_texts(session)] == ["a", "#1 a", "B!", "#2 B!"]
    b.refresh_from_db()
    assert b.content == "b"  # the original is untouched


def test_an_edit_keeps_the_messages_files_unless_it_is_given_others():
    session = ConversationService.create_session("tally")
    first = FileFactory(filename="one.txt", text="1", session=session)
    second = FileFactory(filename="two.txt", text="2", session=session)
    third = FileFactory(filename="three.txt", text="3", session=session)
    ConversationService.send_message(session.pk, "look", files=[second.pk, first.pk])
    (message,) = user_messages(session)
    assert reply_to(message).content == "#1 look [two.txt,one.txt]"

    kept = _answered(versions.edit(message.pk, content="look again"))
    assert reply_to(kept).content == "#1 look again [two.txt,one.txt]"  # same files, same order

    replaced = _answered(ConversationService.edit_message(message.pk, "only this", files=[third.pk]))
    assert reply_to(replaced).content == "#1 only this [three.txt]"
    none = _answered(versions.edit(message.pk, content="no files", files=[]))
    assert reply_to(none).content == "#1 no files"
    assert list(message.files.order_by("filename").values_list("filename", flat=True)) == ["one.txt", "two.txt"]


def test_switching_versions_back_and_forth_moves_the_path_and_the_context_with_it():
    session = conversation("tally", "a", "b", "c")
    a, b, c = user_messages(session)
    edited = _answered(versions.edit(b.pk, content="x"))
    after_edit = ConversationService.send_message(session.pk, "y")
    assert after_edit["response"] == "#3 y"
    assert _context(session) == {"count": 3, "seen": ["a", "x", "y"]}

    # Back to the original b: its path (b, c) and the Context it ended with come back.
    assert versions.activate_version(b.pk).pk == b.pk
    assert [text for _, text in path_texts(session)] == ["a", "#1 a", "b", "#2 b", "c", "#3 c"]
    assert _context(session) == {"count": 3, "seen": ["a", "b", "c"]}
    ConversationService.send_message(session.pk, "d")
    assert _context(session) == {"count": 4, "seen": ["a", "b", "c", "d"]}

    # Forth again (by its agent reply's id): x and y, and their Context.
    assert versions.activate_version(reply_to(edited).pk).pk == edited.pk
    assert [text for _, text in path_texts(session)] == ["a", "#1 a", "x", "#2 x", "y", "#3 y"]
    assert _context(session) == {"count": 3, "seen": ["a", "x", "y"]}

    # And back: below b, the version chosen last there (c, then d) follows.
    versions.activate_version(b.pk)
    assert [text for _, text in path_texts(session)][-4:] == ["c", "#3 c", "d", "#4 d"]
    assert _context(session)["count"] == 4

    # A deeper version off the path brings its own path back.
    versions.activate_version(user_messages(session, content="y")[0].pk)
    assert [text for _, text in path_texts(session) if not text.startswith("#")] == ["a", "x", "y"]


def test_activating_the_active_version_changes_nothing(events):
    session = conversation("tally", "a")
    (a,) = user_messages(session)
    events.clear()
    before = _context(session)
    assert versions.activate_version(a.pk).pk == a.pk
    assert _context(session) == before
    assert events.of(EventName.MODEL_CHANGE) == []


def test_switching_is_refused_while_a_turn_runs():
    session = conversation("tally", "a")
    (a,) = user_messages(session)
    version = _answered(versions.regenerate(a.pk))
    held = post(session, "hold")
    wait_until(lambda: status_of(held) == ProcessingStatus.PROCESSING, 10)
    with pytest.raises(TurnInProgress) as caught:
        versions.activate_version(a.pk)
    assert caught.value.status_code == 409
    version.refresh_from_db()
    assert version.active
    HOLD.set()
    _answered(held)
    versions.activate_version(a.pk)
    assert [text for _, text in path_texts(session)] == ["a", "#1 a"]


def test_history_sends_the_active_path_only():
    session = conversation("tally", "a", "b", "c")
    a, b, c = user_messages(session)
    _answered(versions.edit(b.pk, content="x"))
    sent = conversation_history(session.pk)
    assert [m["content"] for m in sent] == ["a", "#1 a", "x", "#2 x"]


def test_the_ai_sdk_messages_are_the_active_path_only():
    session = conversation("tally", "a", "b")
    a, b = user_messages(session)
    _answered(versions.regenerate(b.pk))
    _answered(versions.edit(a.pk, content="x"))
    texts = [
        (m["role"], part["text"])
        for m in conversation_messages(session)
        for part in m["parts"]
        if part["type"] == "text"
    ]
    assert texts == [("user", "x"), ("assistant", "#1 x")]


def test_a_running_turn_of_a_message_that_leaves_the_path_is_stopped_as_superseded(events):
    session = ConversationService.create_session("tally")
    held = post(session, "hold")
    wait_until(lambda: status_of(held) == ProcessingStatus.PROCESSING and reply_to(held) is not None, 10)

    version = versions.edit(held.pk, content="now")  # enqueue: waits for the running turn
    assert _answered(held).processing_status == ProcessingStatus.CANCELLED
    old_reply = reply_to(held)
    assert old_reply.metrics["stopped"] == "superseded"
    assert not ConversationMessage.objects.filter(pk=held.pk, active=True).exists()
    assert not ConversationMessage.objects.filter(reply_to=held, active=True).exists()
    statuses = [p for p in events.of(EventName.MESSAGE_STATUS) if p["message_id"] == str(held.pk)]
    assert statuses[-1]["status"] == "cancelled" and statuses[-1]["reason"] == "superseded"

    # The new version then runs from the Context the stopped turn started from.
    assert _answered(version).processing_status == ProcessingStatus.COMPLETED
    assert reply_to(version).content == "#1 now"
    assert _context(session) == {"count": 1, "seen": ["now"]}
    held.refresh_from_db()
    assert held.context_after == held.context_before == {"count": 0, "seen": []}


def test_waiting_messages_that_leave_the_path_are_cancelled_as_superseded(events):
    session = conversation("tally", "a")
    (a,) = user_messages(session)
    held = post(session, "hold")
    wait_until(lambda: status_of(held) == ProcessingStatus.PROCESSING, 10)
    queued = post(session, "queued")  # waits behind the running turn
    version = versions.regenerate(a.pk)

    # The queued message never runs: cancelled at once, with its reason.
    queued.refresh_from_db()
    assert (queued.processing_status, queued.active, queued.attempts) == ("cancelled", False, 0)
    statuses = [p for p in events.of(EventName.MESSAGE_STATUS) if p["message_id"] == str(queued.pk)]
    assert [(p["status"], p.get("reason")) for p in statuses] == [("cancelled", "superseded")]
    assert _answered(held).processing_status == ProcessingStatus.CANCELLED
    assert reply_to(_answered(version)).content == "#1 a"
    assert reply_to(queued) is None


def test_a_turn_waiting_for_an_approval_that_leaves_the_path_is_cancelled_with_its_steps():
    session = ConversationService.create_session("approval")
    result = ConversationService.send_message(session.pk, "refund 5")
    assert result["status"] == "awaiting_approval"
    (message,) = user_messages(session)
    step = ConversationMessage.objects.get(reply_to=message, message_type=MessageType.TOOL)

    version = versions.edit(message.pk, content="refund 7")
    message.refresh_from_db()
    step.refresh_from_db()
    assert (message.processing_status, message.active) == ("cancelled", False)
    assert (step.processing_status, step.active) == ("cancelled", False)
    assert reply_to(message).processing_status == ProcessingStatus.CANCELLED
    # The new version is answered (it waits for its own approval), not held behind the old one.
    assert _answered(version).processing_status == ProcessingStatus.AWAITING_APPROVAL
    assert ConversationMessage.objects.get(reply_to=version, message_type=MessageType.TOOL).active


def test_reject_refuses_a_new_version_while_a_turn_runs_and_writes_nothing():
    session = conversation("tally-reject", "a")
    (a,) = user_messages(session)
    held = post(session, "hold")
    wait_until(lambda: status_of(held) == ProcessingStatus.PROCESSING, 10)
    with pytest.raises(TurnInProgress):
        versions.regenerate(a.pk)
    with pytest.raises(TurnInProgress):
        ConversationService.edit_message(a.pk, "x")
    a.refresh_from_db()
    assert (a.version_group, a.version_count, a.active) == (None, 1, True)
    assert len(user_messages(session)) == 2
    HOLD.set()
    _answered(held)
    assert reply_to(_answered(versions.regenerate(a.pk))).content == "#1 a"


def test_interrupt_stops_the_running_turn_for_the_new_version():
    session = conversation("tally-interrupt", "a")
    (a,) = user_messages(session)
    held = post(session, "hold")
    wait_until(lambda: status_of(held) == ProcessingStatus.PROCESSING, 10)
    version = versions.edit(held.pk, content="instead")
    assert _answered(held).processing_status == ProcessingStatus.CANCELLED
    assert reply_to(_answered(version)).content == "#2 instead"
    assert _context(session) == {"count": 2, "seen": ["a", "instead"]}


def test_a_conversation_made_before_versions_gets_its_parents_filled_in():
    session = conversation("tally", "a", "b", "c")
    a, b, c = user_messages(session)
    # Rows as they were before the feature (and as sending leaves them): no parent, no snapshot.
    ConversationMessage.objects.filter(session=session).update(parent=None, context_before=None, context_after=None)
    versions.materialize_parents(session.pk)
    assert [m.parent_id for m in user_messages(session)] == [None, a.pk, b.pk]
    versions.materialize_parents(session.pk)  # nothing left to do
    assert [m.parent_id for m in user_messages(session)] == [None, a.pk, b.pk]

    # Without snapshots, a regenerated turn starts from the conversation's Context as it is now.
    version = _answered(versions.regenerate(b.pk))
    assert reply_to(version).content == "#4 b"
    assert [text for _, text in path_texts(session)] == ["a", "#1 a", "b", "#4 b"]


def test_messages_sent_since_the_last_version_change_join_the_tree_at_the_next_one():
    session = conversation("tally", "a")
    (a,) = user_messages(session)
    version = _answered(versions.regenerate(a.pk))
    ConversationService.send_message(session.pk, "b")
    ConversationService.send_message(session.pk, "c")
    b = user_messages(session, content="b")[0]
    assert b.parent_id is None  # sending costs no query: filled in lazily
    _answered(versions.regenerate(user_messages(session, content="c")[0].pk))
    b.refresh_from_db()
    assert b.parent_id == version.pk
    versions.activate_version(a.pk)
    assert [text for _, text in path_texts(session)] == ["a", "#1 a"]
    versions.activate_version(b.pk)
    assert [text for _, text in path_texts(session) if not text.startswith("#")] == ["a", "b", "c"]


def test_an_operation_id_makes_a_retried_regenerate_or_edit_return_the_version_it_made():
    session = conversation("tally", "a")
    (a,) = user_messages(session)
    first = versions.regenerate(a.pk, operation_id="op-1")
    again = versions.regenerate(a.pk, operation_id="op-1")
    assert again.pk == first.pk
    assert ConversationMessage.objects.filter(session=session, message_type=MessageType.USER).count() == 2
    edited = versions.edit(a.pk, content="x", operation_id="op-2")
    assert versions.edit(a.pk, content="x", operation_id="op-2").pk == edited.pk
    # The same id for another request (other text, another kind of version) is a client bug: 409.
    with pytest.raises(OperationIdReused):
        versions.edit(a.pk, content="other text", operation_id="op-2")
    with pytest.raises(OperationIdReused):
        versions.regenerate(a.pk, operation_id="op-2")
    _answered(edited)
    assert _versions(a)[-1].version_count == 3


def test_regenerating_a_message_whose_turn_never_ran_answers_it_from_the_previous_turns_context():
    session = conversation("tally", "a")
    never = waiting_message(session, "b")  # no task picks it up
    version = versions.regenerate(never.pk)
    never.refresh_from_db()
    assert (never.processing_status, never.attempts, never.context_before) == ("cancelled", 0, None)
    assert version.context_before == {"count": 1, "seen": ["a"]}
    assert reply_to(_answered(version)).content == "#2 b"


def test_editing_a_first_message_that_never_ran_answers_it_from_the_context_the_conversation_began_with():
    session = ConversationService.create_session("tally")
    never = waiting_message(session, "a")  # stopped before its turn started
    ConversationService.cancel_turn(session.pk)
    ConversationService.send_message(session.pk, "b")
    assert _context(session) == {"count": 1, "seen": ["b"]}

    version = versions.edit(never.pk, content="x")
    assert version.context_before == {"count": 0, "seen": []}
    assert reply_to(_answered(version)).content == "#1 x"
    assert _context(session) == {"count": 1, "seen": ["x"]}


def test_a_version_below_a_message_still_waiting_starts_from_what_that_message_leaves():
    session = conversation("tally", "a")
    b = waiting_message(session, "b")
    c = waiting_message(session, "c")
    version = versions.regenerate(c.pk)  # b has not run yet: its turn changes the Context first
    assert version.context_before is None
    assert reply_to(_answered(version)).content == "#3 c"
    assert reply_to(_answered(b)).content == "#2 b"


def test_rows_that_answer_no_user_message_and_bad_edits_are_refused():
    session = conversation("tally", "a")
    (a,) = user_messages(session)
    greeting = ConversationMessage.objects.create(session=session, message_type=MessageType.AGENT, content="hi")
    for call in (lambda: versions.regenerate(greeting.pk), lambda: versions.activate_version(greeting.pk)):
        with pytest.raises(InvalidInput) as caught:
            call()
        assert (caught.value.status_code, caught.value.code) == (400, ErrorCode.NOT_A_USER_MESSAGE)
    with pytest.raises(InvalidInput) as caught:
        versions.edit(reply_to(a).pk, content="x")
    assert caught.value.code == ErrorCode.NOT_A_USER_MESSAGE
    for content in ("  ", "a\x00b", 5):
        with pytest.raises(InvalidMessage) as caught:
            versions.edit(a.pk, content=content)
        assert caught.value.field == "content"
    for unknown in ("8d7f4d5e-0000-4000-8000-000000000000", "not an id"):
        with pytest.raises(MessageNotFound) as missing:
            versions.regenerate(unknown)
        assert (missing.value.status_code, missing.value.code) == (404, "not_found")
        with pytest.raises(MessageNotFound):
            versions.edit(unknown, content="x")
    assert len(user_messages(session)) == 1


def test_a_conversation_no_longer_active_gets_no_new_version():
    session = conversation("tally", "a")
    (a,) = user_messages(session)
    ConversationSession.objects.filter(pk=session.pk).update(status=SessionStatus.ARCHIVED)
    with pytest.raises(SessionNotActive) as caught:
        versions.regenerate(a.pk)
    assert caught.value.status_code == 409
    assert len(user_messages(session)) == 1


def test_the_service_finds_only_the_owners_messages():
    owner, other = UserFactory(), UserFactory()
    session = ConversationService.create_session("tally", user=owner)
    ConversationService.send_message(session.pk, "a", user=owner)
    (a,) = user_messages(session)
    for call in (
        lambda: ConversationService.regenerate(a.pk, user=other),
        lambda: ConversationService.edit_message(a.pk, "x", user=other),
        lambda: ConversationService.activate_version(a.pk, user=other),
        lambda: ConversationService.regenerate("not an id", user=owner),
    ):
        with pytest.raises(MessageNotFound) as caught:
            call()
        assert caught.value.status_code == 404
    assert len(user_messages(session)) == 1
    version = _answered(ConversationService.regenerate(a.pk, user=owner))
    assert reply_to(version).content == "#1 a"
    assert ConversationService.activate_version(a.pk, user=owner).active
    ConversationSession.objects.filter(pk=session.pk).update(status=SessionStatus.DELETED)
    with pytest.raises(MessageNotFound):
        ConversationService.regenerate(a.pk, user=owner)


def test_clients_hear_one_model_change_naming_every_row_that_changed(events):
    session = conversation("tally", "a", "b")
    a, b = user_messages(session)
    left = [b.pk, reply_to(b).pk]
    events.clear()
    version = versions.regenerate(b.pk, operation_id="op-9")
    changes = [p for p in events.of(EventName.MODEL_CHANGE) if p["operation"] == "update" and p["model"] == "message"]
    assert len(changes) == 1
    assert changes[0]["model"] == "message" and changes[0]["operation_id"] == "op-9"
    # The rows that left the path, and the siblings whose version_count changed (b itself).
    assert set(changes[0]["pks"]) == {str(pk) for pk in left}
    _answered(version)

    events.clear()
    versions.activate_version(b.pk)
    (change,) = [p for p in events.of(EventName.MODEL_CHANGE) if p["operation"] == "update" and p["model"] == "message"]
    assert set(change["pks"]) == {str(pk) for pk in [*left, version.pk, reply_to(version).pk]}
    wait_for_turns(10)
