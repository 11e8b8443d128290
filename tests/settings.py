"""Settings for the test suite.

``DATABASE_URL`` picks the database (default: SQLite); ``REDIS_URL`` adds a
django-redis cache under the alias ``redis`` for the cache lock backend tests.
"""

import os
import tempfile

import dj_database_url
import django

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

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
    "drf_spectacular_sidecar",
    "idempotent_post",
    "demo_project.shop",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

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
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or "sqlite:///tests.sqlite3", conn_max_age=0
    )
}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that the crash tests' child processes share it.
    _test_name = os.path.join(tempfile.gettempdir(), f"idempotent-post-tests-{os.getpid()}.sqlite3")
else:
    _test_name = f"test_idempotent_post_{os.getpid()}"
# One test database per run (child processes inherit the name), so runs never clash.
DATABASES["default"]["TEST"] = {"NAME": os.environ.setdefault("TEST_DATABASE_NAME", _test_name)}

CACHES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CACHES["redis"] = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        # Child processes of a test inherit the prefix, so they share the locks.
        "KEY_PREFIX": os.environ.setdefault("TEST_REDIS_PREFIX", f"idempotent-tests-{os.getpid()}"),
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
    }

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "idempotent_post.drf.IdempotentAutoSchema",
    "DEFAULT_PARSER_CLASSES": [
        "demo_project.shop.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Keep tests deterministic: double-submit detection is tested on its own.
IDEMPOTENT_POST_DOUBLE_SUBMIT_WINDOW = 0

# T4: a second alias on the same server, for the tests that keep the records apart from
# the view's writes (IDEMPOTENT_POST_DATABASE = "records"); no other test uses it.
DATABASES["records"] = dict(DATABASES["default"])  # type: ignore[assignment]
DATABASES["records"]["TEST"] = {"NAME": DATABASES["default"]["TEST"]["NAME"] + "_records"}

SPECTACULAR_SETTINGS = {"SWAGGER_UI_DIST": "SIDECAR", "SWAGGER_UI_FAVICON_HREF": "SIDECAR"}

if django.VERSION >= (6, 1):
    # Django 6.1 names its e-mail backends here; the test environment swaps in memory ones.
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
