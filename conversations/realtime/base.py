"""The realtime backend interface."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from .events import TEXT_CHUNK, build_event

if TYPE_CHECKING:
    from rest_framework.request import Request


class BaseRealtimeBackend:
    """Delivers events to the subscribers of a channel.

    Subclass it to support another transport. ``send`` must not block agent code for long: a
    backend that talks to a remote server queues the event and sends it from elsewhere. Failures
    are logged, never raised into the caller.

    The backend is built with ``DJANGO_AI["REALTIME"]["OPTIONS"]``; ``self.options`` holds them
    over :attr:`default_options`.
    """

    #: Name shown by the system checks and in logs.
    name = "base"
    #: Every option this backend reads, with its default. The system checks warn about options
    #: not listed here (unless it lists none) and the old flat settings (``SSE_*``...) map only
    #: into options listed here.
    default_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, options: dict[str, Any] | None = None):
        self.options = {**self.default_options, **(options or {})}

    def send(self, channel: str, event: str, payload: dict[str, Any]) -> None:
        """Queue or deliver ``payload`` as ``event`` on ``channel``."""
        raise NotImplementedError("Realtime backends must implement send(channel, event, payload).")

    def send_text(self, channel: str, template: dict[str, Any], sequence: int, text: str) -> None:
        """Queue or deliver one streamed write: ``text`` as write number ``sequence`` of the stream
        whose fixed payload is ``template`` (``session_id``, ``message_id``: one dict per stream).

        The default sends every write as its own ``text_chunk`` event with an ``id`` and a
        ``timestamp`` (the Memory backend records them so). A backend that coalesces overrides it
        to keep only the text and build one event per window (:class:`~.sender.QueuedBackend`).
        """
        self.send(channel, TEXT_CHUNK, build_event(TEXT_CHUNK, **template, sequence=sequence, text=text))

    def text_sink(self, channel: str, template: dict[str, Any]) -> Callable[[int, str], None]:
        """What ``ResponseStream.write()`` calls for each write of one stream, as
        ``sink(sequence, text)``: built once, when the stream starts. The default is
        :meth:`send_text` with the stream's ``channel`` and ``template`` bound. It may raise; the
        stream then falls back to ``publish_text``, which reports failures."""
        return partial(self.send_text, channel, template)

    def flush(self, timeout: float | None = None) -> None:
        """Deliver everything queued so far (called at stream end and at shutdown)."""

    def flush_channel(self, channel: str, timeout: float | None = None) -> None:
        """Deliver what is queued on ``channel`` (called at stream end: the other streams' text
        keeps its windows). The default flushes everything."""
        self.flush(timeout)

    def close(self) -> None:
        """Release connections and threads; the backend may be rebuilt afterwards."""
        self.flush()

    def authenticate(self, *, channel_name: str, socket_id: str) -> dict[str, Any]:
        """The answer of ``realtime/auth/`` once the request may read ``channel_name``.

        Called only after the permission check passed. Pusher answers with a signature; backends
        whose clients need none confirm the channel. Override for another transport's handshake.
        """
        return {"channel_name": channel_name, "authorized": True}

    def client_config(self, request: Request) -> dict[str, Any]:
        """What ``realtime/config/`` tells clients about this backend (never secrets)."""
        return {"backend": self.name}
