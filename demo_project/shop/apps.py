from django.apps import AppConfig


class ShopConfig(AppConfig):
    """The demo shop app."""

    name = "demo_project.shop"
    label = "shop"
    verbose_name = "Demo shop"
    default_auto_field = "django.db.models.BigAutoField"
