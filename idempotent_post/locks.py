"""In-flight locks (L2, L3).

A lock only answers "is somebody running this key right now?" cheaply, without a
commit. Correctness never rests on it: the unique constraint on (scope, key) does.

- PostgreSQL: a transaction-scoped advisory lock, taken inside the view's own
  transaction; the server frees it at commit, at rollback, and when a killed
  process's connection drops (S5).
- MySQL/MariaDB: a named lock (``GET_LOCK``), freed by ``RELEASE_LOCK`` or when the
  connection drops.
- SQLite and other databases: no lock; the engine commits a durable reservation.
- ``cache``: Redis through django-redis, redis-py's lock: an owner token, ``SET NX PX``,
  and a compare-and-delete release, so a late holder never frees another's lock.
"""

from __future__ import annotations

import hashlib

from django.core.cache import caches
from django.db import connections

try:
    # Imported with the app, not on the first request: redis-py's modules import each
    # other, and threads importing them at once see half-initialised modules.
    from django_redis import get_redis_connection
    from redis.exceptions import LockError, RedisError
except ImportError:  # the cache backend is optional; checks refuse it without django-redis
    get_redis_connection = None  # type: ignore[assignment]
    LockError = RedisError = Exception  # type: ignore[assignment,misc]

LOCK_PREFIX = "idempotent_post:lock:"


class LockUnavailable(Exception):
    """The lock store could not be reached."""


def lock_id(scope: str, key: str) -> bytes:
    """A stable digest of (scope, key) that names the lock."""
    return hashlib.blake2b(f"{scope}\x00{key}".encode(), digest_size=16).digest()


class Lock:
    """The in-flight lock of one (scope, key) for one attempt."""

    #: Taken inside the transaction and freed by its end (no release call).
    transactional = False

    def acquire(self) -> bool:
        """Take the lock without waiting; ``False`` when another attempt holds it."""
        raise NotImplementedError

    def release(self) -> None:
        """Free the lock if this attempt still holds it."""


class PostgresAdvisoryLock(Lock):
    """``pg_try_advisory_xact_lock`` on a 64-bit digest of (scope, key)."""

    transactional = True

    def __init__(self, using: str, ident: bytes) -> None:
        self.using = using
        self.number = int.from_bytes(ident[:8], "big", signed=True)

    def acquire(self) -> bool:
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [self.number])
            return bool(cursor.fetchone()[0])


class MySQLNamedLock(Lock):
    """``GET_LOCK``/``RELEASE_LOCK``: held by the connection until released or closed."""

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

    def __init__(self, alias: str, ident: bytes, lease: float) -> None:
        try:
            name = caches[alias].make_key(LOCK_PREFIX + ident.hex())
            client = get_redis_connection(alias)  # type: ignore[misc]
        except Exception as error:  # a misconfigured or unreachable cache alike
            raise LockUnavailable(str(error)) from error
        self._lock = client.lock(name, timeout=lease, blocking=False, thread_local=False)

    def acquire(self) -> bool:
        try:
            return bool(self._lock.acquire())
        except (RedisError, OSError) as error:
            raise LockUnavailable(str(error)) from error

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
        return PostgresAdvisoryLock(using, lock_id(scope, key))
    if vendor == "mysql":
        return MySQLNamedLock(using, lock_id(scope, key))
    return None


def cache_lock(alias: str, scope: str, key: str, lease: float) -> Lock:
    """The Redis lock of (scope, key); raises :class:`LockUnavailable`."""
    return CacheLock(alias, lock_id(scope, key), lease)
