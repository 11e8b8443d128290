"""Placing an order: the one place where stock changes hands; then paying and confirming it."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.dispatch import Signal

from demo_project.shop import gateway
from demo_project.shop.models import Order, Product
from demo_project.shop.tasks import send_order_confirmation
from idempotent_post.engine import Idempotency

CURRENCY = "EUR"

#: Sent once an order's charge is made and recorded, before its confirmation is queued;
#: arguments: ``order``. Where a receiver that fails sits: between the charge and the e-mail.
order_charged = Signal()


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


def pay_and_confirm(order: Order, idempotency: Idempotency, gateway_url: str) -> Order:
    """Charge a placed ``order`` at the payment gateway and queue its confirmation (M7).

    Each effect happens once per checkout key, however often the submit is retried: the
    charge is a recovery point (T2), so a retry after a crash further on does not call the
    gateway again, and the confirmation task is keyed by the order (X2). Raises
    ``GatewayError`` when the gateway cannot be reached or refuses: the order stays placed
    and unpaid, and a retry of the same submit pays it.
    """
    placed = Order.objects.select_related("product").get(pk=order.pk)
    if not placed.charge_id:
        # The call is made outside any transaction: a transaction held open across it would
        # keep the gateway (on the demo's SQLite file, when it is this same server) from
        # writing its charge until the lock timed out. Its key is derived from the checkout's
        # (X4), so even a call repeated after a crash before the next line gets the first
        # charge back from the gateway instead of a second one.
        charge_id = gateway.charge(
            gateway_url,
            amount=placed.total,
            currency=CURRENCY,
            reference=placed.order_number,
            key=idempotency.derive("charge"),
        )
        idempotency.step("charge", lambda: _paid(placed, charge_id))
        order_charged.send(sender=Order, order=placed)
    # Not a recovery point: a crash between a recorded step and a published message would
    # lose the e-mail. Published on every try instead, it is sent once by its task's key.
    send_order_confirmation.delay(placed.pk)
    return placed


def _paid(order: Order, charge_id: str) -> str:
    order.charge_id = charge_id
    order.save(update_fields=["charge_id"])
    return charge_id
