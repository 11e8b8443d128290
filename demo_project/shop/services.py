"""Placing an order: the one place where stock changes hands."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from demo_project.shop.models import Order, Product


class OutOfStock(Exception):
    """The product has fewer units left than the order asks for."""

    def __init__(self, product_name: str, available: int) -> None:
        self.product_name = product_name
        self.available = available
        super().__init__(f"Only {available} of {product_name} left in stock.")


def place_order(order: Order) -> Order:
    """Save a new, unsaved ``order`` and take its quantity off the product's stock (M0).

    Both happen in one transaction: if either fails, neither is kept. So a duplicate order
    would show twice over, once as a second row and once as stock gone missing.
    """
    with transaction.atomic():
        # One conditional UPDATE checks and decrements at once, so two concurrent orders
        # cannot both see the last unit (the row is locked by the UPDATE itself).
        taken = Product.objects.filter(pk=order.product.pk, stock__gte=order.quantity).update(
            stock=F("stock") - order.quantity
        )
        if not taken:
            order.product.refresh_from_db(fields=["stock"])
            raise OutOfStock(order.product.name, order.product.stock)
        order.save(force_insert=True)
    # The in-memory product still holds the old count; the confirmation shows the new one.
    order.product.refresh_from_db(fields=["stock"])
    return order
