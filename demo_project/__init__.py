"""The demo shop: a normal Django project that shows idempotent-post at work."""

# Loaded with Django, so that @shared_task uses the demo's Celery app (Celery's own layout).
from demo_project.celery import app as celery_app

__all__ = ["celery_app"]
