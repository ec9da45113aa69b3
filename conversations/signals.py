"""Django signals for telemetry, and the handlers that keep clients in sync.

``turn_started(sender=AgentClass, session, user_message)``
``turn_finished(sender=AgentClass, session, user_message, agent_message, status, metrics)``
``turn_failed(sender=AgentClass, session, user_message, exception)``
"""

from django.dispatch import Signal

turn_started = Signal()
turn_finished = Signal()
turn_failed = Signal()

