"""The state machine: reserve, run, then complete, release or replay (S1-S12, T1-T4).

One request with a key goes through three steps, each a function with a typed result:

1. **Read** the record of (scope, key) and :func:`decide`: ``Replay`` (completed, same
   fingerprint), ``Mismatch`` (another request's key: 422), ``Busy`` (a live holder:
   409 or wait), or ``Run`` (absent, expired, released, or a dead holder's).
2. **Hold** the key, by one of two paths:

   - *Locked* (the default: ``atomic=True`` where a lock exists: a PostgreSQL advisory
     lock, a MySQL named lock, or Redis): inside one transaction, the lock is taken and
     the record read again after it (:meth:`Lock.acquire_and_read`, S8), decided again,
     then the view runs and its outcome is written in the same transaction (T1). One
     commit.
   - *Durable* (SQLite without Redis, ``atomic=False``, async views): an *in progress*
     reservation is committed first, with a lease that a heartbeat renews while the view
     runs (S9); the outcome completes it, fenced by the reservation's owner token.

   Both paths take a record over through :meth:`Guard._replace` alone, which checks
   that nobody changed it since it was read, and both answer a lost race by reading the
   record again (S12).
3. **Settle**: the adapter's store policy says whether the response is kept (S10, S11);
   a kept one is replayed to retries, an exception or an error status rolls the view's
   writes back and frees the key.

The engine knows Django's request and response, nothing of DRF or forms: adapters
(the decorator, the form mixin) ``match`` on its outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig, SuspiciousOperation
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, router, transaction
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.crypto import salted_hmac

from idempotent_post import signals
from idempotent_post.conf import conf
from idempotent_post.doublesubmit import Sighting, sighting, watch_later, watch_unkeyed
from idempotent_post.fingerprint import fingerprint_for
from idempotent_post.keys import scope_for
from idempotent_post.lease import Renewal, heartbeat
from idempotent_post.locks import Lock, LockUnavailable, cache_lock, database_lock
from idempotent_post.models import IdempotencyRecord
from idempotent_post.responses import (
    BAD_BODY,
    BODY_TOO_LARGE,
    UNAVAILABLE,
    StoredResponse,
    capture,
    discard,
    problem_response,
    replay,
)

logger = logging.getLogger("idempotent_post")

State = IdempotencyRecord.State

#: Statuses that say "try again": never stored, whatever the settings (S11).
TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 503})

#: The largest ``X-Retry-Count`` recorded; the column is a 32-bit integer (E3).
MAX_RETRY_COUNT = 2**31 - 1


# Outcomes: what happened to one request's key. Adapters match on these.


@dataclass(frozen=True)
class Replay:
    """The key completed before: answer with its stored response (S2, P1)."""

    record: IdempotencyRecord

    def stored(self) -> StoredResponse:
        """What the record keeps of the response, as stored (encrypted, if it was: C4)."""
        record = self.record
        body = record.response_body
        return StoredResponse(
            status_code=record.status_code or 200,
            headers=record.response_headers,
            body=bytes(body) if body is not None else None,
            body_file=record.body_file,
            kept=record.body_stored,
        )

    def response(self) -> HttpResponseBase:
        """The stored response, marked ``Idempotent-Replayed: true``."""
        return replay(self.stored())


@dataclass(frozen=True)
class Busy:
    """Another attempt holds the key right now (S3)."""

    record: IdempotencyRecord | None = None


@dataclass(frozen=True)
class Mismatch:
    """The key belongs to a different request (F1, S12)."""

    record: IdempotencyRecord


@dataclass(frozen=True)
class Executed:
    """The view ran; ``stored`` says whether its response will be replayed."""

    response: HttpResponseBase
    stored: bool


@dataclass(frozen=True)
class Refused:
    """The guard answered before the view could run (an unreadable body, L3's 503)."""

    response: HttpResponseBase


Outcome = Replay | Busy | Mismatch | Executed | Refused


@dataclass(frozen=True)
class Run:
    """The key is free for this attempt; ``previous`` is the row it replaces, if any."""

    previous: IdempotencyRecord | None = None


def decide(
    record: IdempotencyRecord | None, fingerprint: str, now: Any
) -> Replay | Busy | Mismatch | Run:
    """What a read of the key's record means for an attempt with ``fingerprint``."""
    if record is None or record.expires_at <= now:
        return Run(record)  # absent, or expired and as good as absent (S7)
    if record.fingerprint != fingerprint:
        return Mismatch(record)  # the fingerprint first, also before a takeover (S12)
    if record.state == State.COMPLETED:
        return Replay(record)
    if record.owner and record.locked_until is not None and record.locked_until > now:
        return Busy(record)
    return Run(record)  # released after a failure, or its holder stopped renewing (S9)


# Options.


@dataclass(frozen=True)
class Options:
    """A guard's options; ``None`` follows the ``IDEMPOTENT_POST_*`` setting (D4)."""

    required: bool | None = None
    scope: Any = None
    fingerprint: Any = None
    lease: float | None = None
    ttl: float | None = None
    wait: float | None = None
    atomic: bool | None = None
    #: Which responses are kept: ``store(response) -> bool`` (S6, S10, S11).
    store: Callable[[HttpResponseBase], bool] | None = None

    def resolve(self) -> Resolved:
        """The options as they stand now, settings filled in: once per request."""
        return Resolved(
            required=conf.REQUIRED if self.required is None else self.required,
            scope=self.scope,
            fingerprint=self.fingerprint,
            lease=conf.LEASE if self.lease is None else self.lease,
            ttl=conf.TTL if self.ttl is None else self.ttl,
            wait=conf.WAIT if self.wait is None else self.wait,
            atomic=conf.ATOMIC if self.atomic is None else self.atomic,
            store=self.store or default_store,
        )


@dataclass(frozen=True)
class Resolved:
    """:class:`Options` with every setting read."""

    required: bool
    scope: Any
    fingerprint: Any
    lease: float
    ttl: float
    wait: float
    atomic: bool
    store: Callable[[HttpResponseBase], bool]


def default_store(response: HttpResponseBase) -> bool:
    """Keep 2xx-4xx answers, and 5xx where the setting says so, but never transient ones."""
    status = response.status_code
    if status in TRANSIENT_STATUSES:
        return False
    return status < 500 or conf.STORE_SERVER_ERRORS


def rolls_back(response: HttpResponseBase) -> bool:
    """Whether an answer that is not kept undoes the view's writes (S10): errors do."""
    return response.status_code >= 400


def answers_an_exception(response: HttpResponseBase) -> bool:
    """Whether ``response`` is a view's answer to its own exception: its writes are undone
    whether it is kept or not (T1). DRF's ``handle_exception`` marks the ones it makes."""
    return getattr(response, "exception", False) is True


# The attempt, and what a view sees of it.


@dataclass
class Attempt:
    """One request's try at a key."""

    request: Any
    scope: str
    key: str
    fingerprint: str
    using: str
    retry_count: int
    options: Resolved
    #: What the record says was run: the request's method and path, or a function's name.
    method: str = ""
    path: str = ""
    record: IdempotencyRecord | None = None
    #: The owner token of the durable reservation this attempt holds, if any.
    token: str = ""
    started: float = field(default_factory=time.monotonic)
    #: Seconds spent in the view itself, for the guard's own time (C6).
    view_seconds: float = 0.0
    idempotency: Idempotency = field(init=False)

    def __post_init__(self) -> None:
        self.idempotency = Idempotency(self)


class Idempotency:
    """``request.idempotency``: what a guarded view knows and can use of its key.

    On a request without a key, ``key`` and ``scope`` are ``None`` and steps just run.
    """

    def __init__(self, attempt: Attempt | None = None) -> None:
        self._attempt = attempt
        self.key = attempt.key if attempt else None
        self.scope = attempt.scope if attempt else None

    def derive(self, name: str) -> str:
        """A key for a call to another service (X4), e.g. a payment gateway's.

        The same on every retry and takeover of this (scope, key), different per
        ``name`` and per (scope, key), and not guessable from the key alone (an HMAC
        with the project's ``SECRET_KEY``). Without a key there is no retry to agree
        with: each call gets a fresh random key.
        """
        if self.key is None:
            return secrets.token_hex(32)
        value = f"{self.scope}\x00{self.key}\x00{name}"
        return salted_hmac(DERIVE_SALT, value, algorithm="sha256").hexdigest()

    def step(self, name: str, func: Callable[[], Any]) -> Any:
        """A recovery point (T2): run ``func`` once per key, in its own transaction.

        Its JSON result is recorded on the key's record, so a retry with the same key
        (after a failure further on) skips it and gets the recorded result. Steps need
        the durable reservation of ``atomic=False``; elsewhere they simply run.
        """
        attempt = self._attempt
        record = attempt.record if attempt else None
        if attempt is None or record is None or not attempt.token:
            return func()
        if name in record.recovery_points:
            return record.recovery_points[name]
        with transaction.atomic(using=attempt.using):
            result = func()
            points = {**record.recovery_points, name: result}
            updated = (
                IdempotencyRecord.objects.using(attempt.using)
                .filter(pk=record.pk, owner=attempt.token)
                .update(recovery_points=points)
            )
            if not updated:
                raise LeaseLost(f"the reservation of key {attempt.key!r} was taken over")
        record.recovery_points = points
        return result


DERIVE_SALT = "idempotent_post.engine.Idempotency.derive"

_current: contextvars.ContextVar[Idempotency | None] = contextvars.ContextVar(
    "idempotent_post_current", default=None
)


def current() -> Idempotency | None:
    """The running attempt's :class:`Idempotency` inside a guarded view, else ``None`` (X5)."""
    return _current.get()


@contextlib.contextmanager
def running(idempotency: Idempotency) -> Iterator[None]:
    """Make ``idempotency`` what :func:`current` returns for the duration of the block."""
    token = _current.set(idempotency)
    try:
        yield
    finally:
        _current.reset(token)


class LeaseLost(Exception):
    """This attempt's reservation belongs to another attempt now (S9)."""


class _EveryDatabase(set):  # type: ignore[type-arg]
    """``_non_atomic_requests`` that names every database alias (T3)."""

    def __contains__(self, alias: object) -> bool:
        return True


#: Set as ``view._non_atomic_requests``: the guard runs its own transaction (T3).
EVERY_DATABASE = _EveryDatabase()


class Guard:
    """Guards one view (or one form view class) with the engine."""

    def __init__(self, options: Options, sender: Any = None) -> None:
        self.options = options
        self.sender = sender

    # Entry points.

    def unkeyed(self, request: Any) -> Idempotency:
        """Prepare a request that runs without a key (K4): no lock, no record."""
        request.idempotency = Idempotency()
        watch_unkeyed(request, self.options.scope, self.options.fingerprint, self.sender)
        return request.idempotency  # type: ignore[no-any-return]

    def run(self, request: Any, key: str, call_view: Callable[[], HttpResponseBase]) -> Outcome:
        """Run ``call_view`` at most once per (scope, key), or say why not."""
        attempt = self._attempt(request, key)
        if isinstance(attempt, Refused):
            return attempt
        return self.execute(attempt, call_view)

    def attempt(self, scope: str, key: str, fingerprint: str, name: str) -> Attempt:
        """An attempt at work that is not a request (a function, a task: X1, X2)."""
        options = self.options.resolve()
        return Attempt(None, scope, key, fingerprint, records_database(), 0, options, "CALL", name)

    def execute(self, attempt: Attempt, call_view: Callable[[], HttpResponseBase]) -> Outcome:
        """Run ``call_view`` at most once per the attempt's (scope, key), or say why not."""
        deadline = attempt.started + attempt.options.wait
        delay = 0.02
        with running(attempt.idempotency):
            while True:
                outcome = self._try(attempt, call_view)
                if not isinstance(outcome, Busy) or time.monotonic() + delay > deadline:
                    return self._reported(attempt, outcome)
                # Waiting for the holder to finish (S3, G4): poll with backoff.
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    async def arun(
        self, request: Any, key: str, call_view: Callable[[], Awaitable[HttpResponseBase]]
    ) -> Outcome:
        """The async twin of :meth:`run` (D2): always a durable reservation.

        Django has no async transactions: the view's writes commit as it makes them.
        """
        attempt = await sync_to_async(self._attempt)(request, key)
        if isinstance(attempt, Refused):
            return attempt
        return await self.aexecute(attempt, call_view)

    async def aexecute(
        self, attempt: Attempt, call_view: Callable[[], Awaitable[HttpResponseBase]]
    ) -> Outcome:
        """The async twin of :meth:`execute`."""
        deadline = attempt.started + attempt.options.wait
        delay = 0.02
        while True:
            decision = await sync_to_async(self._reserve_durable)(attempt)
            if not isinstance(decision, Busy) or time.monotonic() + delay > deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        if decision is not None:
            return await sync_to_async(self._reported)(attempt, decision)
        renewal = self._keep_reservation(attempt)
        try:
            with running(attempt.idempotency):
                started = time.monotonic()
                response = await call_view()
                attempt.view_seconds += time.monotonic() - started
            # A TemplateResponse renders off the event loop (D5): its context may query.
            response = await sync_to_async(_rendered)(response)
        except BaseException:
            renewal.stop()
            await sync_to_async(self._release)(attempt)
            raise
        renewal.stop()
        outcome = await sync_to_async(self._settle_durable)(attempt, response)
        return await sync_to_async(self._reported)(attempt, outcome)

    def lookup(self, request: Any, key: str) -> Replay | Busy | Run:
        """What is known of ``key`` in ``request``'s scope now, without running anything.

        ``Busy`` also while a locked-path attempt runs it and has written nothing yet.
        """
        options = self.options.resolve()
        using = records_database()
        scope = scope_for(request, options.scope)
        record = IdempotencyRecord.objects.lookup(using, scope, key)
        # Its own fingerprint: whose request it was does not matter to a look.
        decision = decide(record, record.fingerprint if record else "", timezone.now())
        if not isinstance(decision, Run) or not options.atomic:
            return decision  # type: ignore[return-value]
        lock = self._lock(using, scope, key, options)
        if isinstance(lock, Busy):
            return lock
        if isinstance(lock, Lock):
            try:
                with transaction.atomic(using=using):
                    held, _ = lock.acquire_and_read(lambda: None)
            finally:
                lock.release()
            if not held:
                return Busy()
        return decision

    # Step 0: the attempt.

    def _attempt(self, request: Any, key: str) -> Attempt | Refused:
        options = self.options.resolve()
        _refuse_request_transaction(request, records_database())
        try:
            scope = scope_for(request, options.scope)
            fingerprint = fingerprint_for(request, options.fingerprint)
        except RequestDataTooBig as error:
            return Refused(problem_response(BODY_TOO_LARGE, str(error)))
        except (MultiPartParserError, SuspiciousOperation, UnicodeDecodeError) as error:
            return Refused(problem_response(BAD_BODY, f"The request body cannot be read: {error}"))
        retry_count = _retry_count(request)
        if retry_count:
            logger.info("Retry %d of key %r (%s).", retry_count, key, scope)
        attempt = Attempt(
            request,
            scope,
            key,
            fingerprint,
            records_database(),
            retry_count,
            options,
            request.method,
            request.get_full_path()[:2048],
        )
        request.idempotency = attempt.idempotency
        return attempt

    def _try(self, attempt: Attempt, call_view: Callable[[], HttpResponseBase]) -> Outcome:
        decision = decide(self._read(attempt), attempt.fingerprint, timezone.now())
        if not isinstance(decision, Run):
            return decision
        seen = sighting(
            attempt.request, attempt.scope, attempt.fingerprint, attempt.key, self.sender
        )
        if attempt.options.atomic:
            lock = self._lock(
                attempt.using, attempt.scope, attempt.key, attempt.options, attempt.request, seen
            )
            if isinstance(lock, Busy):
                # Its holder may have finished, and left a lock to expire (_run_locked).
                again = decide(self._read(attempt), attempt.fingerprint, timezone.now())
                return lock if isinstance(again, Run) else again
            if isinstance(lock, Refused):
                return lock
            if lock is not None:
                return self._run_locked(attempt, lock, call_view, seen)
        reserved = self._reserve_durable(attempt, decision)
        if reserved is not None:
            return reserved
        return self._run_durable(attempt, call_view, seen)

    def _read(self, attempt: Attempt) -> IdempotencyRecord | None:
        return IdempotencyRecord.objects.lookup(attempt.using, attempt.scope, attempt.key)

    def _lock(
        self,
        using: str,
        scope: str,
        key: str,
        options: Resolved,
        request: Any = None,
        seen: Sighting | None = None,
    ) -> Lock | Busy | Refused | None:
        """The in-flight lock: the cache's, else the database's, else ``None`` (L2, L3).

        The cache lock is taken here, before any transaction, so that a Redis failure can
        still choose the path (a database lock, a durable reservation, or L3's 503); a
        database lock is taken inside the transaction, by :meth:`Lock.acquire_and_read`.
        The cache lock watches the double-submit sighting ``seen`` in its round trip.
        """
        if conf.LOCK_BACKEND == "cache":
            try:
                lock = cache_lock(conf.CACHE, scope, key, options.lease)
                return lock if lock.acquire(seen) else Busy()
            except LockUnavailable as error:
                refused = self._cache_down(error, request)
                if refused is not None:
                    return refused
        return database_lock(using, scope, key)

    def _cache_down(self, error: Exception, request: Any = None) -> Refused | None:
        if not conf.CACHE_FALLBACK:
            logger.error("Cache lock unavailable, failing closed: %s", error)
            return Refused(
                problem_response(
                    UNAVAILABLE,
                    "The idempotency lock store is unavailable; retry later.",
                    Retry_After="1",
                )
            )
        logger.warning("Cache lock unavailable, using the database lock: %s", error)
        signals.lock_backend_fallback.send(sender=self.sender, request=request, error=error)
        return None

    # The locked path.

    def _run_locked(
        self,
        attempt: Attempt,
        lock: Lock,
        call_view: Callable[[], HttpResponseBase],
        seen: Sighting | None,
    ) -> Outcome:
        renewal: Renewal | None = None
        kept = False
        try:
            with _atomic(attempt.using) as rollback:
                held, record = lock.acquire_and_read(lambda: self._read(attempt))
                if not held:
                    return Busy()
                decision = decide(record, attempt.fingerprint, timezone.now())
                if not isinstance(decision, Run):
                    return decision
                if lock.expires:
                    renewal = heartbeat.keep(lock.renew, attempt.options.lease)
                if not lock.watches:
                    watch_later(seen)
                response = _call(attempt, call_view)
                undone = answers_an_exception(response)
                if not attempt.options.store(response):
                    if undone or rolls_back(response):
                        rollback()
                    return Executed(response, stored=False)
                stored, response = capture(response)
                if undone:
                    rollback()  # its writes go; its answer is kept below, on its own
                elif self._store(attempt, decision.previous, stored):
                    kept = True
                    return Executed(response, stored=True)
                else:
                    # Another attempt committed the key first, past the lock (a lost
                    # Redis lock, a fallback): undo this run and answer as the record
                    # says (S12).
                    rollback()
                    discard(stored.body_file)
                    return _lost
            # The answer to the view's own exception, its writes rolled back (S6, T1).
            kept = self._keep_alone(attempt, lock, stored)
            if not kept:
                discard(stored.body_file)
            return Executed(response, stored=kept)
        finally:
            # After the commit: a duplicate that takes the lock next reads this outcome.
            if renewal is not None:
                renewal.stop()
            if not (kept and lock.expires and attempt.options.ttl > attempt.options.lease):
                lock.release()
            # Else the record, committed now, answers every attempt until after the lock
            # expired by itself: freeing it would cost a round trip for nobody. One that
            # finds the lock held reads the record again (_try).

    def _keep_alone(self, attempt: Attempt, lock: Lock, stored: StoredResponse) -> bool:
        """Keep ``stored`` in a transaction of its own, if the key is still this attempt's.

        The answer a view gave to its own exception is kept after its writes were rolled
        back. Redis and MySQL locks outlive that rollback; PostgreSQL's is taken again,
        and an attempt that took the key in between keeps its own answer instead.
        """
        with _atomic(attempt.using) as rollback:
            held, record = lock.acquire_and_read(lambda: self._read(attempt))
            decision = decide(record, attempt.fingerprint, timezone.now()) if held else Busy()
            if not isinstance(decision, Run):
                return False
            if not self._store(attempt, decision.previous, stored):
                rollback()
                return False
            return True

    def _store(
        self, attempt: Attempt, previous: IdempotencyRecord | None, stored: StoredResponse
    ) -> bool:
        """Write the completed record in the locked transaction; ``False`` when another
        attempt's record got there first (the caller rolls back)."""
        try:
            # No savepoint: a failed insert only marks the transaction for rollback.
            return self._replace(attempt, previous, _completed(attempt, stored)) is not None
        except IntegrityError:
            return False

    # The durable path.

    def _reserve_durable(
        self, attempt: Attempt, decision: Run | None = None
    ) -> Replay | Busy | Mismatch | None:
        """Commit an in-progress reservation with a lease; ``None`` once this attempt holds it."""
        if decision is None:
            found = decide(self._read(attempt), attempt.fingerprint, timezone.now())
            if not isinstance(found, Run):
                return found
            decision = found
        now = timezone.now()
        token = secrets.token_hex(16)
        values = {
            "state": State.IN_PROGRESS,
            "owner": token,
            "locked_until": now + timedelta(seconds=attempt.options.lease),
            "expires_at": now + timedelta(seconds=attempt.options.ttl),
            "completed_at": None,
            "status_code": None,
            "response_headers": [],
            "response_body": None,
            "body_file": "",
            "body_stored": True,
        }
        try:
            with _savepoint(attempt.using):
                record = self._replace(attempt, decision.previous, values, keep_id=True)
        except IntegrityError:
            record = None
        if record is None:
            # Another attempt reserved or completed it a moment ago: read it again (S12).
            again = decide(self._read(attempt), attempt.fingerprint, timezone.now())
            return Busy() if isinstance(again, Run) else again
        attempt.token = token
        attempt.record = record
        return None

    def _keep_reservation(self, attempt: Attempt) -> Renewal:
        record, token, using = attempt.record, attempt.token, attempt.using
        lease = attempt.options.lease
        assert record is not None

        def renew() -> bool:
            records = IdempotencyRecord.objects.using(using).filter(pk=record.pk)
            until = timezone.now() + timedelta(seconds=lease)
            if records.filter(owner=token).update(locked_until=until):
                return True
            # Not ours: lost, unless the row is not visible here at all (yet, or any more).
            return not records.exists()

        return heartbeat.keep(renew, lease, using)

    def _run_durable(
        self, attempt: Attempt, call_view: Callable[[], HttpResponseBase], seen: Sighting | None
    ) -> Outcome:
        watch_later(seen)
        renewal = self._keep_reservation(attempt)
        try:
            if not attempt.options.atomic:
                response = _call(attempt, call_view)
                renewal.stop()
                return self._settle_durable(attempt, response)
            with _atomic(attempt.using) as rollback:
                response = _call(attempt, call_view)
                kept = attempt.options.store(response)
                undone = answers_an_exception(response)
                if kept:
                    stored, response = capture(response)
                if undone or (not kept and rolls_back(response)):
                    rollback()
                elif kept:
                    completed = self._complete(attempt, stored)
                    if not completed:
                        rollback()  # taken over: the new holder's outcome counts (S9)
                        discard(stored.body_file)
            if kept and undone:
                # The answer to the view's own exception, its writes rolled back (S6, T1):
                # the reservation, committed before, holds the key meanwhile.
                completed = self._complete(attempt, stored)
                if not completed:
                    discard(stored.body_file)
        except BaseException:
            renewal.stop()
            self._release(attempt)
            raise
        renewal.stop()
        if not kept:
            self._release(attempt)  # after the rollback, or it would be undone with it
            return Executed(response, stored=False)
        return Executed(response, stored=True) if completed else _lost

    def _settle_durable(self, attempt: Attempt, response: HttpResponseBase) -> Outcome:
        """Complete or release a durable reservation after a view without a transaction."""
        if not attempt.options.store(response):
            self._release(attempt)
            return Executed(response, stored=False)
        stored, response = capture(response)
        if not self._complete(attempt, stored):
            discard(stored.body_file)
            logger.warning(
                "Key %r (%s) was taken over while its view ran; its outcome is not stored.",
                attempt.key,
                attempt.scope,
            )
            return Executed(response, stored=False)
        return Executed(response, stored=True)

    def _complete(self, attempt: Attempt, stored: StoredResponse) -> bool:
        """Store the outcome on this attempt's own reservation, fenced by its token (S9)."""
        assert attempt.record is not None
        values = _completed(attempt, stored)
        return bool(
            IdempotencyRecord.objects.using(attempt.using)
            .filter(pk=attempt.record.pk, owner=attempt.token)
            .update(**values)
        )

    def _release(self, attempt: Attempt) -> None:
        """Give the key back after a failure (S6); its recovery points stay (T2)."""
        record = attempt.record
        if record is None or not attempt.token:
            return
        mine = IdempotencyRecord.objects.using(attempt.using).filter(
            pk=record.pk, owner=attempt.token
        )
        with contextlib.suppress(Exception):
            # A broken connection must not hide the view's own error; the lease runs out.
            if record.recovery_points:
                mine.update(owner="", locked_until=timezone.now())
            else:
                # One DELETE with the owner condition in it, whatever delete receivers the
                # project has: never a row another attempt has taken over since.
                mine._raw_delete(attempt.using)

    # Taking a row over: the one place every path writes a key it did not hold.

    def _replace(
        self,
        attempt: Attempt,
        previous: IdempotencyRecord | None,
        values: dict[str, Any],
        keep_id: bool = False,
    ) -> IdempotencyRecord | None:
        """Insert the key's record, or replace ``previous`` if nobody changed it since.

        ``None`` when ``previous`` changed under this attempt; an insert that loses the
        race raises ``IntegrityError``. ``keep_id``: the returned record knows its id.
        """
        now = timezone.now()
        values = {
            **values,
            "fingerprint": attempt.fingerprint,
            "method": attempt.method,
            "path": attempt.path,
            "retry_count": attempt.retry_count,
            "created_at": now,
        }
        if previous is None:
            record = IdempotencyRecord(scope=attempt.scope, key=attempt.key, **values)
            IdempotencyRecord.objects.insert(attempt.using, record, keep_id=keep_id)
            return record
        expired = previous.expires_at <= now
        if expired:
            values.update(attempts=1, recovery_points={})
        else:
            values.update(attempts=previous.attempts + 1)
        unchanged = IdempotencyRecord.objects.using(attempt.using).filter(
            pk=previous.pk,
            state=previous.state,
            owner=previous.owner,
            locked_until=previous.locked_until,
            expires_at=previous.expires_at,
        )
        if not unchanged.update(**values):
            return None
        if not expired and previous.owner:
            # Its holder stopped renewing: it died (S5, S9). A released key is just free.
            logger.warning(
                "Key %r (%s): its holder stopped renewing the lease; attempt %d takes over.",
                attempt.key,
                attempt.scope,
                values["attempts"],
            )
            signals.lease_taken_over.send(
                sender=self.sender,
                request=attempt.request,
                record=previous,
                attempts=values["attempts"],
            )
        record = IdempotencyRecord(pk=previous.pk, scope=attempt.scope, key=attempt.key, **values)
        if not expired:
            record.recovery_points = previous.recovery_points
        return record

    # Reporting (O1).

    def _reported(self, attempt: Attempt, outcome: Any) -> Outcome:
        if outcome is _lost:
            found = decide(self._read(attempt), attempt.fingerprint, timezone.now())
            outcome = Busy() if isinstance(found, Run) else found
        match outcome:
            case Executed(response, stored):
                signals.executed.send(
                    sender=self.sender, request=attempt.request, response=response, stored=stored
                )
            case Replay(record):
                logger.info("Replaying key %r (%s).", attempt.key, attempt.scope)
                signals.replayed.send(sender=self.sender, request=attempt.request, record=record)
            case Busy(record):
                logger.info("Key %r (%s) is in progress: 409.", attempt.key, attempt.scope)
                signals.conflict.send(sender=self.sender, request=attempt.request, record=record)
            case Mismatch(record):
                logger.warning(
                    "Key %r (%s) reused for a different request.", attempt.key, attempt.scope
                )
                signals.mismatch.send(sender=self.sender, request=attempt.request, record=record)
        seconds = time.monotonic() - attempt.started - attempt.view_seconds
        signals.guard_finished.send(
            sender=self.sender, request=attempt.request, outcome=outcome, seconds=seconds
        )
        return outcome


class _Lost:
    """Another attempt committed the key while this one ran: read it and answer."""


_lost: Any = _Lost()


def records_database() -> str:
    """The alias of the database that holds the records."""
    return conf.DATABASE or router.db_for_write(IdempotencyRecord)


def _completed(attempt: Attempt, stored: StoredResponse) -> dict[str, Any]:
    now = timezone.now()
    return {
        "state": State.COMPLETED,
        "owner": "",
        "locked_until": None,
        "status_code": stored.status_code,
        "response_headers": stored.headers,
        "response_body": stored.body,
        "body_file": stored.body_file,
        "body_stored": stored.kept,
        "completed_at": now,
        "expires_at": now + timedelta(seconds=attempt.options.ttl),
    }


@contextlib.contextmanager
def _atomic(using: str) -> Iterator[Callable[[], None]]:
    """The guard's transaction (T1) on the records' database and the default one (T4).

    Yields a function that marks it for rollback. Where the records live elsewhere, the
    view's database commits first and the records' last: a crash between the two leaves
    the view's writes without their record (see the README's limits).
    """
    aliases = [using] if using == DEFAULT_DB_ALIAS else [using, DEFAULT_DB_ALIAS]

    def rollback() -> None:
        for alias in aliases:
            transaction.set_rollback(True, using=alias)

    with contextlib.ExitStack() as stack:
        for alias in aliases:
            stack.enter_context(transaction.atomic(using=alias))
        yield rollback


def _refuse_request_transaction(request: Any, using: str) -> None:
    """Fail loudly where ``ATOMIC_REQUESTS`` wraps a guarded view the guard could not mark.

    Inside the request's transaction nothing the guard writes commits before the view
    ends: a duplicate cannot see the reservation, and a failure rolls back the recovery
    points of a payment that did happen (T3). Function views and the mixins are taken
    out by themselves; DRF's ``@api_view`` and decorated methods need one line more.
    """
    connection = connections[using]
    if not connection.settings_dict.get("ATOMIC_REQUESTS") or not connection.in_atomic_block:
        return
    match = getattr(getattr(request, "_request", request), "resolver_match", None)
    view = getattr(match, "func", None)
    if view is None or using in getattr(view, "_non_atomic_requests", set()):
        return
    raise ImproperlyConfigured(
        f"ATOMIC_REQUESTS wraps the guarded view {request.path!r} in a transaction the "
        "guard cannot commit. Take the view out of it: put @transaction.non_atomic_requests "
        "above @api_view, or on a class-based view decorate its dispatch with "
        '@method_decorator(transaction.non_atomic_requests, name="dispatch"), or use '
        "idempotent_post.drf.IdempotentMixin, which does it (T3)."
    )


def _savepoint(using: str) -> Any:
    # An IntegrityError inside an outer transaction must not break it.
    if connections[using].in_atomic_block:
        return transaction.atomic(using=using)
    return contextlib.nullcontext()


def _call(attempt: Attempt, call_view: Callable[[], HttpResponseBase]) -> HttpResponseBase:
    started = time.monotonic()
    try:
        return _rendered(call_view())
    except RuntimeError as error:
        if "durable" in str(error):
            raise ImproperlyConfigured(
                "The view opens transaction.atomic(durable=True), which cannot run inside "
                "the guard's transaction. Guard it with @idempotent(atomic=False) and use "
                "request.idempotency.step() for its recovery points (T3)."
            ) from error
        raise
    finally:
        attempt.view_seconds += time.monotonic() - started


def _rendered(response: HttpResponseBase) -> HttpResponseBase:
    # Template responses render late; their body must exist to be stored.
    render = getattr(response, "render", None)
    if callable(render) and not getattr(response, "is_rendered", True):
        response = render() or response
    return response


def _retry_count(request: Any) -> int:
    """``X-Retry-Count`` as a bounded integer; anything else counts as 0 (O3, E3)."""
    value = request.META.get("HTTP_" + conf.RETRY_COUNT_HEADER.upper().replace("-", "_"))
    try:
        return min(max(0, int(value)), MAX_RETRY_COUNT)
    except (TypeError, ValueError):
        return 0
