"""In-flight locks (L2, L3, S8).

A lock answers "is somebody running this key right now?" without a commit, and owns
the read that follows it: the engine calls :meth:`Lock.acquire_and_read` inside its
transaction, and whatever the lock, that read sees every commit made before the lock
was granted (S8). Correctness never rests on the lock alone: the unique constraint on
(scope, key) is the last line.

- PostgreSQL: a transaction-scoped advisory lock, freed by commit, rollback, or a
  killed process's dropped connection (S5). Lock and read are one round trip: a
  server-side function takes the lock, then reads in a statement of its own, which in
  READ COMMITTED takes a fresh snapshot after the lock was granted.
- MySQL/MariaDB: a named lock (``GET_LOCK``), freed by ``RELEASE_LOCK`` after the
  commit, or when the connection drops.
- SQLite and other databases: no lock; the engine commits a durable reservation.
- ``cache``: Redis through django-redis, redis-py's lock: an owner token, ``SET NX PX``,
  and a compare-and-delete release, so a late holder never frees another's lock. Its
  expiry is the lease, renewed while the view runs (S9).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from django.core.cache import caches
from django.db import connections

from idempotent_post.models import IdempotencyRecord

try:
    # Imported with the app, not on the first request: redis-py's modules import each
    # other, and threads importing them at once see half-initialised modules.
    from django_redis import get_redis_connection
    from redis.exceptions import LockError, RedisError
except ImportError:  # the cache backend is optional; checks refuse it without django-redis
    get_redis_connection = None  # type: ignore[assignment]
    LockError = RedisError = Exception  # type: ignore[assignment,misc]

LOCK_PREFIX = "idempotent_post:lock:"

Read = Callable[[], "IdempotencyRecord | None"]


class LockUnavailable(Exception):
    """The lock store could not be reached."""


def lock_id(scope: str, key: str) -> bytes:
    """A stable digest of (scope, key) that names the lock."""
    return hashlib.blake2b(f"{scope}\x00{key}".encode(), digest_size=16).digest()


class Lock:
    """The in-flight lock of one (scope, key) for one attempt."""

    #: Whether it expires unless renewed (a lease): only then does a heartbeat keep it.
    expires = False

    def acquire(self) -> bool:
        """Take the lock without waiting; ``False`` when another attempt holds it."""
        raise NotImplementedError

    def acquire_and_read(self, read: Read) -> tuple[bool, IdempotencyRecord | None]:
        """Take the lock, then read the record with a snapshot taken after it (S8)."""
        if not self.acquire():
            return False, None
        return True, read()

    def renew(self) -> bool:
        """Keep the lock while the view runs (S9); ``False`` once it is lost."""
        return True

    def release(self) -> None:
        """Free the lock if this attempt still holds it; called after the commit."""


class PostgresAdvisoryLock(Lock):
    """``pg_try_advisory_xact_lock`` on a 64-bit digest of (scope, key)."""

    def __init__(self, using: str, ident: bytes, scope: str, key: str) -> None:
        self.using = using
        self.number = int.from_bytes(ident[:8], "big", signed=True)
        self.scope = scope
        self.key = key

    def acquire(self) -> bool:
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [self.number])
            return bool(cursor.fetchone()[0])

    def acquire_and_read(self, read: Read) -> tuple[bool, IdempotencyRecord | None]:
        return IdempotencyRecord.objects.lock_and_lookup(
            self.using, self.number, self.scope, self.key
        )


class MySQLNamedLock(Lock):
    """``GET_LOCK``/``RELEASE_LOCK``: held by the connection until released or closed.

    Taken inside the transaction but before its first read, so under REPEATABLE READ
    the transaction's snapshot is still made after the lock was granted.
    """

    def __init__(self, using: str, ident: bytes) -> None:
        self.using = using
        self.name = "idempotent_post:" + ident.hex()[:40]

    def acquire(self) -> bool:
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0)", [self.name])
            return cursor.fetchone()[0] == 1

    def release(self) -> None:
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT RELEASE_LOCK(%s)", [self.name])


class CacheLock(Lock):
    """A Redis lock through django-redis, with an expiry equal to the lease."""

    expires = True

    def __init__(self, alias: str, ident: bytes, lease: float) -> None:
        try:
            name = caches[alias].make_key(LOCK_PREFIX + ident.hex())
            client = get_redis_connection(alias)  # type: ignore[misc]
        except Exception as error:  # a misconfigured or unreachable cache alike
            raise LockUnavailable(str(error)) from error
        self._lock: Any = client.lock(name, timeout=lease, blocking=False, thread_local=False)
        self.held = False

    def acquire(self) -> bool:
        """Taken by the engine before its transaction, so a Redis failure can choose the path."""
        try:
            self.held = bool(self._lock.acquire())
        except (RedisError, OSError) as error:
            raise LockUnavailable(str(error)) from error
        return self.held

    def acquire_and_read(self, read: Read) -> tuple[bool, IdempotencyRecord | None]:
        if not self.held and not self.acquire():
            return False, None
        return True, read()

    def renew(self) -> bool:
        try:
            self._lock.reacquire()
        except LockError:
            return False  # it expired and another attempt may hold it now
        except (RedisError, OSError):
            return True  # Redis is away; the lock lives on until its expiry, if at all
        return True

    def release(self) -> None:
        try:
            self._lock.release()
        except LockError:
            pass  # The lease ran out and the lock expired or passed on: not ours to free.
        except (RedisError, OSError):
            pass  # Redis went away; the lock expires with its lease.


def database_lock(using: str, scope: str, key: str) -> Lock | None:
    """The database's own in-flight lock, or ``None`` where it has none."""
    vendor = connections[using].vendor
    if vendor == "postgresql":
        return PostgresAdvisoryLock(using, lock_id(scope, key), scope, key)
    if vendor == "mysql":
        return MySQLNamedLock(using, lock_id(scope, key))
    return None


def cache_lock(alias: str, scope: str, key: str, lease: float) -> Lock:
    """The Redis lock of (scope, key); raises :class:`LockUnavailable`."""
    return CacheLock(alias, lock_id(scope, key), lease)
