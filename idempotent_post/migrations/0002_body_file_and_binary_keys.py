from django.db import migrations, models


def binary_collation(apps, schema_editor):
    """K6: MySQL/MariaDB compare with the column's collation, case-insensitive by default."""
    if schema_editor.connection.vendor != "mysql":
        return
    table = schema_editor.quote_name("idempotent_post_idempotencyrecord")
    columns = ", ".join(
        f"MODIFY {schema_editor.quote_name(name)} VARCHAR(255) "
        "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
        for name in ("scope", "key")
    )
    schema_editor.execute(f"ALTER TABLE {table} {columns}")


class Migration(migrations.Migration):
    dependencies = [
        ("idempotent_post", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencyrecord",
            name="body_file",
            field=models.CharField(blank=True, max_length=255),
        ),
        # MySQL cannot run DDL inside a transaction.
        migrations.RunPython(
            binary_collation, migrations.RunPython.noop, atomic=False, elidable=False
        ),
    ]
