"""Double-submit detection (O2): reported, never blocked.

The same scope posting the same fingerprint to the same path twice within
``IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW`` seconds, without a key or with different
keys, is most likely a double click: a ``double_submit_suspected`` signal and a log line
say so. Observability only: it never changes an answer, and a cache failure only skips it.

A keyed request is watched off its path, by a background thread: its cache round trip
must not cost a guarded view latency. A POST without a key is watched in line.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from django.core.cache import caches

from idempotent_post import signals
from idempotent_post.conf import conf
from idempotent_post.fingerprint import fingerprint_for
from idempotent_post.keys import scope_for
from idempotent_post.locks import lock_id

logger = logging.getLogger("idempotent_post")

PREFIX = "idempotent_post:recent:"


def watch_unkeyed(request: Any, scope: Any, fingerprint: Any, sender: Any) -> None:
    """Watch a POST that came without a key, under the view's scope and fingerprint options."""
    if not conf.DOUBLE_SUBMIT_WINDOW or request.method != "POST":
        return
    try:
        scope_value = scope_for(request, scope)
        fingerprint_value = fingerprint_for(request, fingerprint)
    except Exception:
        logger.debug("Double-submit detection skipped.", exc_info=True)
        return
    watch(request, scope_value, fingerprint_value, "", sender)


_pending: queue.Queue[tuple[Any, str, str, str, Any]] = queue.Queue()
_worker_lock = threading.Lock()
_worker: threading.Thread | None = None


def watch_later(request: Any, scope: str, fingerprint: str, key: str, sender: Any) -> None:
    """Watch a keyed request from the background thread (started on first use)."""
    global _worker
    if request is None or not conf.DOUBLE_SUBMIT_WINDOW or request.method != "POST":
        return
    with _worker_lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, name="idempotent-post-watch", daemon=True)
            _worker.start()
    _pending.put((request, scope, fingerprint, key, sender))


def drain() -> None:
    """Wait until every watch queued so far has run (for tests)."""
    _pending.join()


def _work() -> None:
    while True:
        item = _pending.get()
        try:
            watch(*item)
        except Exception:
            logger.debug("Double-submit detection failed.", exc_info=True)
        finally:
            _pending.task_done()


def watch(request: Any, scope: str, fingerprint: str, key: str, sender: Any) -> None:
    """Report ``request`` if the same POST came within the window (``key`` "" for none)."""
    window = conf.DOUBLE_SUBMIT_WINDOW
    if not window or request.method != "POST":
        return
    name = PREFIX + lock_id(scope, fingerprint).hex()
    try:
        cache = caches[conf.CACHE]
        if cache.add(name, key, timeout=window):
            return
        previous = cache.get(name)
    except Exception:
        logger.debug("Double-submit detection skipped.", exc_info=True)
        return
    if key and previous == key:
        return  # a retry of the same key is what keys are for
    logger.warning(
        "Suspected double submit: %s %s (%s) twice within %ss%s.",
        request.method,
        request.path,
        scope,
        window,
        " with different keys" if key else " without a key",
    )
    signals.double_submit_suspected.send(
        sender=sender, request=request, path=request.path, fingerprint=fingerprint
    )
