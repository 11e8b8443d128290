"""``python manage.py seed_demo``: products, two users and their API tokens."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from demo_project.shop.models import Product

PRODUCTS = [
    ("Espresso beans, 1 kg", Decimal("24.90")),
    ("Pour-over kettle", Decimal("49.00")),
    ("Ceramic mug", Decimal("12.50")),
    ("Hand grinder", Decimal("89.00")),
    ("Paper filters, 100", Decimal("6.90")),
]
STOCK = 1000
PASSWORD = "demo-password"
USERS = [("alice", "demo-token-alice"), ("bob", "demo-token-bob")]


class Command(BaseCommand):
    help = (
        f"Create the demo data: {len(PRODUCTS)} products with {STOCK} in stock each, and the "
        f"users alice and bob (password {PASSWORD!r}) with the API tokens demo-token-alice and "
        "demo-token-bob. Safe to run again: it adds what is missing and resets the passwords "
        "and tokens, but leaves the stock of existing products alone (so the effect of the "
        "orders placed stays visible) unless --reset-stock is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset-stock",
            action="store_true",
            help=f"Set the stock of every demo product back to {STOCK}.",
        )

    @transaction.atomic
    def handle(self, *args: Any, reset_stock: bool = False, **options: Any) -> None:
        for name, price in PRODUCTS:
            product, created = Product.objects.get_or_create(
                name=name, defaults={"price": price, "stock": STOCK}
            )
            if reset_stock and not created:
                product.stock = STOCK
                product.save(update_fields=["stock"])
            self.stdout.write(
                f"{'Created' if created else 'Kept'} product {product.pk}: {product.name} "
                f"({product.stock} in stock)"
            )

        user_model = get_user_model()
        for username, key in USERS:
            user, created = user_model.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            user.set_password(PASSWORD)
            user.save(update_fields=["password"])
            # The token key is the primary key, so a different old key is replaced, not edited.
            Token.objects.filter(user=user).exclude(key=key).delete()
            Token.objects.update_or_create(key=key, defaults={"user": user})
            self.stdout.write(
                f"{'Created' if created else 'Updated'} user {username} with token {key}"
            )

        self.stdout.write(self.style.SUCCESS("Demo data ready."))
