"""Django signals of the turn, for your own telemetry (metrics, tracing, alerts).

The sender is the agent class (``ConversationAgent`` when the session's agent is not registered).
Receivers run in the thread that runs the turn (a task worker, usually); one that raises is logged
and never breaks the turn. Keep them quick: the conversation waits for them.

``turn_started(sender, session, user_message)``
    The agent is about to answer ``user_message`` (now ``processing``). Sent once per turn that
    starts, always followed by one ``turn_finished`` (by this process, or by crash recovery).

``turn_finished(sender, session, user_message, agent_message, status, metrics)``
    Every turn ends with it: ``status`` is ``completed``, ``failed`` or ``cancelled``;
    ``agent_message`` may be None (the agent failed before writing); ``metrics`` is the dict also
    stored on the agent message: ``queue_wait_ms``, ``first_chunk_ms``, ``total_ms``, ``chunks``,
    ``attempt``, token counts reported with ``context.report_usage`` and, for a turn that was
    stopped, ``stopped`` (``"cancelled"``, ``"timeout"``, ``"interrupted"``).

``turn_failed(sender, session, user_message, exception)``
    Sent before ``turn_finished`` when a turn fails: the agent raised ``exception``, timed out
    (``TurnCancelled("timeout")``), or its worker died (``TurnInterrupted``).

``message_feedback(sender, session, message, rating, comment, user)``
    The owner rated the agent reply ``message`` (``POST models/message/<pk>/feedback/`` or
    ``ConversationService.give_feedback``): ``rating`` is ``"up"``, ``"down"`` or None (the rating
    was withdrawn), ``comment`` a str (may be empty), ``user`` the user who rated (None for an
    anonymous visitor). Sent once the rating is committed, in the request's thread.
"""

from django.dispatch import Signal

__all__ = ["message_feedback", "turn_failed", "turn_finished", "turn_started"]

turn_started = Signal()
turn_finished = Signal()
turn_failed = Signal()
message_feedback = Signal()
