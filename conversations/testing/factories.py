"""factory-boy factories for the conversation models.

``SessionFactory()`` makes an active session owned by a fresh anonymous visitor;
``SessionFactory(user=user)`` one owned by a user. ``MessageFactory(session=s)`` adds a completed
user message, ``WidgetFactory(session=s)`` a widget with its widget message, and
``FileFactory(text="...")`` a stored file whose extraction is done (``FileFactory()`` leaves it
pending, ``FileFactory(failed=True)`` failed).

Subclass them in your project to change defaults (e.g. ``agent_path``) instead of repeating the
same keyword arguments in every test. Needs factory-boy: ``pip install 'django-ai-first[testing]'``.
"""

from __future__ import annotations

import hashlib

try:
    import factory
    from factory.django import DjangoModelFactory
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "django_ai.conversations.testing.factories needs factory-boy: "
        "pip install 'django-ai-first[testing]' (or pip install factory-boy)."
    ) from exc

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.utils import timezone

from ..constants import ExtractionStatus, MessageType, ProcessingStatus, SessionStatus
from ..models import ConversationMessage, ConversationSession, ConversationWidget, File
from ..owners import new_anonymous_id

__all__ = [
    "FileFactory",
    "MessageFactory",
    "SessionFactory",
    "UserFactory",
    "WidgetFactory",
]


class UserFactory(DjangoModelFactory):
    """A user of ``AUTH_USER_MODEL`` with a unique username and the password ``"password"``."""

    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("password")


class SessionFactory(DjangoModelFactory):
    """A ConversationSession; anonymous (fresh anonymous id) unless ``user`` is given."""

    class Meta:
        model = ConversationSession

    agent_path = "test-agent"
    user = None
    anonymous_id = factory.LazyAttribute(lambda o: "" if o.user is not None else new_anonymous_id())
    title = ""
    context = factory.LazyFunction(dict)
    metadata = factory.LazyFunction(dict)
    status = SessionStatus.ACTIVE


class MessageFactory(DjangoModelFactory):
    """A ConversationMessage: a completed user message unless told otherwise."""

    class Meta:
        model = ConversationMessage
        skip_postgeneration_save = True

    session = factory.SubFactory(SessionFactory)
    message_type = MessageType.USER
    content = factory.Sequence(lambda n: f"Message {n}")
    processing_status = ProcessingStatus.COMPLETED
    timestamp = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def files(self, create: bool, extracted: list[File] | None, **kwargs: object) -> None:
        """``MessageFactory(files=[file, ...])`` attaches files."""
        if create and extracted:
            self.files.set(extracted)


class WidgetFactory(DjangoModelFactory):
    """A ConversationWidget together with the widget message that shows it."""

    class Meta:
        model = ConversationWidget

    session = factory.SubFactory(SessionFactory)
    widget_type = "card"
    data = factory.LazyFunction(dict)
    display_data = factory.LazyFunction(dict)
    message = factory.SubFactory(
        MessageFactory,
        session=factory.SelfAttribute("..session"),
        message_type=MessageType.WIDGET,
        content="",
        component_type=factory.SelfAttribute("..widget_type"),
        component_data=factory.SelfAttribute("..data"),
    )


class FileFactory(DjangoModelFactory):
    """An uploaded File stored in the default storage.

    ``content`` (bytes) is the file's body. ``text="..."`` marks extraction done with that text;
    ``failed=True`` marks it failed; otherwise extraction is pending.
    """

    class Meta:
        model = File
        exclude = ("content",)

    class Params:
        content = b"Hello from a test file.\n"
        text = None
        failed = factory.Trait(
            extraction_status=ExtractionStatus.FAILED,
            extraction_error="The test file could not be read.",
        )

    user = None
    anonymous_id = ""
    session = None
    filename = factory.Sequence(lambda n: f"document-{n}.txt")
    content_type = "text/plain"
    file = factory.LazyAttribute(lambda o: ContentFile(o.content, name=o.filename))
    size = factory.LazyAttribute(lambda o: len(o.content))
    sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.content).hexdigest())
    extraction_status = factory.LazyAttribute(
        lambda o: ExtractionStatus.DONE if o.text is not None else ExtractionStatus.PENDING
    )
    extracted_text = factory.LazyAttribute(lambda o: o.text or "")
    extracted_at = factory.LazyAttribute(lambda o: timezone.now() if o.text is not None else None)
    extractor = factory.LazyAttribute(lambda o: "test" if o.text is not None else "")
