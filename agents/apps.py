from django.apps import AppConfig


class DemoAgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Demo agents"

    def ready(self) -> None:
        from django_ai.conversations.registry import register_agent

        from .chat_agents import EchoAgent, FileAnalystAgent, NotebookAgent, StorytellerAgent, SupportAgent
        from .sales import SalesAgent

        register_agent("support", SupportAgent)
        register_agent("sales", SalesAgent)
        register_agent("files", FileAnalystAgent)
        register_agent("writer", StorytellerAgent)
        register_agent("notes", NotebookAgent)
        register_agent("echo", EchoAgent)
