"""PostgreSQL: one round trip that takes the key's advisory lock, then reads its record.

A VOLATILE PL/pgSQL function takes a new snapshot for each statement it runs, so in
READ COMMITTED the read sees every transaction that committed before the lock was
granted (S8); a single ``SELECT lock(), record`` would read with the snapshot taken
when the statement began, before the lock.
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION idempotent_post_lock_and_read(
    lock_number bigint, record_scope varchar, record_key varchar
) RETURNS SETOF idempotent_post_idempotencyrecord
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    held_elsewhere idempotent_post_idempotencyrecord;
BEGIN
    IF NOT pg_try_advisory_xact_lock(lock_number) THEN
        held_elsewhere.id := -1;
        RETURN NEXT held_elsewhere;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT * FROM idempotent_post_idempotencyrecord r
        WHERE r.scope = record_scope AND r.key = record_key;
END;
$$
"""

DROP = "DROP FUNCTION IF EXISTS idempotent_post_lock_and_read(bigint, varchar, varchar)"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("idempotent_post", "0002_body_file_and_binary_keys"),
    ]

    operations = [
        migrations.RunPython(create, drop, elidable=False),
    ]
