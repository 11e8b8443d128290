"""``bench_seed``: the benchmark's users, their API tokens, and products with ample stock."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from benchproject.benchshop.models import Product

# Enough that a benchmark of any length never runs out.
STOCK = 1_000_000_000


def token_of(index: int) -> str:
    """The API token of benchmark user ``index`` (run.py computes the same)."""
    return f"bench-token-{index:04d}".ljust(40, "0")


class Command(BaseCommand):
    help = "Create N users with tokens (bench-token-0000...) and P products."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=16)
        parser.add_argument("--products", type=int, default=100)

    @transaction.atomic
    def handle(self, *args: Any, users: int, products: int, **options: Any) -> None:
        Product.objects.bulk_create(
            Product(name=f"Product {n}", price=Decimal("9.90"), stock=STOCK)
            for n in range(1, products + 1)
        )
        user_model = get_user_model()
        for index in range(users):
            user = user_model.objects.create_user(f"bench{index:04d}")
            Token.objects.create(user=user, key=token_of(index))
        ids = list(Product.objects.order_by("pk").values_list("pk", flat=True))
        self.stdout.write(f"products {ids[0]}..{ids[-1]}")
