"""The idempotency record: one row per (scope, key)."""

from __future__ import annotations

from typing import Any

from django.db import connections, models
from django.utils import timezone

# The PostgreSQL function that takes the advisory lock and then reads (migration 0003),
# and the id of the row it answers with when the lock is held by another transaction.
LOCK_AND_READ_FUNCTION = "idempotent_post_lock_and_read"
NOT_LOCKED = -1

#: Fields the engine never reads back: its reads leave them out (see RecordManager.lookup).
UNREAD_FIELDS = frozenset({"method", "path", "retry_count", "created_at", "completed_at"})

# Fields whose database value is the Python value itself when it has one of these types,
# on every backend, as is ``None`` (NULL) for every field of the table: the insert skips
# their preparation, which cost more than the statement's round trip.
_PLAIN_FIELDS = (models.CharField, models.IntegerField, models.BooleanField)
_PLAIN_VALUES = frozenset({str, int, bool})


class RecordManager(models.Manager["IdempotencyRecord"]):
    """The engine's hot-path queries, as plain SQL built once per database.

    A replay is one of these reads; a first execution two reads and an insert. Raw SQL
    skips the ORM's query compilation, which costs more than the round trip itself.
    """

    def _sql(self, using: str) -> dict[str, str]:
        cache: dict[str, dict[str, str]] = self.__dict__.setdefault("_sql_cache", {})
        if using not in cache:
            connection = connections[using]
            qn = connection.ops.quote_name
            meta = self.model._meta
            table = qn(meta.db_table)
            fields = [f for f in meta.concrete_fields if not f.primary_key]
            names = [qn(str(f.column)) for f in fields]
            columns = ", ".join(f"r.{qn(str(f.column))}" for f in self._read_fields())
            where = f"r.{qn('scope')} = %s AND r.{qn('key')} = %s"
            cache[using] = {
                "read": f"SELECT {columns} FROM {table} r WHERE {where}",
                # PostgreSQL: the function of migration 0003 takes the advisory lock, then
                # reads in a statement of its own (a snapshot taken after the lock: S8).
                "lock_and_read": f"SELECT {columns} FROM {LOCK_AND_READ_FUNCTION}(%s, %s, %s) r",
                "insert": (
                    f"INSERT INTO {table} ({', '.join(names)}) "
                    f"VALUES ({', '.join(['%s'] * len(fields))})"
                ),
            }
        return cache[using]

    def _read_fields(self) -> list[Any]:
        """The fields the engine's reads select, in the model's order; the rest are deferred.

        Timestamps cost the most to load, and only those that decide are read.
        """
        meta = self.model._meta
        return [f for f in meta.concrete_fields if f.name not in UNREAD_FIELDS]

    def _converters(self, using: str) -> tuple[list[str], list[tuple[Any, list[Any]]]]:
        """The columns the reads select, and each one's database converters (as the ORM's)."""
        cache: dict[str, Any] = self.__dict__.setdefault("_converter_cache", {})
        if using not in cache:
            connection = connections[using]
            meta = self.model._meta
            fields = self._read_fields()
            columns = [field.get_col(meta.db_table) for field in fields]  # type: ignore[union-attr]
            cache[using] = (
                [str(field.attname) for field in fields],  # type: ignore[union-attr]
                [
                    (
                        col,
                        [
                            *connection.ops.get_db_converters(col),
                            *col.get_db_converters(connection),
                        ],
                    )
                    for col in columns
                ],
            )
        return cache[using]  # type: ignore[no-any-return]

    def _fetch(self, using: str, sql: str, params: list[Any]) -> IdempotencyRecord | None:
        """Run a read of the hot path and build its record, without a queryset's machinery."""
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        names, converters = self._converters(using)
        values = list(row)
        for index, (col, functions) in enumerate(converters):
            for convert in functions:
                values[index] = convert(values[index], col, connection)
        return self.model.from_db(using, names, values)

    def lookup(self, using: str, scope: str, key: str) -> IdempotencyRecord | None:
        """The record of (scope, key), or ``None``: one indexed read.

        What the engine decides and replays by; the fields of ``UNREAD_FIELDS`` load from
        the database when first used (Django's deferred fields).
        """
        return self._fetch(using, self._sql(using)["read"], [scope, key])

    def lock_and_lookup(
        self, using: str, lock_number: int, scope: str, key: str
    ) -> tuple[bool, IdempotencyRecord | None]:
        """PostgreSQL: try the advisory lock of (scope, key), then read its record.

        One round trip. The read runs after the lock was granted, with its own snapshot,
        so it sees every commit made before (S8). ``(False, None)`` when another
        transaction holds the lock.
        """
        row = self._fetch(using, self._sql(using)["lock_and_read"], [lock_number, scope, key])
        if row is not None and row.pk == NOT_LOCKED:
            return False, None
        return True, row

    def _insert_fields(self) -> list[tuple[models.Field[Any, Any], bool]]:
        """The inserted fields, each with whether it takes a plain value as it is."""
        if "_insert_cache" not in self.__dict__:
            fields = [f for f in self.model._meta.concrete_fields if not f.primary_key]
            self.__dict__["_insert_cache"] = [(f, isinstance(f, _PLAIN_FIELDS)) for f in fields]
        return self.__dict__["_insert_cache"]  # type: ignore[no-any-return]

    def insert(self, using: str, record: IdempotencyRecord, keep_id: bool = False) -> None:
        """Insert ``record`` without the ORM's save machinery (no signals: a private table).

        ``keep_id``: set ``record.pk`` from the database (RETURNING where it has it).
        """
        connection = connections[using]
        params: list[Any] = []
        for field, plain in self._insert_fields():
            value = getattr(record, field.attname)
            if value is not None and not (plain and type(value) in _PLAIN_VALUES):
                value = field.get_db_prep_save(value, connection)
            params.append(value)
        sql = self._sql(using)["insert"]
        returning = keep_id and connection.features.can_return_columns_from_insert
        if returning:
            sql += f" RETURNING {connection.ops.quote_name(str(self.model._meta.pk.column))}"
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            if returning:
                record.pk = cursor.fetchone()[0]
            elif keep_id:
                record.pk = cursor.lastrowid


class IdempotencyRecord(models.Model):
    """What the engine knows about one key: its reservation, then its stored outcome.

    The unique constraint on (scope, key) is what makes execution exactly-once (S4);
    every lock backend only speeds up the in-flight check.
    """

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        COMPLETED = "completed", "completed"

    scope = models.CharField(max_length=255)
    key = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=16, blank=True)
    path = models.CharField(max_length=2048, blank=True)
    # The token of the attempt that holds the reservation; a late holder whose lease
    # was taken over can no longer complete or release it.
    owner = models.CharField(max_length=32, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    retry_count = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=list, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    # False where the body could not be kept at all (larger than the file limit: P3).
    body_stored = models.BooleanField(default=True)
    # The name, in the response storage, of a body too large for the row (P3).
    body_file = models.CharField(max_length=255, blank=True)
    recovery_points = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    objects = RecordManager()

    class Meta:
        verbose_name = "idempotency record"
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotent_post_scope_key"),
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotent_post_expires")]

    def __str__(self) -> str:
        return f"{self.key} ({self.scope})"

    def is_live(self, now=None) -> bool:
        """Whether the record still counts: not expired and, if in progress, within its lease."""
        now = now or timezone.now()
        if self.expires_at <= now:
            return False
        if self.state == self.State.IN_PROGRESS:
            return self.locked_until is not None and self.locked_until > now
        return True
