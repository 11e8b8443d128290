"""Double-submit detection (O2): reported, never blocked.

The same scope posting the same fingerprint to the same path twice within
``IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW`` seconds, without a key or with different
keys, is most likely a double click: a ``double_submit_suspected`` signal and a log line
say so. Observability only: it never changes an answer, and a cache failure only skips it.

Each POST is a :class:`Sighting`, remembered in the cache for the window under its
(scope, fingerprint): set if absent, else read, and a different key (or none) read back
is the report. On Redis (django-redis) that is one round trip, and it shares one:

- a POST without a key is watched in line;
- with the cache lock, a keyed request's sighting goes in the lock's own round trip
  (:meth:`idempotent_post.locks.CacheLock.acquire`);
- otherwise a background thread watches keyed requests, as many as have queued up in
  one round trip, a twentieth of a second later at most, so that the watch costs a
  guarded view neither latency nor a round trip of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches

from idempotent_post import signals
from idempotent_post.conf import conf
from idempotent_post.fingerprint import fingerprint_for
from idempotent_post.keys import scope_for
from idempotent_post.locks import lock_id, redis_client

logger = logging.getLogger("idempotent_post")

PREFIX = "idempotent_post:recent:"

#: The most sightings the background thread sends in one round trip.
BATCH = 100
#: Seconds between the background thread's looks at its queue.
POLL = 0.05


@dataclass(frozen=True)
class Sighting:
    """One POST to watch; ``key`` is "" for a request without one."""

    request: Any
    scope: str
    fingerprint: str
    key: str
    sender: Any

    def name(self) -> str:
        """The cache key that remembers this (scope, fingerprint) for the window."""
        return caches[conf.CACHE].make_key(PREFIX + lock_id(self.scope, self.fingerprint).hex())

    def queue(self, pipeline: Any) -> None:
        """Add this sighting's two commands to a Redis ``pipeline``: remember, read back."""
        name = self.name()
        pipeline.set(name, self.key, nx=True, px=max(1, int(conf.DOUBLE_SUBMIT_WINDOW * 1000)))
        pipeline.get(name)

    def judge(self, remembered: bool, previous: Any) -> None:
        """Report this sighting if the (scope, fingerprint) was seen with another key."""
        if remembered or previous is None:
            return  # the first within the window (or the other one just expired)
        if isinstance(previous, bytes):
            previous = previous.decode("utf-8", "replace")
        if self.key and previous == self.key:
            return  # a retry of the same key is what keys are for
        request = self.request
        logger.warning(
            "Suspected double submit: %s %s (%s) twice within %ss%s.",
            request.method,
            request.path,
            self.scope,
            conf.DOUBLE_SUBMIT_WINDOW,
            " with different keys" if self.key else " without a key",
        )
        signals.double_submit_suspected.send(
            sender=self.sender, request=request, path=request.path, fingerprint=self.fingerprint
        )


def sighting(request: Any, scope: str, fingerprint: str, key: str, sender: Any) -> Sighting | None:
    """The sighting to watch for ``request``, ``None`` when detection does not apply."""
    if request is None or not conf.DOUBLE_SUBMIT_WINDOW or request.method != "POST":
        return None
    return Sighting(request, scope, fingerprint, key, sender)


def watch_unkeyed(request: Any, scope: Any, fingerprint: Any, sender: Any) -> None:
    """Watch a POST that came without a key, in line, under the view's options."""
    if not conf.DOUBLE_SUBMIT_WINDOW or request.method != "POST":
        return
    try:
        scope_value = scope_for(request, scope)
        fingerprint_value = fingerprint_for(request, fingerprint)
    except Exception:
        logger.debug("Double-submit detection skipped.", exc_info=True)
        return
    watch([Sighting(request, scope_value, fingerprint_value, "", sender)])


_pending: deque[Sighting] = deque()
_worker_lock = threading.Lock()
_worker: threading.Thread | None = None
#: Notified each time a batch was judged; guards ``_judging``.
_judged = threading.Condition()
_judging = 0


def watch_later(seen: Sighting | None) -> None:
    """Watch a keyed request from the background thread (started on first use).

    Appending wakes nobody: the thread looks every ``POLL`` seconds and sends what
    queued up as one batch, so a request pays neither a round trip nor a thread switch.
    """
    global _worker
    if seen is None:
        return
    if _worker is None or not _worker.is_alive():
        with _worker_lock:
            if _worker is None or not _worker.is_alive():
                _worker = threading.Thread(target=_work, name="idempotent-post-watch", daemon=True)
                _worker.start()
    _pending.append(seen)


def drain() -> None:
    """Wait until every watch queued so far has been judged (for tests)."""
    with _judged:
        while _pending or _judging:
            _judged.wait(POLL)


def _work() -> None:
    global _judging
    while True:
        if not _pending:
            time.sleep(POLL)
            continue
        with _judged:
            batch = [_pending.popleft() for _ in range(min(len(_pending), BATCH))]
            _judging += len(batch)
        try:
            watch(batch)
        except Exception:
            logger.exception("A double_submit_suspected receiver failed.")
        finally:
            with _judged:
                _judging -= len(batch)
                _judged.notify_all()


def watch(sightings: Iterable[Sighting]) -> None:
    """Remember ``sightings`` and report the doubles: one round trip on Redis."""
    sightings = list(sightings)
    try:
        client = redis_client(conf.CACHE)
        if client is None:
            found = _through_cache_api(sightings)
        else:
            pipeline = client.pipeline(transaction=False)
            for seen in sightings:
                seen.queue(pipeline)
            results = pipeline.execute()
            found = list(zip(results[::2], results[1::2], strict=True))
    except Exception:
        logger.debug("Double-submit detection skipped.", exc_info=True)
        return
    for seen, (remembered, previous) in zip(sightings, found, strict=True):
        seen.judge(bool(remembered), previous)


def _through_cache_api(sightings: list[Sighting]) -> list[tuple[bool, Any]]:
    # Any other cache (local memory in development): two calls each.
    cache = caches[conf.CACHE]
    found = []
    for seen in sightings:
        name = PREFIX + lock_id(seen.scope, seen.fingerprint).hex()
        remembered = cache.add(name, seen.key, timeout=conf.DOUBLE_SUBMIT_WINDOW)
        found.append((remembered, None if remembered else cache.get(name)))
    return found
