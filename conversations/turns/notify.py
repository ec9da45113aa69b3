"""What a turn tells the outside: ``message_status`` events, the turn signals, the error text.

The runner, crash recovery and cancel all report through here, so a client and a signal receiver
see the same thing whichever of them ended a turn. Turn logs go to the documented logger
``django_ai.conversations.turns``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.dispatch import Signal

from ..conf import ai_settings
from ..constants import BuiltinModel, EventName, ModelOperation
from ..models import ConversationMessage
from ..realtime import publish

__all__ = ["generic_error_text", "logger", "publish_status", "send_path_change", "send_turn_signal"]

logger = logging.getLogger("django_ai.conversations.turns")


def publish_status(message: ConversationMessage, **extra: Any) -> None:
    """Send ``message_status`` for ``message`` (its current ``processing_status``)."""
    publish(
        EventName.MESSAGE_STATUS,
        session_id=message.session_id,
        message_id=message.pk,
        message_type=message.message_type,
        status=message.processing_status,
        **extra,
    )


def send_path_change(session_id: Any, pks: list[Any], *, operation_id: str | None = None) -> None:
    """Send one ``model_change`` (``update`` of the exposed model ``message``) naming ``pks`` on the
    conversation's channel when the current transaction commits: rows that joined or left the
    active path, or whose version count changed (``turns.versions``). Bulk updates send no
    ``post_save``, so the bridge's own events do not cover them."""
    if not pks:
        return
    ids = [str(pk) for pk in dict.fromkeys(pks)]

    def send() -> None:
        publish(
            EventName.MODEL_CHANGE,
            session_id=session_id,
            model=str(BuiltinModel.MESSAGE),
            operation=str(ModelOperation.UPDATE),
            pks=ids,
            operation_id=operation_id or None,
        )

    transaction.on_commit(send, robust=True)


def send_turn_signal(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send a turn signal; a failing receiver is logged and never breaks the turn."""
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, BaseException):
            logger.error(
                "A receiver of a turn signal failed: %r",
                receiver,
                exc_info=(type(result), result, result.__traceback__),
            )


def generic_error_text(exc: BaseException | None = None) -> str:
    """The text of a failed turn's system message; the exception only with ``EXPOSE_ERROR_DETAILS``."""
    expose = ai_settings.EXPOSE_ERROR_DETAILS
    if expose is None:
        expose = settings.DEBUG
    text = ai_settings.GENERIC_ERROR_MESSAGE
    if expose and exc is not None:
        text = f"{text}\n\n{type(exc).__name__}: {exc}"
    return text
