"""Placing an order, as the demo shop does it (demo_project/shop/services.py)."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from benchproject.benchshop.models import Order, Product


class OutOfStock(Exception):
    """The product has fewer units left than the order asks for."""


def place_order(order: Order) -> Order:
    """Save ``order`` and take its quantity off the product's stock, in one transaction."""
    with transaction.atomic():
        taken = Product.objects.filter(pk=order.product.pk, stock__gte=order.quantity).update(
            stock=F("stock") - order.quantity
        )
        if not taken:
            raise OutOfStock(order.product.name)
        order.save(force_insert=True)
    order.product.refresh_from_db(fields=["stock"])
    return order
