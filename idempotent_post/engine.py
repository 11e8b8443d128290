"""The state machine: reserve, run, complete or release, replay (S1-S7, T1, T2).

Paths, cheapest first:

- Replay: one indexed read of the record, then the stored response (P1).
- First execution with an in-flight lock (PostgreSQL advisory lock, MySQL named lock,
  or Redis): the record is written as *completed* inside the view's own transaction,
  so the view and its outcome commit together, in one commit (T1).
- First execution without such a lock (SQLite, non-atomic views, async views): a
  durable *in progress* reservation is committed first, with a lease (S5); the view
  then runs, and its outcome completes the reservation.

Whatever the path, the unique constraint on (scope, key) decides who wins (S4).
The engine knows Django's request and response, nothing of DRF or forms.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import IntegrityError, connections, router, transaction
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.utils import timezone

from idempotent_post import signals
from idempotent_post.conf import conf
from idempotent_post.fingerprint import fingerprint_for
from idempotent_post.keys import scope_for
from idempotent_post.locks import (
    Lock,
    LockUnavailable,
    PostgresAdvisoryLock,
    cache_lock,
    database_lock,
    lock_id,
)
from idempotent_post.models import IdempotencyRecord
from idempotent_post.responses import (
    BAD_BODY,
    BODY_TOO_LARGE,
    IN_PROGRESS,
    MISMATCH,
    MISSING_KEY,
    UNAVAILABLE,
    StoredResponse,
    capture,
    problem_response,
    replay,
)

logger = logging.getLogger("idempotent_post")

State = IdempotencyRecord.State


class _InFlight:
    """Another attempt holds the key right now."""


IN_FLIGHT = _InFlight()

# The key was committed by another attempt while this one ran: read it and answer.
_LOST = _InFlight()


class _Abort(Exception):
    """Leave the view's transaction with a rollback, then act on ``outcome``."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome


class LeaseLost(Exception):
    """This attempt's reservation was taken over by another after its lease ran out."""


def _rendered(response: HttpResponseBase) -> HttpResponseBase:
    # Template responses are rendered late by Django; their body must exist to be stored.
    render = getattr(response, "render", None)
    if callable(render) and not getattr(response, "is_rendered", True):
        response = render() or response
    return response


@dataclass
class Attempt:
    """One request's try at a key."""

    request: Any
    scope: str
    key: str
    fingerprint: str
    using: str
    retry_count: int
    record: IdempotencyRecord | None = None
    # The owner token of this attempt's durable reservation, if it made one.
    token: str = ""
    durable: bool = False
    started: float = field(default_factory=time.monotonic)


class Idempotency:
    """``request.idempotency``: what a guarded view can know and use of its key.

    ``step(name, func)`` is a recovery point (T2): on a view guarded with
    ``atomic=False``, each step runs in its own transaction and its JSON result is
    recorded on the key's record, so a retry with the same key skips finished steps
    and gets their recorded results instead.
    """

    def __init__(self, attempt: Attempt) -> None:
        self._attempt = attempt
        self.key = attempt.key
        self.scope = attempt.scope

    def step(self, name: str, func: Callable[[], Any]) -> Any:
        """Run ``func`` once per key, resuming from its recorded result on a retry."""
        attempt = self._attempt
        record = attempt.record
        if not attempt.durable or record is None:
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


class Guard:
    """Guards one view. Options left ``None`` follow the settings at request time."""

    def __init__(
        self,
        *,
        required: bool | None = None,
        scope: Any = None,
        fingerprint: Any = None,
        lease: float | None = None,
        ttl: float | None = None,
        wait: float | None = None,
        atomic: bool | None = None,
        store: Callable[[int], bool] | None = None,
        sender: Any = None,
    ) -> None:
        self.required = required
        self.scope = scope
        self.fingerprint = fingerprint
        self.lease = lease
        self.ttl = ttl
        self.wait = wait
        self.atomic = atomic
        self.store = store
        self.sender = sender

    # Options, resolved lazily so override_settings works (D4).

    def _lease(self) -> float:
        return conf.LEASE if self.lease is None else self.lease

    def _ttl(self) -> float:
        return conf.TTL if self.ttl is None else self.ttl

    def _wait(self) -> float:
        return conf.WAIT if self.wait is None else self.wait

    def _atomic(self) -> bool:
        return conf.ATOMIC if self.atomic is None else self.atomic

    def _storable(self, status: int) -> bool:
        if self.store is not None:
            return self.store(status)
        return status < 500 or conf.STORE_SERVER_ERRORS

    def _missing_key(self) -> HttpResponseBase | None:
        """The 400 for a request without a key, where a key is required (K4)."""
        if self.required if self.required is not None else conf.REQUIRED:
            return problem_response(
                MISSING_KEY, f"This endpoint requires the {conf.HEADER} header."
            )
        return None

    # Entry points.

    def handle(
        self, request: Any, key: str | None, call_view: Callable[[], HttpResponseBase]
    ) -> HttpResponseBase:
        """Answer ``request``: run ``call_view`` at most once per key, or replay."""
        if key is None:
            missing = self._missing_key()
            if missing is not None:
                return missing
            self._watch_double_submit(request, None)
            return call_view()
        attempt = self._start(request, key)
        if isinstance(attempt, HttpResponseBase):
            return attempt
        deadline = attempt.started + self._wait()
        delay = 0.02
        while True:
            outcome = self._try(attempt, call_view)
            if outcome is not IN_FLIGHT:
                return outcome
            if time.monotonic() + delay > deadline:
                return self._conflict(attempt)
            # Waiting for the first attempt to finish (S3, G4): poll with backoff.
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def ahandle(
        self, request: Any, key: str | None, call_view: Callable[[], Awaitable[HttpResponseBase]]
    ) -> HttpResponseBase:
        """The async twin of :meth:`handle` (D2): always a durable reservation."""
        if key is None:
            missing = self._missing_key()
            if missing is not None:
                return missing
            await sync_to_async(self._watch_double_submit)(request, None)
            return await call_view()
        attempt = await sync_to_async(self._start)(request, key)
        if isinstance(attempt, HttpResponseBase):
            return attempt
        attempt.durable = True
        deadline = attempt.started + self._wait()
        delay = 0.02
        while True:
            reserved = await sync_to_async(self._read_and_reserve)(attempt)
            if reserved is None:
                break
            if reserved is not IN_FLIGHT:
                return reserved
            if time.monotonic() + delay > deadline:
                return await sync_to_async(self._conflict)(attempt)
            await _async_sleep(delay)
            delay = min(delay * 2, 0.25)
        try:
            response = _rendered(await call_view())
        except BaseException:
            await sync_to_async(self._release)(attempt)
            raise
        return await sync_to_async(self._finish_durable)(attempt, response)

    def peek(self, request: Any, key: str) -> IdempotencyRecord | _InFlight | None:
        """What is known of ``key`` now, without running anything.

        The live record (completed, or reserved in progress), ``IN_FLIGHT`` while
        another attempt holds the in-flight lock, or ``None``.
        """
        using = conf.DATABASE or router.db_for_write(IdempotencyRecord)
        attempt = Attempt(request, scope_for(request, self.scope), key, "", using, 0)
        record = self._read(attempt)
        if record is not None and record.is_live():
            return record
        with transaction.atomic(using=using):
            lock = self._acquire(attempt)
            if lock is IN_FLIGHT:
                return IN_FLIGHT
            if isinstance(lock, Lock):
                held = not lock.transactional or lock.acquire()
                lock.release()
                if not held:
                    return IN_FLIGHT
        return None

    # Steps.

    def _start(self, request: Any, key: str) -> Attempt | HttpResponseBase:
        try:
            scope = scope_for(request, self.scope)
            fingerprint = fingerprint_for(request, self.fingerprint)
        except RequestDataTooBig as error:
            return problem_response(BODY_TOO_LARGE, str(error))
        except (MultiPartParserError, SuspiciousOperation, UnicodeDecodeError) as error:
            return problem_response(BAD_BODY, f"The request body cannot be read: {error}")
        retry_header = "HTTP_" + conf.RETRY_COUNT_HEADER.upper().replace("-", "_")
        retry_count = _int_or_zero(request.META.get(retry_header))
        if retry_count:
            logger.info("Retry %d of key %r (%s).", retry_count, key, scope)
        using = conf.DATABASE or router.db_for_write(IdempotencyRecord)
        attempt = Attempt(request, scope, key, fingerprint, using, retry_count)
        request.idempotency = Idempotency(attempt)
        return attempt

    def _read(self, attempt: Attempt) -> IdempotencyRecord | None:
        return IdempotencyRecord.objects.lookup(attempt.using, attempt.scope, attempt.key)

    def _try(self, attempt: Attempt, call_view: Callable[[], HttpResponseBase]) -> Any:
        record = self._read(attempt)
        if record is not None and record.is_live():
            return self._answer(attempt, record)
        if self._atomic():
            lock = self._acquire(attempt)
            if lock is IN_FLIGHT or isinstance(lock, HttpResponseBase):
                return lock
            if isinstance(lock, Lock):
                try:
                    return self._run_locked(attempt, lock, call_view)
                finally:
                    lock.release()
        attempt.durable = True
        reserved = self._reserve(attempt, record)
        if reserved is not None:
            return reserved
        return self._run_durable(attempt, call_view)

    def _acquire(self, attempt: Attempt) -> Any:
        """Take the in-flight lock.

        Returns the held lock (a transactional one is taken later, inside the
        transaction), ``None`` where there is no lock and a durable reservation must
        do, ``IN_FLIGHT``, or a 503 when the cache is down and fallback is off (L3).
        """
        if conf.LOCK_BACKEND == "cache":
            try:
                lock = cache_lock(conf.CACHE, attempt.scope, attempt.key, self._lease())
                return lock if lock.acquire() else IN_FLIGHT
            except LockUnavailable as error:
                if not conf.CACHE_FALLBACK:
                    logger.error("Cache lock unavailable, failing closed: %s", error)
                    return problem_response(
                        UNAVAILABLE,
                        "The idempotency lock store is unavailable; retry later.",
                        Retry_After="1",
                    )
                logger.warning("Cache lock unavailable, using the database lock: %s", error)
                signals.lock_backend_fallback.send(
                    sender=self.sender, request=attempt.request, error=error
                )
        database = database_lock(attempt.using, attempt.scope, attempt.key)
        if database is None or database.transactional or database.acquire():
            return database
        return IN_FLIGHT

    def _run_locked(
        self, attempt: Attempt, lock: Lock, call_view: Callable[[], HttpResponseBase]
    ) -> Any:
        try:
            with transaction.atomic(using=attempt.using):
                # Read again under the lock: the holder before us may have just committed.
                if isinstance(lock, PostgresAdvisoryLock):
                    locked, record = IdempotencyRecord.objects.lock_and_lookup(
                        attempt.using, lock.number, attempt.scope, attempt.key
                    )
                else:
                    locked, record = True, self._read(attempt)
                if record is not None and record.is_live():
                    raise _Abort(record)
                if not locked:
                    raise _Abort(IN_FLIGHT)
                self._watch_double_submit(attempt.request, attempt)
                response = _rendered(call_view())
                if not self._storable(response.status_code):
                    raise _Abort(response)
                self._save(attempt, record, capture(response))
        except _Abort as abort:
            if abort.outcome is _LOST:
                # Another attempt committed the key first (the unique constraint said so).
                # The view's work is rolled back; answer as that attempt did.
                record = self._read(attempt)
                return IN_FLIGHT if record is None else self._answer(attempt, record)
            if isinstance(abort.outcome, IdempotencyRecord):
                return self._answer(attempt, abort.outcome)
            return abort.outcome
        return response

    def _save(
        self, attempt: Attempt, dead: IdempotencyRecord | None, stored: StoredResponse
    ) -> None:
        """Write the completed record inside the view's transaction (fresh path)."""
        now = timezone.now()
        values = {
            "state": State.COMPLETED,
            "fingerprint": attempt.fingerprint,
            "method": attempt.request.method,
            "path": attempt.request.get_full_path()[:2048],
            "owner": "",
            "locked_until": None,
            "retry_count": attempt.retry_count,
            "status_code": stored.status_code,
            "response_headers": stored.headers,
            "response_body": stored.body,
            "body_stored": stored.body is not None,
            "completed_at": now,
            "expires_at": now + timedelta(seconds=self._ttl()),
        }
        records = IdempotencyRecord.objects.using(attempt.using)
        if dead is None:
            record = IdempotencyRecord(
                scope=attempt.scope, key=attempt.key, created_at=now, **values
            )
            try:
                IdempotencyRecord.objects.insert(attempt.using, record)
            except IntegrityError:
                raise _Abort(_LOST) from None
            return
        expired = dead.expires_at <= now
        attempts = 1 if expired else dead.attempts + 1
        taken = _same_version(records, dead).update(
            attempts=attempts, created_at=now, recovery_points={}, **values
        )
        if not taken:
            raise _Abort(_LOST)
        if not expired:
            self._taken_over(attempt, dead, attempts)

    def _read_and_reserve(self, attempt: Attempt) -> Any:
        return self._reserve(attempt, self._read(attempt))

    def _reserve(self, attempt: Attempt, record: IdempotencyRecord | None) -> Any:
        """Commit an in-progress reservation; ``None`` when this attempt now holds it."""
        now = timezone.now()
        if record is not None and record.is_live(now):
            return self._answer(attempt, record)
        token = secrets.token_hex(16)
        values = {
            "state": State.IN_PROGRESS,
            "owner": token,
            "locked_until": now + timedelta(seconds=self._lease()),
            "expires_at": now + timedelta(seconds=self._ttl()),
            "retry_count": attempt.retry_count,
            "method": attempt.request.method,
            "path": attempt.request.get_full_path()[:2048],
        }
        records = IdempotencyRecord.objects.using(attempt.using)
        if record is None:
            try:
                with _savepoint_if_needed(attempt.using):
                    record = records.create(
                        scope=attempt.scope,
                        key=attempt.key,
                        fingerprint=attempt.fingerprint,
                        created_at=now,
                        **values,
                    )
            except IntegrityError:
                return IN_FLIGHT  # Another attempt reserved it a moment ago.
        else:
            expired = record.expires_at <= now
            if not expired and record.fingerprint != attempt.fingerprint:
                return self._answer(
                    attempt, record
                )  # 422: a crashed reservation of another request
            changes = dict(values, attempts=record.attempts + 1)
            if expired:
                changes.update(fingerprint=attempt.fingerprint, recovery_points={}, attempts=1)
            if not _same_version(records, record).update(**changes):
                return IN_FLIGHT
            if not expired:
                self._taken_over(attempt, record, changes["attempts"])
            for name, value in changes.items():
                setattr(record, name, value)
        attempt.record = record
        attempt.token = token
        return None

    def _taken_over(self, attempt: Attempt, record: IdempotencyRecord, attempts: int) -> None:
        logger.warning(
            "Lease of key %r (%s) ran out; attempt %d takes over.",
            attempt.key,
            attempt.scope,
            attempts,
        )
        signals.lease_taken_over.send(
            sender=self.sender, request=attempt.request, record=record, attempts=attempts
        )

    def _run_durable(self, attempt: Attempt, call_view: Callable[[], HttpResponseBase]) -> Any:
        self._watch_double_submit(attempt.request, attempt)
        try:
            if self._atomic():
                with transaction.atomic(using=attempt.using):
                    response = _rendered(call_view())
                    if not self._storable(response.status_code):
                        raise _Abort(response)
                    if not self._complete(attempt, response):
                        raise _Abort(IN_FLIGHT)
                return response
            response = _rendered(call_view())
        except _Abort as abort:
            self._release(attempt)
            return abort.outcome
        except BaseException:
            self._release(attempt)
            raise
        return self._finish_durable(attempt, response)

    def _finish_durable(self, attempt: Attempt, response: HttpResponseBase) -> HttpResponseBase:
        if not self._storable(response.status_code):
            self._release(attempt)
        elif not self._complete(attempt, response):
            logger.warning(
                "Key %r (%s) was taken over while its view ran; its outcome is not stored.",
                attempt.key,
                attempt.scope,
            )
        return response

    def _complete(self, attempt: Attempt, response: HttpResponseBase) -> bool:
        stored = capture(response)
        now = timezone.now()
        assert attempt.record is not None
        return bool(
            IdempotencyRecord.objects.using(attempt.using)
            .filter(pk=attempt.record.pk, owner=attempt.token)
            .update(
                state=State.COMPLETED,
                owner="",
                locked_until=None,
                status_code=stored.status_code,
                response_headers=stored.headers,
                response_body=stored.body,
                body_stored=stored.body is not None,
                completed_at=now,
                expires_at=now + timedelta(seconds=self._ttl()),
            )
        )

    def _release(self, attempt: Attempt) -> None:
        """Give the key back after a failure (S6); recovery points survive (T2)."""
        record = attempt.record
        if record is None:
            return
        records = IdempotencyRecord.objects.using(attempt.using).filter(
            pk=record.pk, owner=attempt.token
        )
        with contextlib.suppress(Exception):
            # A connection that broke must not hide the view's own error; the lease expires.
            if record.recovery_points:
                records.update(owner="", locked_until=timezone.now())
            else:
                records.delete()

    # Answers.

    def _answer(self, attempt: Attempt, record: IdempotencyRecord) -> Any:
        if record.fingerprint != attempt.fingerprint:
            logger.warning(
                "Key %r (%s) reused for a different request.", attempt.key, attempt.scope
            )
            signals.mismatch.send(sender=self.sender, request=attempt.request, record=record)
            return problem_response(
                MISMATCH,
                "This idempotency key was already used for a different request "
                "(method, path or body differ). Use a new key for a new request.",
            )
        if record.state != State.COMPLETED:
            return IN_FLIGHT
        logger.info("Replaying key %r (%s).", attempt.key, attempt.scope)
        signals.replayed.send(sender=self.sender, request=attempt.request, record=record)
        body = record.response_body
        return replay(
            record.status_code or 200,
            record.response_headers,
            bytes(body) if body is not None else None,
        )

    def _conflict(self, attempt: Attempt) -> HttpResponseBase:
        logger.info("Key %r (%s) is in progress: 409.", attempt.key, attempt.scope)
        signals.conflict.send(sender=self.sender, request=attempt.request, record=attempt.record)
        retry_after = max(1, math.ceil(min(self._lease(), 1.0)))
        return problem_response(
            IN_PROGRESS,
            "A request with this idempotency key is still being processed. "
            "Retry after the time given in Retry-After.",
            Retry_After=str(retry_after),
        )

    # O2: double submits.

    def _watch_double_submit(self, request: Any, attempt: Attempt | None) -> None:
        window = conf.DOUBLE_SUBMIT_WINDOW
        if not window or request.method != "POST":
            return
        try:
            if attempt is None:
                scope = scope_for(request, self.scope)
                fingerprint = fingerprint_for(request, self.fingerprint)
                key = ""
            else:
                scope, fingerprint, key = attempt.scope, attempt.fingerprint, attempt.key
            name = "idempotent_post:recent:" + lock_id(scope, fingerprint).hex()
            cache = caches[conf.CACHE]
            if cache.add(name, key, timeout=window):
                return
            previous = cache.get(name)
        except Exception:
            logger.debug("Double-submit detection skipped.", exc_info=True)
            return
        if key and previous == key:
            return
        logger.warning(
            "Suspected double submit: %s %s (%s) twice within %ss%s.",
            request.method,
            request.path,
            scope,
            window,
            " with different keys" if key else " without a key",
        )
        signals.double_submit_suspected.send(
            sender=self.sender, request=request, path=request.path, fingerprint=fingerprint
        )


def _same_version(records: Any, record: IdempotencyRecord) -> Any:
    """The record, only if nobody changed it since it was read (optimistic takeover)."""
    return records.filter(
        pk=record.pk,
        state=record.state,
        owner=record.owner,
        expires_at=record.expires_at,
    )


def _savepoint_if_needed(using: str) -> Any:
    # An IntegrityError inside an outer transaction must not break it.
    if connections[using].in_atomic_block:
        return transaction.atomic(using=using)
    return contextlib.nullcontext()


def _int_or_zero(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


async def _async_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
