"""The demo's Celery app: the confirmation e-mails go out from a task (M7, X2).

With ``CELERY_BROKER_URL`` set (``amqp://guest:guest@127.0.0.1:5672//`` for RabbitMQ,
``redis://127.0.0.1:6379/1`` for Redis), tasks go to the broker and a worker runs them::

    celery -A demo_project worker

With no broker configured, tasks run eagerly, inside the request that sends them, so the
demo needs nothing beyond ``make demo``.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")

app = Celery("demo_project")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _defaults() -> dict[str, Any]:
    from django.conf import settings

    # Read when the configuration is first used, after Django's settings are ready; the
    # project's CELERY_* settings still win. Without a broker, run tasks in place and let
    # their errors reach the caller, as a function call would.
    eager = not getattr(settings, "CELERY_BROKER_URL", "")
    return {"task_always_eager": eager, "task_eager_propagates": eager}


app.add_defaults(_defaults)
app.autodiscover_tasks()
