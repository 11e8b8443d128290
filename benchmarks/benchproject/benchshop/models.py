"""Products and orders, shaped like the demo shop's (demo_project/shop/models.py)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


class Product(models.Model):
    """Something to buy, with the number left in stock."""

    name = models.CharField(max_length=100, unique=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    stock = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.name


def new_order_number() -> str:
    """A fresh random order number, as the demo shop makes them."""
    return "ORD-" + secrets.token_hex(5).upper()


class Order(models.Model):
    """One purchase; ``note`` carries the client's key so the storm can count orders per key."""

    order_number = models.CharField(max_length=20, default=new_order_number, editable=False)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField(default=1)
    note = models.CharField(max_length=64, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order_number"], name="benchshop_order_number_unique"),
        ]

    def __str__(self) -> str:
        return self.order_number
