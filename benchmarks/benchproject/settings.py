"""Settings of the benchmark servers.

One project for every server that ``benchmarks/run.py`` starts; the environment decides
what differs between them, and nothing else does:

- ``BENCH_DATABASE_URL`` (``postgres://user@host:port/name``) and ``BENCH_REDIS_URL``
  (``redis://host:port/db``): the PostgreSQL database and the Redis database, both owned
  by the benchmark (run.py drops and flushes them).
- ``BENCH_VARIANT``: which implementation this server runs (see ``benchshop.variants``).
  It picks idempotent-post's lock backend and adds the middleware that some alternative
  packages need. Every URL exists on every server, but only the variant's own URLs are
  meant to be called on it.
- ``BENCH_ALTERNATIVES``: the alternative packages that installed and import, comma
  separated; their apps are installed so that one migration creates every table.
- ``BENCH_APPLICATION_NAME``: the PostgreSQL ``application_name`` of the connections.
- ``BENCH_DATA_UPLOAD_MAX_MEMORY_SIZE``: ``none`` lifts Django's 2.5 MB cap on bodies read
  whole (the memory benchmark needs it for packages that hash ``request.body``).

The settings are production-like where it matters for timing: ``DEBUG`` off, persistent
database connections, no per-request health check, no access log.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
BENCH_ALTERNATIVES = {
    name.strip() for name in os.environ.get("BENCH_ALTERNATIVES", "").split(",") if name.strip()
}


def database_from_url(url: str) -> dict[str, object]:
    """A ``DATABASES`` entry for a ``postgres://`` URL."""
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Persistent connections, as any production deployment has them: connecting to
        # PostgreSQL on every request would cost more than everything measured here.
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": False,
        # Lets the purge benchmark tell the servers' backends from the purge's own.
        "OPTIONS": {"application_name": os.environ.get("BENCH_APPLICATION_NAME", "bench")},
    }


DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/idempotent_post_bench"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")

DEBUG = False
SECRET_KEY = "benchmark-only-not-a-secret"
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "benchproject.urls"
WSGI_APPLICATION = "benchproject.wsgi.application"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "rest_framework.authtoken",
    "idempotent_post",
    "benchproject.benchshop",
]
# Only the alternatives with models need to be apps; django-idempotency-key keeps its
# records in the cache.
if "drf-idempotency" in BENCH_ALTERNATIVES:
    INSTALLED_APPS.append("drf_idempotency")
if "djangorestframework-idempotency-key" in BENCH_ALTERNATIVES:
    INSTALLED_APPS.append("rest_framework_idempotency_key")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
# Three alternatives work through middleware; each is installed only on its own server, so
# the bare view and the other variants do not pay for it.
if VARIANT == "drf-idempotency":
    MIDDLEWARE.append("drf_idempotency.middleware.IdempotencyMiddleware")
if VARIANT == "django-idempotency-key":
    # The opt-in flavour: only views marked with @idempotency_key are guarded.
    MIDDLEWARE.append("idempotency_key.middleware.ExemptIdempotencyKeyMiddleware")
if VARIANT == "djangorestframework-idempotency-key":
    MIDDLEWARE.append("rest_framework_idempotency_key.middleware.IdempotencyKeyMiddleware")

DATABASES = {"default": database_from_url(DATABASE_URL)}

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    },
}

if os.environ.get("BENCH_DATA_UPLOAD_MAX_MEMORY_SIZE", "").lower() == "none":
    DATA_UPLOAD_MAX_MEMORY_SIZE = None

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

# idempotent-post: the database lock (a PostgreSQL advisory lock) or the Redis lock.
IDEMPOTENT_POST_LOCK_BACKEND = "cache" if VARIANT == "idempotent-post-cache" else "database"
IDEMPOTENT_POST_CACHE = "default"

# drf-idempotency: its database backend (the default), key required like everywhere here.
IDEMPOTENCY = {"REQUIRE_KEY": True}

# django-idempotency-key: responses in the Redis cache, its Redis lock across processes,
# and a replay answered with the original status (its default answers a replay with 409).
IDEMPOTENCY_KEY = {
    "CONFLICT_STATUS_CODE": None,
    "STORAGE": {"CLASS": "idempotency_key.storage.CacheKeyStorage", "CACHE_NAME": "default"},
    "LOCK": {
        "CLASS": "idempotency_key.locks.redis.MultiProcessRedisLock",
        "LOCATION": REDIS_URL,
        "NAME": "benchmark-idempotency-key-lock",
    },
}

# djangorestframework-idempotency-key: seconds a started key stays locked.
IDEMPOTENCY_KEY_LOCK_TIMEOUT = 30

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
