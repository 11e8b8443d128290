"""System checks (L4, D4): refuse settings that cannot work, at startup."""

from __future__ import annotations

from numbers import Real
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from idempotent_post.conf import conf
from idempotent_post.fingerprint import FINGERPRINT_ALIASES
from idempotent_post.keys import SCOPE_ALIASES, resolve_callable

PREFIX = "IDEMPOTENT_POST_"
SHARED_CACHE_BACKENDS = ("django_redis.cache.RedisCache",)

_POSITIVE = ("LEASE", "TTL")
_NON_NEGATIVE = ("WAIT", "FORM_WAIT", "DOUBLE_SUBMIT_WINDOW")
_BOOLEANS = ("REQUIRED", "ATOMIC", "STORE_SERVER_ERRORS", "REPLAY_CREATED_AS_OK", "CACHE_FALLBACK")
_NAMES = ("HEADER", "FORM_FIELD", "RETRY_COUNT_HEADER")


def _error(id_: int, msg: str, hint: str | None = None) -> checks.Error:
    return checks.Error(msg, hint=hint, id=f"idempotent_post.E{id_:03d}")


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


@checks.register(checks.Tags.compatibility)
def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """Every ``IDEMPOTENT_POST_*`` setting has a usable type and value."""
    errors: list[checks.CheckMessage] = []

    backend = conf.LOCK_BACKEND
    if backend not in ("database", "cache"):
        errors.append(
            _error(1, f"{PREFIX}LOCK_BACKEND must be 'database' or 'cache', not {backend!r}.")
        )
    elif backend == "cache":
        alias = conf.CACHE
        cache = settings.CACHES.get(alias) if isinstance(alias, str) else None
        if cache is None:
            errors.append(
                _error(2, f"{PREFIX}CACHE names the cache {alias!r}, which CACHES does not define.")
            )
        elif cache.get("BACKEND") not in SHARED_CACHE_BACKENDS:
            errors.append(
                _error(
                    3,
                    f"The cache lock backend needs a shared Redis cache; {alias!r} uses "
                    f"{cache.get('BACKEND')!r}, which every process keeps apart or cannot lock.",
                    hint="Point IDEMPOTENT_POST_CACHE at a django_redis.cache.RedisCache, "
                    "or set IDEMPOTENT_POST_LOCK_BACKEND = 'database'.",
                )
            )

    for name, aliases in (("SCOPE", SCOPE_ALIASES), ("FINGERPRINT", FINGERPRINT_ALIASES)):
        try:
            resolve_callable(getattr(conf, name), aliases, PREFIX + name)
        except ImproperlyConfigured as error:
            errors.append(_error(4, str(error)))

    for name in _POSITIVE:
        value = getattr(conf, name)
        if not _number(value) or value <= 0:
            errors.append(_error(5, f"{PREFIX}{name} must be a positive number of seconds."))
    for name in _NON_NEGATIVE:
        value = getattr(conf, name)
        if not _number(value) or value < 0:
            errors.append(_error(5, f"{PREFIX}{name} must be a number of seconds, 0 or more."))

    for name in _BOOLEANS:
        if not isinstance(getattr(conf, name), bool):
            errors.append(_error(6, f"{PREFIX}{name} must be True or False."))

    for name in _NAMES:
        value = getattr(conf, name)
        if not isinstance(value, str) or not value:
            errors.append(_error(7, f"{PREFIX}{name} must be a non-empty string."))

    max_length = conf.KEY_MAX_LENGTH
    if (
        not isinstance(max_length, int)
        or isinstance(max_length, bool)
        or not 1 <= max_length <= 255
    ):
        errors.append(_error(8, f"{PREFIX}KEY_MAX_LENGTH must be a whole number from 1 to 255."))
    for name, low in (("MAX_RESPONSE_SIZE", 0), ("PURGE_BATCH_SIZE", 1)):
        value = getattr(conf, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            errors.append(_error(8, f"{PREFIX}{name} must be a whole number, {low} or more."))

    # The raw setting: the property makes a tuple of it, which would split a lone string.
    name = PREFIX + "REPLAY_HEADERS"
    headers = getattr(settings, name) if hasattr(settings, name) else conf.REPLAY_HEADERS
    if isinstance(headers, str) or not all(isinstance(header, str) for header in headers):
        errors.append(_error(9, f"{PREFIX}REPLAY_HEADERS must be a list of header names."))
    elif any(header.lower() in ("set-cookie", "authorization") for header in headers):
        errors.append(
            _error(
                9,
                f"{PREFIX}REPLAY_HEADERS must not hold Set-Cookie or Authorization: a replay "
                "would hand one client's credentials to another.",
            )
        )

    database = conf.DATABASE
    if database is not None and database not in settings.DATABASES:
        errors.append(
            _error(10, f"{PREFIX}DATABASE names {database!r}, which DATABASES does not define.")
        )
    return errors
