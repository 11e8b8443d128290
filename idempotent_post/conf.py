"""Settings for idempotent-post, read lazily from ``django.conf.settings``.

Every setting is a flat ``IDEMPOTENT_POST_*`` name with its default in the property that
reads it (D4). A value is read once, then kept until Django's ``setting_changed`` signal
says an ``IDEMPOTENT_POST_*`` setting changed, so ``override_settings`` in tests takes
effect at once while a request pays no lookup in Django's settings (an unset setting
costs an exception there each time).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed


class Settings:
    """Typed, lazy access to the ``IDEMPOTENT_POST_*`` settings."""

    @cached_property
    def HEADER(self) -> str:
        """K1: the request header that carries the key."""
        return getattr(settings, "IDEMPOTENT_POST_HEADER", "Idempotency-Key")

    @cached_property
    def KEY_MAX_LENGTH(self) -> int:
        """K2: the longest accepted key."""
        return getattr(settings, "IDEMPOTENT_POST_KEY_MAX_LENGTH", 255)

    @cached_property
    def ENABLED(self) -> bool:
        """C5: False switches every guard off; guarded views run as if undecorated."""
        return getattr(settings, "IDEMPOTENT_POST_ENABLED", True)

    @cached_property
    def REQUIRED(self) -> bool:
        """K4: refuse POSTs without a key on every guarded view."""
        return getattr(settings, "IDEMPOTENT_POST_REQUIRED", False)

    @cached_property
    def SCOPE(self) -> Any:
        """K3: who a key belongs to: an alias, a dotted path or a callable."""
        return getattr(settings, "IDEMPOTENT_POST_SCOPE", "user_or_session")

    @cached_property
    def FINGERPRINT(self) -> Any:
        """F3: how a request is fingerprinted: an alias, a dotted path or a callable."""
        return getattr(settings, "IDEMPOTENT_POST_FINGERPRINT", "default")

    @cached_property
    def LEASE(self) -> float:
        """S5: seconds an in-progress reservation is held before a retry may take over."""
        return getattr(settings, "IDEMPOTENT_POST_LEASE", 30.0)

    @cached_property
    def TTL(self) -> float:
        """S7: seconds a completed record is kept."""
        return getattr(settings, "IDEMPOTENT_POST_TTL", 24 * 60 * 60.0)

    @cached_property
    def WAIT(self) -> float:
        """S3: seconds a duplicate waits for the first to finish (0: answer 409 at once)."""
        return getattr(settings, "IDEMPOTENT_POST_WAIT", 0.0)

    @cached_property
    def FORM_WAIT(self) -> float:
        """G4: the same, for the form mixin."""
        return getattr(settings, "IDEMPOTENT_POST_FORM_WAIT", 5.0)

    @cached_property
    def ATOMIC(self) -> bool:
        """T1: run the view and store its outcome in one transaction."""
        return getattr(settings, "IDEMPOTENT_POST_ATOMIC", True)

    @cached_property
    def STORE_SERVER_ERRORS(self) -> bool:
        """S6: store 5xx responses too (Stripe does)."""
        return getattr(settings, "IDEMPOTENT_POST_STORE_SERVER_ERRORS", False)

    @cached_property
    def REPLAY_CREATED_AS_OK(self) -> bool:
        """P1: answer a replayed 201 with 200."""
        return getattr(settings, "IDEMPOTENT_POST_REPLAY_CREATED_AS_OK", False)

    @cached_property
    def REPLAY_HEADERS(self) -> tuple[str, ...]:
        """P2: the response headers that are stored and replayed (case-insensitive)."""
        return tuple(
            getattr(
                settings,
                "IDEMPOTENT_POST_REPLAY_HEADERS",
                (
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
                    # htmx: where a replayed 204 leads (G4 with htmx forms).
                    "HX-Redirect",
                    "HX-Location",
                    "HX-Refresh",
                ),
            )
        )

    @cached_property
    def MAX_RESPONSE_SIZE(self) -> int:
        """P3: the largest response body that is stored, in bytes."""
        return getattr(settings, "IDEMPOTENT_POST_MAX_RESPONSE_SIZE", 1024 * 1024)

    @cached_property
    def RESPONSE_STORAGE(self) -> str:
        """P3: the alias, in Django's STORAGES, of the storage that keeps larger bodies."""
        return getattr(settings, "IDEMPOTENT_POST_RESPONSE_STORAGE", "default")

    @cached_property
    def MAX_STORED_FILE_SIZE(self) -> int:
        """P3: the largest response body kept in that storage, in bytes (0: none is)."""
        return getattr(settings, "IDEMPOTENT_POST_MAX_STORED_FILE_SIZE", 100 * 1024 * 1024)

    @cached_property
    def ENCRYPTION_KEYS(self) -> Sequence[str | bytes] | None:
        """C4: Fernet keys for stored responses; the first encrypts, all decrypt (empty: off)."""
        return getattr(settings, "IDEMPOTENT_POST_ENCRYPTION_KEYS", ())

    @cached_property
    def LOCK_BACKEND(self) -> str:
        """L2: "database" or "cache"."""
        return getattr(settings, "IDEMPOTENT_POST_LOCK_BACKEND", "database")

    @cached_property
    def CACHE(self) -> str:
        """L2: the cache alias (django-redis) of the cache lock backend."""
        return getattr(settings, "IDEMPOTENT_POST_CACHE", "default")

    @cached_property
    def CACHE_FALLBACK(self) -> bool:
        """L3: when the cache fails, use the database lock (True) or answer 503 (False)."""
        return getattr(settings, "IDEMPOTENT_POST_CACHE_FALLBACK", True)

    @cached_property
    def DATABASE(self) -> str | None:
        """L1: the database alias that holds the records (None: the router decides)."""
        return getattr(settings, "IDEMPOTENT_POST_DATABASE", None)

    @cached_property
    def FORM_FIELD(self) -> str:
        """G3: the name of the hidden form field."""
        return getattr(settings, "IDEMPOTENT_POST_FORM_FIELD", "idempotency_key")

    @cached_property
    def DOUBLE_SUBMIT_WINDOW(self) -> float:
        """O2: seconds within which the same unkeyed POST is a suspected double submit."""
        return getattr(settings, "IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW", 0.5)

    @cached_property
    def RETRY_COUNT_HEADER(self) -> str:
        """O3: the request header that tells how many times a client has retried."""
        return getattr(settings, "IDEMPOTENT_POST_RETRY_COUNT_HEADER", "X-Retry-Count")

    @cached_property
    def DOCS_URL(self) -> str | None:
        """C2: the page documenting the problem types; their ``type`` is a URL under it."""
        return getattr(settings, "IDEMPOTENT_POST_DOCS_URL", None)

    @cached_property
    def PURGE_BATCH_SIZE(self) -> int:
        """O5: rows deleted per batch by the purge command."""
        return getattr(settings, "IDEMPOTENT_POST_PURGE_BATCH_SIZE", 1000)


conf = Settings()


def _forget(setting: str, **kwargs: Any) -> None:
    if setting.startswith("IDEMPOTENT_POST_"):
        conf.__dict__.clear()


setting_changed.connect(_forget, dispatch_uid="idempotent_post.conf")
