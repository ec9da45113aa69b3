from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tests.shop"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Django app loading: the models exist only once the registry is ready.
        from django_ai.conversations.registry import register_agent

        from .exposed import expose_shop

        expose_shop()
        register_agent("shop-tickets", "tests.shop.agents.TicketAgent")
