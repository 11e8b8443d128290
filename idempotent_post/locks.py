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
- ``cache``: Redis through django-redis: an owner token, ``SET NX PX``, and a
  compare-and-delete release, so a late holder never frees another's lock. Its expiry
  is the lease, renewed while the view runs (S9). A holder whose outcome is kept leaves
  it to expire rather than free it (see the engine): every later attempt is answered
  by the record.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.db import connections

from idempotent_post.models import IdempotencyRecord

if TYPE_CHECKING:
    from idempotent_post.doublesubmit import Sighting

try:
    # Imported with the app, not on the first request: redis-py's modules import each
    # other, and threads importing them at once see half-initialised modules.
    from django_redis import get_redis_connection
    from redis.exceptions import RedisError
except ImportError:  # the cache backend is optional; checks refuse it without django-redis
    get_redis_connection = None  # type: ignore[assignment]
    RedisError = Exception  # type: ignore[assignment,misc]

LOCK_PREFIX = "idempotent_post:lock:"

logger = logging.getLogger("idempotent_post")

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
    #: Whether :meth:`acquire` watches the double-submit sighting it is given (O2).
    watches = False

    def acquire(self, sighting: Sighting | None = None) -> bool:
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

    def acquire(self, sighting: Sighting | None = None) -> bool:
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
        self.held = False

    def acquire(self, sighting: Sighting | None = None) -> bool:
        if self.held:
            # Taken again after a rollback: it is still this connection's, and MySQL
            # would count a second GET_LOCK that one RELEASE_LOCK does not undo.
            return True
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT GET_LOCK(%s, 0)", [self.name])
            self.held = cursor.fetchone()[0] == 1
        return self.held

    def release(self) -> None:
        if not self.held:
            return
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT RELEASE_LOCK(%s)", [self.name])
        self.held = False


class CacheLock(Lock):
    """A Redis lock through django-redis, with an expiry equal to the lease.

    ``SET NX PX`` with an owner token takes it; Lua scripts renew and free it only while
    the token is still there. :meth:`acquire` sends a double-submit sighting in the same
    round trip (O2).
    """

    expires = True
    watches = True

    def __init__(self, alias: str, ident: bytes, lease: float) -> None:
        try:
            self.name = caches[alias].make_key(LOCK_PREFIX + ident.hex())
            self.client = get_redis_connection(alias)  # type: ignore[misc]
        except Exception as error:  # a misconfigured or unreachable cache alike
            raise LockUnavailable(str(error)) from error
        self.lease_ms = max(1, int(lease * 1000))
        self.token = secrets.token_hex(16)
        self.held = False

    def acquire(self, sighting: Sighting | None = None) -> bool:
        """Taken by the engine before its transaction, so a Redis failure can choose the path."""
        try:
            pipeline = self.client.pipeline(transaction=False)
            pipeline.set(self.name, self.token, nx=True, px=self.lease_ms)
            if sighting is not None:
                sighting.queue(pipeline)
            results = pipeline.execute()
        except (RedisError, OSError) as error:
            raise LockUnavailable(str(error)) from error
        self.held = bool(results[0])
        if sighting is not None:
            sighting.judge(bool(results[1]), results[2])
        return self.held

    def acquire_and_read(self, read: Read) -> tuple[bool, IdempotencyRecord | None]:
        if not self.held and not self.acquire():
            return False, None
        return True, read()

    def renew(self) -> bool:
        try:
            return bool(
                _script(RENEW, self.client)(
                    keys=[self.name], args=[self.token, self.lease_ms], client=self.client
                )
            )
        except (RedisError, OSError):
            return True  # Redis is away; the lock lives on until its expiry, if at all

    def release(self) -> None:
        if not self.held:
            return
        # Only while the token is still ours: a lease that ran out may have passed it on.
        with contextlib.suppress(RedisError, OSError):  # else it expires with its lease
            _script(RELEASE, self.client)(keys=[self.name], args=[self.token], client=self.client)
        self.held = False


RENEW = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
"""

RELEASE = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""

_scripts: dict[str, Any] = {}


def _script(source: str, client: Any) -> Any:
    # redis-py's Script runs EVALSHA, and loads the script where Redis lost it.
    if source not in _scripts:
        _scripts[source] = client.register_script(source)
    return _scripts[source]


def redis_client(alias: str) -> Any:
    """The django-redis client of cache ``alias``, ``None`` for any other kind of cache."""
    if get_redis_connection is None:
        return None
    try:
        return get_redis_connection(alias)
    except NotImplementedError:
        return None


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


def free_cache_lock(alias: str, scope: str, key: str) -> None:
    """Delete the cache lock of (scope, key), whoever holds it; a failure is only logged."""
    try:
        client = redis_client(alias)
        if client is not None:
            client.delete(caches[alias].make_key(LOCK_PREFIX + lock_id(scope, key).hex()))
    except Exception:
        logger.warning("Could not free the cache lock of key %r (%s).", key, scope, exc_info=True)
