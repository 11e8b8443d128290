"""System checks (L4, D4): refuse settings that cannot work, at startup.

One id per problem, as Django's own checks have; the README lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages
from django.db import DEFAULT_DB_ALIAS
from django.db.utils import load_backend

from idempotent_post.conf import conf
from idempotent_post.engine import records_database
from idempotent_post.fingerprint import FINGERPRINT_ALIASES
from idempotent_post.keys import SCOPE_ALIASES, resolve_callable

PREFIX = "IDEMPOTENT_POST_"
SHARED_CACHE_BACKENDS = ("django_redis.cache.RedisCache",)

_POSITIVE = ("LEASE", "TTL")
_NON_NEGATIVE = ("WAIT", "FORM_WAIT", "DOUBLE_SUBMIT_WINDOW")
_BOOLEANS = ("REQUIRED", "ATOMIC", "STORE_SERVER_ERRORS", "REPLAY_CREATED_AS_OK", "CACHE_FALLBACK")
_NAMES = ("HEADER", "FORM_FIELD", "RETRY_COUNT_HEADER")
_SIZES = ("MAX_RESPONSE_SIZE", "MAX_STORED_FILE_SIZE")


def _error(id_: int, msg: str, hint: str | None = None) -> checks.Error:
    return checks.Error(msg, hint=hint, id=f"idempotent_post.E{id_:03d}")


def _warning(id_: int, msg: str, hint: str | None = None) -> checks.Warning:
    return checks.Warning(msg, hint=hint, id=f"idempotent_post.W{id_:03d}")


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


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
            errors.append(_error(11, f"{PREFIX}{name} must be a number of seconds, 0 or more."))

    for name in _BOOLEANS:
        if not isinstance(getattr(conf, name), bool):
            errors.append(_error(6, f"{PREFIX}{name} must be True or False."))

    for name in _NAMES:
        value = getattr(conf, name)
        if not isinstance(value, str) or not value:
            errors.append(_error(7, f"{PREFIX}{name} must be a non-empty string."))

    max_length = conf.KEY_MAX_LENGTH
    if not _whole(max_length, 1) or max_length > 255:
        errors.append(_error(8, f"{PREFIX}KEY_MAX_LENGTH must be a whole number from 1 to 255."))
    for name in _SIZES:
        if not _whole(getattr(conf, name), 0):
            errors.append(_error(12, f"{PREFIX}{name} must be a whole number of bytes, 0 or more."))
    if not _whole(conf.PURGE_BATCH_SIZE, 1):
        errors.append(_error(13, f"{PREFIX}PURGE_BATCH_SIZE must be a whole number, 1 or more."))

    # The raw setting: the property makes a tuple of it, which would split a lone string.
    name = PREFIX + "REPLAY_HEADERS"
    headers = getattr(settings, name) if hasattr(settings, name) else conf.REPLAY_HEADERS
    if (
        not isinstance(headers, Sequence)
        or isinstance(headers, str)
        or not all(isinstance(header, str) for header in headers)
    ):
        errors.append(_error(9, f"{PREFIX}REPLAY_HEADERS must be a list of header names."))
    elif any(header.lower() in ("set-cookie", "authorization") for header in headers):
        errors.append(
            _error(
                14,
                f"{PREFIX}REPLAY_HEADERS must not hold Set-Cookie or Authorization: a replay "
                "would hand one client's credentials to another.",
            )
        )

    storage = conf.RESPONSE_STORAGE
    if not isinstance(storage, str) or storage not in storages.backends:
        errors.append(
            _error(
                15,
                f"{PREFIX}RESPONSE_STORAGE names the storage {storage!r}, which STORAGES "
                "does not define.",
            )
        )

    errors.extend(_check_encryption_keys(conf.ENCRYPTION_KEYS))

    database = conf.DATABASE
    if database is not None and (
        not isinstance(database, str) or database not in settings.DATABASES
    ):
        errors.append(
            _error(10, f"{PREFIX}DATABASE names {database!r}, which DATABASES does not define.")
        )
    else:
        errors.extend(_check_records_database(records_database()))
    return errors


def _check_encryption_keys(keys: Any) -> list[checks.CheckMessage]:
    """C4: a list of Fernet keys, and the library that reads them."""
    name = PREFIX + "ENCRYPTION_KEYS"
    if keys is None or (isinstance(keys, Sequence) and not isinstance(keys, str) and not keys):
        return []
    if (
        not isinstance(keys, Sequence)
        or isinstance(keys, str | bytes)
        or not all(isinstance(key, str | bytes) for key in keys)
    ):
        return [
            _error(
                16,
                f"{name} must be a list of Fernet keys (str or bytes), the first one encrypting.",
                hint="A single key is a list of one: [key].",
            )
        ]
    try:
        from cryptography.fernet import Fernet
    except ImportError:
        return [
            _error(
                17,
                f"{name} is set, but the cryptography package is not installed.",
                hint='pip install "idempotent-post[encryption]"',
            )
        ]
    errors: list[checks.CheckMessage] = []
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (TypeError, ValueError):
            # The position, never the key: messages end up in logs.
            errors.append(
                _error(
                    18,
                    f"{name}: key {position} is not a Fernet key.",
                    hint="Make keys with cryptography.fernet.Fernet.generate_key(): "
                    "32 url-safe base64-encoded bytes.",
                )
            )
    return errors


def _check_records_database(alias: str) -> list[checks.CheckMessage]:
    """What the records' database cannot promise (T4, S8): warnings, not errors."""
    warnings: list[checks.CheckMessage] = []
    if alias not in settings.DATABASES:
        return warnings  # a router's mistake: Django says so at the first query
    if alias != DEFAULT_DB_ALIAS:
        warnings.append(
            _warning(
                1,
                f"The idempotency records live in the database {alias!r}, the views' writes "
                f"in {DEFAULT_DB_ALIAS!r}: the guard's transaction covers both, but they "
                "commit one after the other, not in two phases.",
                hint="A crash between the two commits leaves the view's writes without their "
                "record, and a retry runs the view again. Keep the records in "
                f"{DEFAULT_DB_ALIAS!r} where that matters.",
            )
        )

    config = settings.DATABASES[alias]
    level = (config.get("OPTIONS") or {}).get("isolation_level")
    if level is None:
        return warnings
    try:
        # The backend's class, not a connection: it reads the settings as they are now.
        vendor = load_backend(
            config.get("ENGINE") or "django.db.backends.dummy"
        ).DatabaseWrapper.vendor
    except ImproperlyConfigured:
        return warnings  # an engine Django cannot load: it says so itself
    if vendor == "postgresql":
        # The installed driver's levels: psycopg and psycopg2 number them differently.
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        # PostgreSQL runs READ UNCOMMITTED as READ COMMITTED; an unknown value is
        # Django's error at connection time.
        if level in (IsolationLevel.REPEATABLE_READ, IsolationLevel.SERIALIZABLE):
            warnings.append(
                _warning(
                    2,
                    f"The records' database {alias!r} runs at "
                    f"{IsolationLevel(level).name.replace('_', ' ')}: the read after the lock "
                    "sees a snapshot taken before it, so a duplicate may enter the view while "
                    "another attempt holds the key; only the unique constraint then stops its "
                    "commit.",
                    hint="Leave OPTIONS['isolation_level'] unset (READ COMMITTED) on the "
                    "database that holds the records.",
                )
            )
    return warnings
