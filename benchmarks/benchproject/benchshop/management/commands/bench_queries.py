"""``bench_queries``: what one first execution and one replay cost in round trips.

Runs two requests through Django's test client against this server's variant (the
``BENCH_VARIANT`` of the environment) and counts, for each, the SQL statements, the
commits that wrote (each one an fsync on PostgreSQL's default settings) and the Redis commands.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection
from django.test import Client
from redis.client import Pipeline, Redis

from benchproject.benchshop.management.commands.bench_seed import token_of
from benchproject.benchshop.models import Product

WRITES = ("INSERT", "UPDATE", "DELETE")


@contextmanager
def counting() -> Iterator[dict[str, int]]:
    """Count SQL statements, writing commits and Redis round trips inside the block.

    A commit counts only if its transaction wrote: a read-only commit costs no fsync.
    """
    counts = {"sql": 0, "commits": 0, "redis": 0}
    pending = {"write": False}

    def on_query(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        counts["sql"] += 1
        if sql.lstrip()[:6].upper() in WRITES:
            if connection.in_atomic_block:
                pending["write"] = True
            else:
                counts["commits"] += 1  # autocommit: the statement commits by itself
        return execute(sql, params, many, context)

    real_commit = connection.commit
    real_execute = Redis.execute_command
    real_pipeline = Pipeline.execute

    def commit() -> None:
        if pending["write"]:
            counts["commits"] += 1
            pending["write"] = False
        real_commit()

    def redis_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(self, Pipeline):
            counts["redis"] += 1
        return real_execute(self, *args, **kwargs)

    def pipeline_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["redis"] += 1  # one round trip, however many commands
        return real_pipeline(self, *args, **kwargs)

    connection.commit = commit  # type: ignore[method-assign]
    Redis.execute_command = redis_execute  # type: ignore[method-assign]
    Pipeline.execute = pipeline_execute  # type: ignore[method-assign]
    try:
        with connection.execute_wrapper(on_query):
            yield counts
    finally:
        del connection.commit
        Redis.execute_command = real_execute  # type: ignore[method-assign]
        Pipeline.execute = real_pipeline  # type: ignore[method-assign]


class Command(BaseCommand):
    help = (
        "Print, as JSON, the SQL statements, commits and Redis commands of one first "
        "execution and one replay on this environment's BENCH_VARIANT."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        variant = settings.VARIANT
        product = Product.objects.order_by("pk").first()
        assert product is not None, "run bench_seed first"
        key = str(uuid.uuid4())
        body = json.dumps({"product": product.pk, "quantity": 1, "note": key})
        client = Client(
            HTTP_AUTHORIZATION=f"Token {token_of(0)}",
            HTTP_IDEMPOTENCY_KEY=key,
        )
        # Warm up: the first request of a process loads code and opens connections.
        warm = str(uuid.uuid4())
        client.post(
            f"/{variant}/orders/",
            json.dumps({"product": product.pk, "quantity": 1, "note": warm}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=warm,
        )
        result = {}
        for name in ("first", "replay"):
            with counting() as counts:
                response = client.post(f"/{variant}/orders/", body, content_type="application/json")
            result[name] = dict(counts, status=response.status_code)
        self.stdout.write(json.dumps(result))
