"""Products, the orders that take stock off them, comments, and the demo's outside world.

``Charge`` belongs to the fake payment gateway and ``SentEmail`` to the fake mail server: in a
real shop both would live in other services. Here they sit in the same database so that one
page can show what the shop did to the world (M7).
"""

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
    # The gateway's id of the payment, once the order is paid (M7).
    charge_id = models.CharField(max_length=40, blank=True, editable=False)
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


def new_charge_id() -> str:
    """A fresh charge id in the style of a payment gateway, such as ``ch_5b0e3f9a1c2d4e6f``."""
    return "ch_" + secrets.token_hex(8)


class Charge(models.Model):
    """A payment taken by the fake gateway (``POST /gateway/charges/``): money that moved.

    A second row for one order is the double charge that idempotency keys exist to prevent.
    """

    charge_id = models.CharField(max_length=40, default=new_charge_id, editable=False)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3)
    # The merchant's own reference for the payment: the shop sends its order number.
    reference = models.CharField(max_length=100)
    # The Idempotency-Key the charge arrived with, to show that retries share it.
    idempotency_key = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["charge_id"], name="shop_charge_id_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.charge_id} {self.amount} {self.currency}"

    def as_json(self) -> dict[str, str]:
        """The charge as the gateway's API shows it."""
        return {
            "id": self.charge_id,
            "amount": str(self.amount),
            "currency": self.currency,
            "reference": self.reference,
            "created_at": self.created_at.isoformat(),
        }


class SentEmail(models.Model):
    """An e-mail that left the shop through the demo's e-mail backend (``shop.mail``)."""

    to = models.CharField(max_length=1000)
    subject = models.CharField(max_length=1000)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "sent e-mail"

    def __str__(self) -> str:
        return f"{self.subject} to {self.to}"
