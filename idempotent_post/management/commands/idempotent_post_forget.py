"""``manage.py idempotent_post_forget``: delete one idempotency record on purpose (C7)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from idempotent_post.engine import records_database
from idempotent_post.operations import describe, forget, lookup


class Command(BaseCommand):
    """Forget the key ``--key`` of the scope ``--scope``: the next request with it runs anew.

    For a key stuck in progress (a holder that hangs but still renews its lease) or an
    outcome stored by mistake. ``--user`` names the operator, as the admin log records
    who deleted what: the command refuses to run without an existing user, rather than
    put the deletion on a made-up account.
    """

    help = (
        "Delete the idempotency record of one scope and key, so that the next request with "
        "the key runs the view again; recorded in the admin log under --user."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--scope",
            required=True,
            help='The stored scope, as the admin shows it (e.g. "user:42").',
        )
        parser.add_argument("--key", required=True, help="The idempotency key.")
        parser.add_argument(
            "--user",
            required=True,
            help="The username of the operator, recorded in the admin log.",
        )
        parser.add_argument(
            "--database",
            default=None,
            help="The database alias that holds the records "
            "(default: IDEMPOTENT_POST_DATABASE, else the router's choice).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"] or records_database()
        if using not in connections:
            raise CommandError(f"Unknown database alias {using!r}.")
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(options["user"])
        except user_model.DoesNotExist:
            raise CommandError(
                f"No user {options['user']!r}: --user names the operator, an existing user, "
                "for the admin log."
            ) from None
        scope, key = options["scope"], options["key"]
        record = lookup(scope, key, using=using)
        if record is None or not forget(record, user, via="manage.py idempotent_post_forget"):
            raise CommandError(
                f'No idempotency record with key "{key}" in scope "{scope}" '
                f"(database {using!r}). Keys and scopes are case-sensitive."
            )
        self.stdout.write(f"Forgot the idempotency {describe(record)}.")
