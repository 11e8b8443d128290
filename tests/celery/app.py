"""The Celery app of the X2 tests, run by worker child processes on the test database.

``CELERY_TEST_BROKER`` names the broker; ``CELERY_TEST_LOG`` a file where every finished
delivery appends one JSON line (task id, state, time), so tests wait on conditions.
"""

import json
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from celery import Celery  # noqa: E402
from celery.signals import task_postrun  # noqa: E402

app = Celery("tests.celery", include=["tests.celery.tasks"])
app.conf.update(
    broker_url=os.environ.get("CELERY_TEST_BROKER", "memory://"),
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    # Redis hands an unacknowledged message out again after this long: a killed worker's
    # task comes back within seconds, and a long task is delivered twice (X2, S9).
    broker_transport_options={
        "visibility_timeout": 4,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
)


@task_postrun.connect
def _log(task_id: str, state: str, **_: object) -> None:
    path = os.environ.get("CELERY_TEST_LOG")
    if path:
        with open(path, "a") as log:
            log.write(json.dumps({"id": task_id, "state": state, "at": time.time()}) + "\n")
