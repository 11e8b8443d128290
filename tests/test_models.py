"""The record table (L1): the unique constraint that S4 rests on, and the expiry index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from idempotent_post.models import IdempotencyRecord

pytestmark = pytest.mark.django_db


def record(**fields):
    values = {
        "scope": "user:1",
        "key": "k",
        "fingerprint": "f" * 64,
        "expires_at": timezone.now() + timedelta(hours=1),
    }
    values.update(fields)
    return IdempotencyRecord(**values)


def test_l1_scope_and_key_are_unique_on_this_database():
    record().save()
    with pytest.raises(IntegrityError), transaction.atomic():
        record().save()
    # The same key in another scope is another record (K3).
    record(scope="user:2").save()
    assert IdempotencyRecord.objects.count() == 2


def test_l1_the_constraints_and_index_exist_in_the_schema():
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(
            cursor, IdempotencyRecord._meta.db_table
        )
    unique = [c for c in constraints.values() if c["unique"] and c["columns"] == ["scope", "key"]]
    assert unique, constraints
    assert any(c["index"] and c["columns"] == ["expires_at"] for c in constraints.values())


def test_l1_a_255_character_key_and_scope_fit():
    record(scope="s" * 255, key="k" * 255).save()
    assert IdempotencyRecord.objects.get().key == "k" * 255


def test_s7_is_live_follows_expiry_and_lease():
    now = timezone.now()
    assert record(state="completed").is_live(now)
    assert not record(state="completed", expires_at=now).is_live(now)
    assert record(locked_until=now + timedelta(seconds=5)).is_live(now)
    assert not record(locked_until=now - timedelta(seconds=5)).is_live(now)


def test_K6_keys_and_scopes_compare_case_sensitively_on_this_database():
    # MySQL/MariaDB compare with the column's collation, case-insensitive by default:
    # there, without the binary collation, "abc" would collide with "Abc".
    record(key="Abc").save()
    record(key="abc").save()
    record(scope="USER:1", key="abc").save()
    assert IdempotencyRecord.objects.count() == 3
    using = connection.alias
    for scope, key in [("user:1", "Abc"), ("user:1", "abc"), ("USER:1", "abc")]:
        assert [
            (r.scope, r.key) for r in IdempotencyRecord.objects.filter(scope=scope, key=key)
        ] == [(scope, key)]
        found = IdempotencyRecord.objects.lookup(using, scope, key)
        assert found is not None
        assert (found.scope, found.key) == (scope, key)
    assert IdempotencyRecord.objects.lookup(using, "user:1", "ABC") is None
    assert IdempotencyRecord.objects.lookup(using, "User:1", "abc") is None
    assert not IdempotencyRecord.objects.filter(scope="user:1", key="aBc").exists()
