"""The turn: one user message answered by the conversation's agent, from the save to the reply.

One job per module; imports run down this list, never up (``tests/test_import_graph.py``):

- ``state``: :class:`~.state.TurnState` of the turn being answered, shared by the runner and the
  agent helpers of ``django_ai.conversations.context`` (``current_turn``); ``TurnSuspended``, which
  an agent raises to suspend its turn until tool calls are approved.
- ``lease``: the conversation's turn lease, SQL only (take, renew, release, take over).
- ``notify``: what a turn tells the outside: ``message_status`` events, the turn signals, the
  generic error text users see.
- ``steps``: a reply's tool steps ended (answered, expired, cancelled) and a suspended turn resumed
  once nothing waits; the approval expiry; ``schedule`` is passed in.
- ``execution``: running ``get_response`` on a helper thread while the turn's thread serves its
  database work, renews the lease, watches for cancel requests and the timeout.
- ``outcome``: recording how a turn ended (completed, failed, cancelled, timed out) or was
  suspended for tool approval, in one transaction. A change to how a turn fails goes here.
- ``runner``: run one turn, and the queue loop of a conversation (``process_pending``).
- ``policy``: what a message sent during a turn does (the agent's ``concurrency``), cancel, and
  the stop of turns whose message left the active path (``supersede``).
- ``versions``: the conversation's tree of versions: regenerate, edit, switch, the active path.
- ``inprocess``: the web process's background threads for a backend that runs tasks in the caller.
- ``enqueue``: putting a task on the configured backend and queue (turns and file extraction).
- ``recovery``: the stale-turn sweep (dead workers, lost tasks); ``schedule`` is passed in.
- ``tasks``: the turn task (``answer_pending``) a worker runs.
- ``scheduling``: making sure a conversation's waiting messages get answered, re-running failed ones.
- ``approval``: ``answer_approval``, the user's answer to a tool call waiting for approval.
- ``inline``: answering in the caller's thread (``ConversationService.send_message``).
- ``sweeps``: when the recovery sweep runs (worker loop, a web process's first request).
- ``hooks``: the ``post_save`` receiver that schedules a saved user message.
- ``checks``: system checks of the task settings.

The app's ``ready()`` connects ``hooks`` and ``sweeps``; nothing here runs at import.
"""
