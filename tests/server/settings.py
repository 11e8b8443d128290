"""Settings of the gunicorn servers that the reliability suite starts.

``tests.settings`` (so the demo shop and the test views are both served), plus:

- every ``IDEMPOTENT_POST_*`` environment variable, read as JSON
  (``IDEMPOTENT_POST_LEASE=2``, ``IDEMPOTENT_POST_CACHE_FALLBACK=false``), so each
  server of a test runs the configuration the test asks for;
- ``TEST_SERVER_CACHES``: JSON, cache alias -> Django cache settings, added to
  ``CACHES`` (a Redis the test starts and stops itself, for instance);
- ``TEST_SERVER_SWITCH_INTERVAL``: seconds, for ``sys.setswitchinterval`` (stress runs);
- logs on stderr, which the test reads: the engine's warnings and the traceback of
  any 500, which Django would otherwise swallow with ``DEBUG = False``.
"""

import json
import os
import sys

from tests.settings import *  # noqa: F403
from tests.settings import CACHES, DATABASES

for _name, _value in os.environ.items():
    if _name.startswith("IDEMPOTENT_POST_"):
        globals()[_name] = json.loads(_value)

if os.environ.get("TEST_SERVER_SWITCH_INTERVAL"):
    # Threads switch far more often than by default: races between threads show at once.
    sys.setswitchinterval(float(os.environ["TEST_SERVER_SWITCH_INTERVAL"]))

CACHES.update(json.loads(os.environ.get("TEST_SERVER_CACHES") or "{}"))

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several worker processes share the file: wait for its write lock, don't fail at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(process)d %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "idempotent_post": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
    },
}
