"""``bench_resetdb``: drop and create the benchmark database, and flush its Redis database."""

from __future__ import annotations

from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django_redis import get_redis_connection
from psycopg import sql


class Command(BaseCommand):
    help = "Drop and re-create the benchmark's PostgreSQL database; flush its Redis database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--keep-redis", action="store_true", help="Leave the Redis database alone."
        )

    def handle(self, *args: Any, keep_redis: bool, **options: Any) -> None:
        database = settings.DATABASES["default"]
        # Connect to the maintenance database: the benchmark database may not exist yet.
        with psycopg.connect(
            dbname="postgres",
            user=database["USER"] or None,
            password=database["PASSWORD"] or None,
            host=database["HOST"] or None,
            port=database["PORT"] or None,
            autocommit=True,
        ) as connection:
            name = sql.Identifier(database["NAME"])
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            connection.execute(sql.SQL("CREATE DATABASE {}").format(name))
        self.stdout.write(f"Created database {database['NAME']}.")
        if not keep_redis:
            get_redis_connection("default").flushdb()
            self.stdout.write("Flushed the Redis database.")
