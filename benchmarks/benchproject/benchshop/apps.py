"""The benchmark shop app."""

from django.apps import AppConfig


class BenchShopConfig(AppConfig):
    """Products and the orders that take stock off them."""

    name = "benchproject.benchshop"
    label = "benchshop"
    default_auto_field = "django.db.models.BigAutoField"
