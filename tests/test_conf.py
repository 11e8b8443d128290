"""Settings (D4): one namespace, read lazily, each with its default and documented."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pytest
from django.core.signals import setting_changed

from idempotent_post.conf import Settings, conf

NAMES = sorted(
    name for name, value in vars(Settings).items() if isinstance(value, (property, cached_property))
)

# Pinned here so that a changed default is a deliberate change to this test too.
DEFAULTS = {
    "HEADER": "Idempotency-Key",
    "KEY_MAX_LENGTH": 255,
    "ENABLED": True,
    "REQUIRED": False,
    "SCOPE": "user_or_session",
    "FINGERPRINT": "default",
    "LEASE": 30.0,
    "TTL": 86400.0,
    "WAIT": 0.0,
    "FORM_WAIT": 5.0,
    "ATOMIC": True,
    "STORE_SERVER_ERRORS": False,
    "REPLAY_CREATED_AS_OK": False,
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
        "HX-Redirect",
        "HX-Location",
        "HX-Refresh",
    ),
    "MAX_RESPONSE_SIZE": 1048576,
    "RESPONSE_STORAGE": "default",
    "MAX_STORED_FILE_SIZE": 104857600,
    "ENCRYPTION_KEYS": (),
    "LOCK_BACKEND": "database",
    "CACHE": "default",
    "CACHE_FALLBACK": True,
    "DATABASE": None,
    "FORM_FIELD": "idempotency_key",
    "DOUBLE_SUBMIT_WINDOW": 0.5,
    "RETRY_COUNT_HEADER": "X-Retry-Count",
    "PURGE_BATCH_SIZE": 1000,
    "DOCS_URL": None,
}


def test_D4_every_setting_has_a_property():
    assert sorted(DEFAULTS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_D4_defaults(settings, name):
    # The test settings set some of them: read the default with the setting gone.
    if hasattr(settings, f"IDEMPOTENT_POST_{name}"):
        delattr(settings, f"IDEMPOTENT_POST_{name}")
        # pytest-django 4.8 deletes a setting without sending setting_changed (later
        # versions send it): say it, as Django's override_settings would.
        setting_changed.send(sender=None, setting=f"IDEMPOTENT_POST_{name}", value=None, enter=True)
    value = getattr(conf, name)
    assert value == DEFAULTS[name]
    assert type(value) is type(DEFAULTS[name])


@pytest.mark.parametrize("name", NAMES)
def test_D4_settings_are_read_lazily(settings, name):
    """A kept value gives way to a changed setting at once (setting_changed), so
    override_settings applies at once."""
    getattr(conf, name)  # read, and kept
    setattr(settings, f"IDEMPOTENT_POST_{name}", ["changed"])
    expected = ("changed",) if name == "REPLAY_HEADERS" else ["changed"]
    assert getattr(conf, name) == expected


@pytest.mark.parametrize("name", NAMES)
def test_D4_every_setting_documented(name):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"| `IDEMPOTENT_POST_{name}` |" in readme
