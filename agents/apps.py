from django.apps import AppConfig


class DemoAgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Demo agents"

    def ready(self) -> None:
        from django_ai.conversations.registry import register_agent

        from .chat_agents import EchoAgent, SupportAgent

        register_agent("echo", EchoAgent)
        register_agent("support", SupportAgent)
