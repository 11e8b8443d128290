"""Prometheus metrics (C6), fed by the engine's signals.

Installed with the ``[metrics]`` extra: when ``prometheus_client`` is importable the app
config connects these receivers, and the counters and the histogram live on
``prometheus_client``'s default registry. Nothing here starts a server: expose the
registry the way the project already does (``prometheus_client.generate_latest()`` in a
view, ``django-prometheus``, a multiprocess collector).

Counters carry one label, ``view``: the guarded view's dotted name (``module.qualname``).
Its values are bounded by the code, never by the traffic: no key, scope, user or path.
The histogram is labelled by ``outcome`` only (``executed``, ``replayed``, ``conflict``,
``mismatch``), so its series do not multiply by the number of views.

A receiver never raises: an exception in a signal receiver would propagate through
``Signal.send()`` into the request, so a failure is logged and the answer goes out.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram

from idempotent_post import signals
from idempotent_post.engine import Busy, Executed, Mismatch, Replay

logger = logging.getLogger("idempotent_post")

EXECUTED = Counter(
    "idempotent_post_executed",
    "Keyed requests whose view ran and answered.",
    ["view"],
)
REPLAYED = Counter(
    "idempotent_post_replayed",
    "Keyed requests answered with a stored response instead of running the view.",
    ["view"],
)
CONFLICTS = Counter(
    "idempotent_post_conflicts",
    "Keyed requests answered 409 because another attempt held the key.",
    ["view"],
)
MISMATCHES = Counter(
    "idempotent_post_mismatches",
    "Keyed requests answered 422 because the key belonged to a different request.",
    ["view"],
)
TAKEOVERS = Counter(
    "idempotent_post_takeovers",
    "Reservations taken over after their holder stopped renewing the lease.",
    ["view"],
)
LOCK_FALLBACKS = Counter(
    "idempotent_post_lock_fallbacks",
    "Requests that used the database lock because the cache lock failed.",
    ["view"],
)
DOUBLE_SUBMITS = Counter(
    "idempotent_post_double_submits",
    "Suspected double submits: the same POST twice within the window (reported, not blocked).",
    ["view"],
)
GUARD_SECONDS = Histogram(
    "idempotent_post_guard_seconds",
    "The guard's own time for a keyed request, the view's excluded.",
    ["outcome"],
    # A replay or a first execution costs the guard a few queries: well under 100 ms. The
    # top buckets catch a request that waited for another attempt (the `wait` option).
    buckets=(0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)

_OUTCOMES: dict[type, str] = {
    Executed: "executed",
    Replay: "replayed",
    Busy: "conflict",
    Mismatch: "mismatch",
}


def view_name(sender: Any) -> str:
    """The ``view`` label of a signal's sender: a view function, method or class."""
    if sender is None:
        return "unknown"
    name = getattr(sender, "__qualname__", None) or type(sender).__qualname__
    module = getattr(sender, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def _never_raises(receiver: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(receiver)
    def safe(sender: Any, **kwargs: Any) -> None:
        try:
            receiver(sender, **kwargs)
        except Exception:
            logger.warning("Metrics receiver %s failed.", receiver.__name__, exc_info=True)

    return safe


def _counting(counter: Counter) -> Callable[..., None]:
    def count(sender: Any, **kwargs: Any) -> None:
        counter.labels(view=view_name(sender)).inc()

    return _never_raises(count)


@_never_raises
def _observe_guard(sender: Any, outcome: Any = None, seconds: float = 0.0, **kwargs: Any) -> None:
    label = _OUTCOMES.get(type(outcome), "other")
    GUARD_SECONDS.labels(outcome=label).observe(max(seconds, 0.0))


# Held here because Signal.connect() keeps only weak references, and the counting closures
# have no other owner.
_RECEIVERS = {
    "executed": (signals.executed, _counting(EXECUTED)),
    "replayed": (signals.replayed, _counting(REPLAYED)),
    "conflict": (signals.conflict, _counting(CONFLICTS)),
    "mismatch": (signals.mismatch, _counting(MISMATCHES)),
    "lease_taken_over": (signals.lease_taken_over, _counting(TAKEOVERS)),
    "lock_backend_fallback": (signals.lock_backend_fallback, _counting(LOCK_FALLBACKS)),
    "double_submit_suspected": (signals.double_submit_suspected, _counting(DOUBLE_SUBMITS)),
    "guard_finished": (signals.guard_finished, _observe_guard),
}


def connect() -> None:
    """Connect the receivers that feed the metrics; calling it again changes nothing.

    The app config calls it when ``prometheus_client`` is installed.
    """
    for name, (signal, receiver) in _RECEIVERS.items():
        signal.connect(receiver, dispatch_uid=f"idempotent_post.metrics.{name}")
