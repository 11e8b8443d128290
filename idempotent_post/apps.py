from django.apps import AppConfig


class IdempotentPostConfig(AppConfig):
    """App config: registers the system checks."""

    name = "idempotent_post"
    verbose_name = "Idempotent POST"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the checks, and imports the lock backends (with redis-py) once at
        # startup rather than in concurrent first requests.
        from idempotent_post import checks, locks  # noqa: F401
