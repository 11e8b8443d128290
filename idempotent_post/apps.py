from importlib.util import find_spec

from django.apps import AppConfig


class IdempotentPostConfig(AppConfig):
    """App config: registers the system checks, and the metrics when they are installed."""

    name = "idempotent_post"
    verbose_name = "Idempotent POST"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the checks, and imports the lock backends (with redis-py) once at
        # startup rather than in concurrent first requests.
        from idempotent_post import checks, locks  # noqa: F401

        # The [metrics] extra (C6): find_spec() looks prometheus_client up without importing
        # it, so a project without it pays nothing.
        if find_spec("prometheus_client") is not None:
            from idempotent_post import metrics

            metrics.connect()
