"""Helpers for a project's own tests: assert that a view replays, conflicts and mismatches (C5).

Use them with Django's test client (or DRF's ``APIClient``) in pytest or unittest::

    from idempotent_post.testing import assert_idempotent, assert_conflicts, assert_mismatch

    def test_orders_are_idempotent(api_client):
        first, replay = assert_idempotent(api_client, "/api/orders/", {"product": 1})
        assert first.status_code == 201

To switch every guard off in a test instead, set ``IDEMPOTENT_POST_ENABLED = False``
(``override_settings``, or pytest-django's ``settings`` fixture).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone

from idempotent_post.conf import conf
from idempotent_post.keys import header_meta_name
from idempotent_post.models import IdempotencyRecord

REPLAYED = "Idempotent-Replayed"


def new_key() -> str:
    """A fresh key, as a client makes one per logical operation."""
    return f"test-{uuid.uuid4()}"


def _post(client: Any, url: str, data: Any, key: str, **extra: Any) -> Any:
    extra.setdefault("content_type", "application/json")
    extra[header_meta_name(conf.HEADER)] = key
    return client.post(url, data, **extra)


def assert_idempotent(
    client: Any, url: str, data: Any, key: str | None = None, **extra: Any
) -> tuple[Any, Any]:
    """POST ``data`` twice with one key; the second must replay the first. Returns both.

    Checks P1: the same status, body and ``Location``, ``Idempotent-Replayed: true`` on the
    replay only. ``extra`` goes to ``client.post`` (``content_type``, headers, ...).
    """
    key = key or new_key()
    first = _post(client, url, data, key, **extra)
    replay = _post(client, url, data, key, **extra)
    assert first.get(REPLAYED) != "true", "the first request was answered as a replay"
    assert replay.get(REPLAYED) == "true", (
        f"the retry was not a replay: {replay.status_code} {replay.content[:200]!r}"
    )
    assert replay.status_code == first.status_code or (
        first.status_code == 201 and replay.status_code == 200 and conf.REPLAY_CREATED_AS_OK
    ), f"replayed status {replay.status_code}, first {first.status_code}"
    assert replay.content == first.content, "the replay's body differs from the first"
    assert replay.get("Location") == first.get("Location"), "the replay's Location differs"
    return first, replay


def assert_conflicts(client: Any, url: str, data: Any, **extra: Any) -> Any:
    """A retry while the first still runs gets 409 with ``Retry-After`` (S3). Returns it.

    The first request runs for real; its record is then made to look in progress (a
    live holder with a lease), as a first attempt that is still running leaves it.
    """
    key = new_key()
    _post(client, url, data, key, **extra)
    records = IdempotencyRecord.objects.filter(key=key)
    assert records.exists(), "the first request stored no record: is the view guarded?"
    now = timezone.now()
    records.update(
        state=IdempotencyRecord.State.IN_PROGRESS,
        owner="a-running-attempt",
        locked_until=now + timedelta(seconds=conf.LEASE),
    )
    conflict = _post(client, url, data, key, **extra)
    assert conflict.status_code == 409, f"expected 409, got {conflict.status_code}"
    assert conflict["Content-Type"] == "application/problem+json"
    assert int(conflict["Retry-After"]) >= 1
    return conflict


def assert_mismatch(client: Any, url: str, data: Any, other_data: Any, **extra: Any) -> Any:
    """The same key with another body gets 422 and runs nothing (F1). Returns the 422."""
    key = new_key()
    _post(client, url, data, key, **extra)
    mismatch = _post(client, url, other_data, key, **extra)
    assert mismatch.status_code == 422, f"expected 422, got {mismatch.status_code}"
    assert mismatch["Content-Type"] == "application/problem+json"
    return mismatch
