"""Products, the orders that take stock off them, and comments."""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse


class Product(models.Model):
    """Something to buy, with the number left in stock."""

    name = models.CharField(max_length=100, unique=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    # Positive on purpose: the database refuses a stock below zero even if a check is missed.
    stock = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def new_order_number() -> str:
    """A fresh, random, human-friendly order number such as ``ORD-3F9A0C12BE``."""
    return "ORD-" + secrets.token_hex(5).upper()


class Order(models.Model):
    """One purchase of ``quantity`` units of a product.

    ``order_number`` is unique (M5): the business key that a duplicate insert would collide on,
    a second line of defence behind the idempotency record.
    """

    order_number = models.CharField(
        max_length=20, default=new_order_number, editable=False, verbose_name="order number"
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="orders")
    quantity = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    # Optional because API clients are known by their account; the checkout form asks for it.
    email = models.EmailField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="orders",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["order_number"], name="shop_order_number_unique"),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="shop_order_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.order_number

    def get_absolute_url(self) -> str:
        return reverse("shop:order-detail", kwargs={"pk": self.pk})

    @property
    def total(self) -> Decimal:
        """What the order costs at the product's current price."""
        return self.product.price * self.quantity


class Comment(models.Model):
    """A remark anyone may post; each POST adds one (M3: not idempotent, on purpose)."""

    text = models.TextField(max_length=2000)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="comments",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.text[:50]
