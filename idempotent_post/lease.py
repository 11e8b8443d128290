"""Leases that live as long as their holder (S9): a heartbeat renews them while it runs.

An attempt that holds a durable reservation (or a Redis lock) has a lease: after it a
retry may take the key over. A slow view must not lose its key to a prompt retry, so
while the view runs one daemon thread per process renews each held lease every third
of its length. A holder that dies (a killed process) stops renewing, and its lease
runs out. A renewal that finds the key taken marks the holder as having lost it; the
holder's commit is fenced by its owner token anyway (S9).

The thread has database connections of its own, closed whenever no lease is held; most
views finish before their first renewal is due, so they cost no more than a heap entry.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from django.db import connections

logger = logging.getLogger("idempotent_post")


class Renewal:
    """One held lease: ``renew()`` is called every ``interval`` seconds until stopped."""

    def __init__(self, renew: Callable[[], bool], interval: float, using: str | None) -> None:
        self.renew = renew
        self.interval = interval
        self.using = using
        self.stopped = False
        #: Set once a renewal found the key held by another attempt.
        self.lost = threading.Event()

    def stop(self) -> None:
        """The holder finished: renew no more."""
        self.stopped = True


class Heartbeat:
    """The process's renewing thread, started on first use."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Renewal]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def keep(self, renew: Callable[[], bool], lease: float, using: str | None = None) -> Renewal:
        """Renew a lease of ``lease`` seconds until the returned renewal is stopped."""
        renewal = Renewal(renew, max(lease / 3, 0.05), using)
        entry = (time.monotonic() + renewal.interval, next(self._order), renewal)
        with self._wake:
            heapq.heappush(self._due, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="idempotent-post-heartbeat", daemon=True
                )
                self._thread.start()
            if self._due[0] is entry:
                # Only an entry due before all others needs the thread awake; most requests
                # end long before their first renewal and never wake it.
                self._wake.notify()
        return renewal

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._due and self._due[0][2].stopped:
                    heapq.heappop(self._due)
                if not self._due:
                    # Idle: hold no database connection open while nothing is running.
                    connections.close_all()
                    self._wake.wait()
                    continue
                due, _, renewal = self._due[0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._due)
            self._renew(renewal)
            if not renewal.stopped and not renewal.lost.is_set():
                with self._wake:
                    heapq.heappush(
                        self._due,
                        (time.monotonic() + renewal.interval, next(self._order), renewal),
                    )

    def _renew(self, renewal: Renewal) -> None:
        try:
            kept = renewal.renew()
        except Exception:
            # A broken connection of this thread's: open a new one next time. The lease
            # itself still runs until its end, and the holder's commit is fenced.
            logger.warning("Could not renew an idempotency lease.", exc_info=True)
            if renewal.using is not None:
                connections[renewal.using].close()
            return
        if not kept and not renewal.stopped:
            logger.warning("An idempotency lease was lost while its view still ran.")
            renewal.lost.set()


heartbeat = Heartbeat()
