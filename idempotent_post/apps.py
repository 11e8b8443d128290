from django.apps import AppConfig


class IdempotentPostConfig(AppConfig):
    """App config: registers the system checks."""

    name = "idempotent_post"
    verbose_name = "Idempotent POST"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from idempotent_post import checks  # noqa: F401  (registers the checks)
