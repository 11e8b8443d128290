"""Settings for idempotent-post, read lazily from ``django.conf.settings``.

Every setting is a flat ``IDEMPOTENT_POST_*`` name with a default here. They are read
on each access, so ``override_settings`` in tests takes effect at once.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

PREFIX = "IDEMPOTENT_POST_"

DEFAULTS: dict[str, Any] = {
    # K1: the request header that carries the key.
    "HEADER": "Idempotency-Key",
    # K2: the longest accepted key.
    "KEY_MAX_LENGTH": 255,
    # K4: refuse POSTs without a key on every guarded view.
    "REQUIRED": False,
    # K3: who a key belongs to: an alias, a dotted path or a callable.
    "SCOPE": "user_or_session",
    # F3: how a request is fingerprinted: an alias, a dotted path or a callable.
    "FINGERPRINT": "default",
    # S5: seconds an in-progress reservation is held before a retry may take over.
    "LEASE": 30.0,
    # S7: seconds a completed record is kept.
    "TTL": 24 * 60 * 60.0,
    # S3: seconds a duplicate waits for the first to finish (0: answer 409 at once).
    "WAIT": 0.0,
    # G4: the same, for the form mixin.
    "FORM_WAIT": 5.0,
    # T1: run the view and store its outcome in one transaction.
    "ATOMIC": True,
    # S6: store 5xx responses too (Stripe does).
    "STORE_SERVER_ERRORS": False,
    # P1: answer a replayed 201 with 200.
    "REPLAY_CREATED_AS_OK": False,
    # P2: the response headers that are stored and replayed (case-insensitive).
    "REPLAY_HEADERS": (
        "Content-Type",
        "Content-Language",
        "Content-Disposition",
        "Content-Location",
        "Location",
        "ETag",
        "Last-Modified",
        "Link",
        "Cache-Control",
        "Expires",
    ),
    # P3: the largest response body that is stored, in bytes.
    "MAX_RESPONSE_SIZE": 1024 * 1024,
    # P3: the alias, in Django's STORAGES, of the storage that keeps larger bodies.
    "RESPONSE_STORAGE": "default",
    # P3: the largest response body kept in that storage, in bytes (0: none is).
    "MAX_STORED_FILE_SIZE": 100 * 1024 * 1024,
    # L2: "database" or "cache".
    "LOCK_BACKEND": "database",
    # L2: the cache alias (django-redis) of the cache lock backend.
    "CACHE": "default",
    # L3: when the cache fails, use the database lock (True) or answer 503 (False).
    "CACHE_FALLBACK": True,
    # L1: the database alias that holds the records (None: the router decides).
    "DATABASE": None,
    # G3: the name of the hidden form field.
    "FORM_FIELD": "idempotency_key",
    # O2: seconds within which the same unkeyed POST counts as a suspected double submit.
    "DOUBLE_SUBMIT_WINDOW": 0.5,
    # O3: the request header that tells how many times a client has retried.
    "RETRY_COUNT_HEADER": "X-Retry-Count",
    # O5: rows deleted per batch by the purge command.
    "PURGE_BATCH_SIZE": 1000,
}


class Settings:
    """Typed, lazy access to the ``IDEMPOTENT_POST_*`` settings."""

    def _get(self, name: str) -> Any:
        return getattr(settings, PREFIX + name, DEFAULTS[name])

    @property
    def HEADER(self) -> str:
        return self._get("HEADER")

    @property
    def KEY_MAX_LENGTH(self) -> int:
        return self._get("KEY_MAX_LENGTH")

    @property
    def REQUIRED(self) -> bool:
        return self._get("REQUIRED")

    @property
    def SCOPE(self) -> Any:
        return self._get("SCOPE")

    @property
    def FINGERPRINT(self) -> Any:
        return self._get("FINGERPRINT")

    @property
    def LEASE(self) -> float:
        return self._get("LEASE")

    @property
    def TTL(self) -> float:
        return self._get("TTL")

    @property
    def WAIT(self) -> float:
        return self._get("WAIT")

    @property
    def FORM_WAIT(self) -> float:
        return self._get("FORM_WAIT")

    @property
    def ATOMIC(self) -> bool:
        return self._get("ATOMIC")

    @property
    def STORE_SERVER_ERRORS(self) -> bool:
        return self._get("STORE_SERVER_ERRORS")

    @property
    def REPLAY_CREATED_AS_OK(self) -> bool:
        return self._get("REPLAY_CREATED_AS_OK")

    @property
    def REPLAY_HEADERS(self) -> tuple[str, ...]:
        return tuple(self._get("REPLAY_HEADERS"))

    @property
    def MAX_RESPONSE_SIZE(self) -> int:
        return self._get("MAX_RESPONSE_SIZE")

    @property
    def RESPONSE_STORAGE(self) -> str:
        return self._get("RESPONSE_STORAGE")

    @property
    def MAX_STORED_FILE_SIZE(self) -> int:
        return self._get("MAX_STORED_FILE_SIZE")

    @property
    def LOCK_BACKEND(self) -> str:
        return self._get("LOCK_BACKEND")

    @property
    def CACHE(self) -> str:
        return self._get("CACHE")

    @property
    def CACHE_FALLBACK(self) -> bool:
        return self._get("CACHE_FALLBACK")

    @property
    def DATABASE(self) -> str | None:
        return self._get("DATABASE")

    @property
    def FORM_FIELD(self) -> str:
        return self._get("FORM_FIELD")

    @property
    def DOUBLE_SUBMIT_WINDOW(self) -> float:
        return self._get("DOUBLE_SUBMIT_WINDOW")

    @property
    def RETRY_COUNT_HEADER(self) -> str:
        return self._get("RETRY_COUNT_HEADER")

    @property
    def PURGE_BATCH_SIZE(self) -> int:
        return self._get("PURGE_BATCH_SIZE")


conf = Settings()
