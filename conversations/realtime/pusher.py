"""The Pusher backend: hosted Pusher Channels, or any server that speaks the Pusher protocol
(soketi, a self-hosted Pusher-compatible server).

Options (``DJANGO_AI["REALTIME"] = {"BACKEND": "django_ai.conversations.realtime.pusher.PusherBackend",
"OPTIONS": {...}}``, or the seed's ``DJANGO_AI_PUSHER``):

- hosted: ``APP_ID``, ``KEY``, ``SECRET``, ``CLUSTER``;
- self-hosted: ``APP_ID`` (numeric), ``KEY``, ``SECRET``, ``HOST``, ``PORT`` and ``SCHEME``
  (``"http"``/``"https"``) or ``SSL`` (bool);
- optional: ``TIMEOUT`` (seconds per HTTP request, default 5), ``WS_HOST`` / ``WS_PORT`` (where
  browsers connect when it differs from where the server sends, e.g. behind a proxy),
  ``MAX_EVENT_BYTES`` (default 10240, Pusher's limit) and ``BATCH_SIZE`` (default 10, Pusher's limit);
- the sender's: ``COALESCE_WINDOW`` (seconds over which the chunks of a message are gathered,
  default 0.025), ``BATCH_WAIT`` (seconds an event due at once may wait for others to fill its
  request, default 0.002) and ``MAX_PENDING`` (events held while the server is slow or down,
  default 10000).

Events leave through the coalescing sender thread (:mod:`.sender`): one ``trigger_batch`` request
carries up to ``BATCH_SIZE`` events. The windows of all streams are aligned on one grid of ticks,
so that the text of many busy streams falls due together and fills whole batches. Long text is
split to fit ``MAX_EVENT_BYTES``; any other event that does not fit goes out trimmed, with
``"truncated": true`` (docs/protocol.md).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from .coalescer import OutgoingEvent, encode
from .events import truncated_event
from .sender import EventSender, QueuedBackend

if TYPE_CHECKING:
    from rest_framework.request import Request


__all__ = ["PusherBackend"]

logger = logging.getLogger("django_ai.conversations.realtime")

MAX_EVENT_BYTES = 10 * 1024
MAX_BATCH = 10
#: Where the options come from, for error messages.
OPTIONS_NAME = "the Pusher options (DJANGO_AI['REALTIME']['OPTIONS'] or DJANGO_AI_PUSHER)"


def _import_pusher() -> Any:
    try:
        import pusher
    except ImportError as exc:
        raise ImproperlyConfigured(
            "The Pusher realtime backend needs the 'pusher' package: pip install 'django-ai-first[pusher]'."
        ) from exc
    return pusher


class PusherBackend(QueuedBackend):
    """Sends events through Pusher's HTTP API and signs private-channel subscriptions.

    Override :meth:`get_client` to build the ``pusher.Pusher`` client differently (another HTTP
    backend, extra options).
    """

    name = "pusher"
    default_options: ClassVar[dict[str, Any]] = {
        "APP_ID": None,
        "KEY": None,
        "SECRET": None,
        "CLUSTER": None,
        "HOST": None,
        "PORT": None,
        "SCHEME": None,
        "SSL": None,
        "TIMEOUT": 5,
        "WS_HOST": None,
        "WS_PORT": None,
        "MAX_EVENT_BYTES": MAX_EVENT_BYTES,
        "BATCH_SIZE": MAX_BATCH,
        "COALESCE_WINDOW": 0.025,
        "BATCH_WAIT": 0.002,
        "MAX_PENDING": 10_000,
    }

    def __init__(self, *, options: dict[str, Any] | None = None):
        super().__init__(options=options)
        missing = [key for key in ("APP_ID", "KEY", "SECRET") if not self.options.get(key)]
        if missing:
            raise ImproperlyConfigured(
                f"{OPTIONS_NAME} lack {', '.join(missing)}: copy them from your Pusher app "
                "(or your soketi configuration), with CLUSTER for hosted Pusher or HOST/PORT for your own server."
            )
        self.key = str(self.options["KEY"])
        self.secret = str(self.options["SECRET"])
        self.max_event_bytes = int(self.options.get("MAX_EVENT_BYTES") or MAX_EVENT_BYTES)
        self.client = self.get_client()
        self.sender = EventSender(
            deliver=self._deliver,
            name=self.name,
            window=float(self.options["COALESCE_WINDOW"]),
            max_batch=int(self.options.get("BATCH_SIZE") or MAX_BATCH),
            max_event_bytes=self.max_event_bytes,
            max_pending=int(self.options["MAX_PENDING"]),
            align=True,
            linger=float(self.options["BATCH_WAIT"] or 0),
        )

    @property
    def ssl(self) -> bool:
        if self.options.get("SSL") is not None:
            return bool(self.options["SSL"])
        scheme = str(self.options.get("SCHEME") or "").lower()
        if scheme:
            if scheme not in ("http", "https"):
                raise ImproperlyConfigured(f"SCHEME of {OPTIONS_NAME} is {scheme!r}; use 'http' or 'https'.")
            return scheme == "https"
        return True

    def get_client(self) -> Any:
        pusher = _import_pusher()
        options = self.options
        app_id = str(options["APP_ID"])
        if not app_id.isdigit():
            raise ImproperlyConfigured(
                f"APP_ID of {OPTIONS_NAME} is {app_id!r}; Pusher app ids are numeric (set SOKETI_DEFAULT_APP_ID to a "
                "number for soketi)."
            )
        port = options.get("PORT")
        return pusher.Pusher(
            app_id=app_id,
            key=self.key,
            secret=self.secret,
            cluster=options.get("CLUSTER") or None,
            host=options.get("HOST") or None,
            port=int(port) if port else None,
            ssl=self.ssl,
            timeout=float(options.get("TIMEOUT") or 5),
        )

    def _deliver(self, events: list[OutgoingEvent]) -> None:
        batch = []
        for event in events:
            data = self.encode_event(event)
            if data is not None:
                batch.append({"channel": event.channel, "name": event.event, "data": data})
        if batch:
            self.client.trigger_batch(batch, already_encoded=True)

    def encode_event(self, event: OutgoingEvent) -> str | None:
        """The JSON text sent for ``event``, or None when it cannot be sent at all.

        Text is split to fit before it gets here; another event larger than ``MAX_EVENT_BYTES``
        (a widget with large ``data``) is sent trimmed to its envelope and ids with
        ``"truncated": true``, and clients read the full row through the bridge. Override to
        shrink such events differently.
        """
        data = encode(event.payload)
        if len(data.encode("utf-8")) <= self.max_event_bytes:
            return data
        data = encode(truncated_event(event.payload))
        if len(data.encode("utf-8")) <= self.max_event_bytes:
            logger.info(
                "A %s event for %s is larger than Pusher's %d bytes; it was sent truncated (clients read the row).",
                event.event,
                event.channel,
                self.max_event_bytes,
            )
            return data
        logger.error(
            "A %s event for %s is larger than Pusher's %d bytes even when truncated and was not sent.",
            event.event,
            event.channel,
            self.max_event_bytes,
        )
        return None

    def authenticate(self, *, channel_name: str, socket_id: str) -> dict[str, Any]:
        """``{"auth": "<key>:<hmac-sha256 of 'socket_id:channel_name'>"}`` as Pusher expects."""
        signature = hmac.new(self.secret.encode(), f"{socket_id}:{channel_name}".encode(), hashlib.sha256).hexdigest()
        return {"auth": f"{self.key}:{signature}"}

    def client_config(self, request: Request) -> dict[str, Any]:
        options = self.options
        config: dict[str, Any] = {"key": self.key, "cluster": options.get("CLUSTER") or None}
        host = options.get("WS_HOST") or options.get("HOST")
        if host:
            port = options.get("WS_PORT") or options.get("PORT")
            config.update(host=host, port=int(port) if port else None, scheme="https" if self.ssl else "http")
        config["force_tls"] = self.ssl
        return config
