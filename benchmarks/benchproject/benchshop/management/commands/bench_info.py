"""``bench_info``: the versions and settings a benchmark result depends on, as JSON."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection
from django_redis import get_redis_connection

PACKAGES = [
    "Django",
    "djangorestframework",
    "gunicorn",
    "psycopg",
    "django-redis",
    "redis",
    "drf-idempotency",
    "django-idempotency-key",
    "djangorestframework-idempotency-key",
]


def version_of(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


class Command(BaseCommand):
    help = "Print the Python, package, PostgreSQL and Redis versions and settings as JSON."

    def handle(self, *args: Any, **options: Any) -> None:
        info: dict[str, Any] = {
            "python": platform.python_version(),
            "packages": {name: version_of(name) for name in PACKAGES},
        }
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            info["postgresql"] = cursor.fetchone()[0]
            for name in ("fsync", "synchronous_commit", "shared_buffers", "wal_sync_method"):
                cursor.execute(f"SHOW {name}")
                info[f"postgresql_{name}"] = cursor.fetchone()[0]
        info["redis"] = get_redis_connection("default").info("server")["redis_version"]
        self.stdout.write(json.dumps(info))
