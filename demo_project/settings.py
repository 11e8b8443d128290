"""Settings for the demo shop.

With no environment at all the shop runs on an SQLite file at the repository root and the
local-memory cache, and idempotent-post locks through the database. Set ``DATABASE_URL``
(e.g. ``postgres://user:pass@host/db``) and ``REDIS_URL`` (e.g. ``redis://host:6379/0``) to run
it on PostgreSQL and Redis; the lock backend then becomes the Redis cache.

Environment variables read here:

- ``DJANGO_DEBUG`` (default ``1``), ``DJANGO_SECRET_KEY``, ``DJANGO_ALLOWED_HOSTS`` (comma
  separated, default ``*``), ``DJANGO_CSRF_TRUSTED_ORIGINS`` (comma separated);
- ``DATABASE_URL``, ``DATABASE_CONN_MAX_AGE`` (seconds, default 0), ``REDIS_URL``;
- ``IDEMPOTENT_POST_LOCK_BACKEND`` (``database`` or ``cache``) and
  ``IDEMPOTENT_POST_CACHE_FALLBACK`` (``1`` or ``0``) override the choice made from ``REDIS_URL``;
- ``DEMO_GATEWAY_URL``: the fake payment gateway's base URL (e.g.
  ``http://127.0.0.1:8000/gateway/``); empty (the default) means this server itself;
- ``CELERY_BROKER_URL``: where the confirmation e-mail tasks go (RabbitMQ or Redis); empty
  (the default) runs them eagerly, inside the checkout's request.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
import django

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Read a yes/no environment variable; unset or empty means ``default``."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated environment variable as a list of non-empty items."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# A demo, so it works out of the box; anything facing the internet must set these.
DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-demo-shop-key-do-not-use-in-production"
)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "*")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally rather than from a CDN
    "idempotent_post",
    "demo_project.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
WSGI_APPLICATION = "demo_project.wsgi.application"
ASGI_APPLICATION = "demo_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "0")),
        conn_health_checks=True,
    ),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several gunicorn workers write at once during the demo's double-submit runs. IMMEDIATE
    # takes the write lock when a transaction starts, so writers queue for up to `timeout`
    # seconds instead of failing with "database is locked" on a read-to-write upgrade; WAL lets
    # readers (a duplicate waiting for the first submit) go on while a writer works.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                # A Redis that hangs must not hang the shop: fail fast and let
                # idempotent-post fall back to the database lock (or answer 503).
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        },
    }
    IDEMPOTENT_POST_LOCK_BACKEND = "cache"
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "demo-shop",
        },
    }
    # locmem is private to one process, so it cannot lock across gunicorn workers.
    IDEMPOTENT_POST_LOCK_BACKEND = "database"

IDEMPOTENT_POST_LOCK_BACKEND = os.environ.get(
    "IDEMPOTENT_POST_LOCK_BACKEND", IDEMPOTENT_POST_LOCK_BACKEND
)
IDEMPOTENT_POST_CACHE = "default"
IDEMPOTENT_POST_CACHE_FALLBACK = env_bool("IDEMPOTENT_POST_CACHE_FALLBACK", True)

# M7: the checkout charges the fake payment gateway over HTTP. Empty: this server, at the
# address the request came in on (any port works); the server must be able to answer the
# call while it serves the checkout: runserver is threaded, gunicorn needs --threads or
# --workers above one.
DEMO_GATEWAY_URL = os.environ.get("DEMO_GATEWAY_URL", "")

# Confirmation e-mails go out from a Celery task. Without a broker, tasks run eagerly (see
# demo_project/celery.py); with one, run `celery -A demo_project worker` beside the server.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True

# E-mails are kept in the database and listed on /payments/; nothing leaves the machine.
# Django 6.1 names its e-mail backends in MAILERS; EMAIL_BACKEND is what 5.2 reads.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "demo_project.shop.mail.DatabaseEmailBackend"}}
else:
    EMAIL_BACKEND = "demo_project.shop.mail.DatabaseEmailBackend"
DEFAULT_FROM_EMAIL = "shop@demo.invalid"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "rest_framework:login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Open by default so products and comments need no login; the orders API asks for one.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_SCHEMA_CLASS": "idempotent_post.drf.IdempotentAutoSchema",
    "DEFAULT_PARSER_CLASSES": [
        "demo_project.shop.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "idempotent-post demo shop",
    "DESCRIPTION": (
        "POST /api/orders/ needs an Idempotency-Key header: retry with the same key and the "
        "order is placed once."
    ),
    "VERSION": "1.0.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "loggers": {
        # Replays, conflicts and suspected double submits are the point of the demo: show them.
        "idempotent_post": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
