"""The shop's Celery tasks (X2): the order confirmation e-mail."""

from __future__ import annotations

from typing import Any

from django.core.mail import send_mail

from demo_project.celery import app
from demo_project.shop.models import Order
from idempotent_post.celery import idempotent_task


# acks_late: a worker killed half-way leaves the message to be delivered again. The key is
# the order, not the task id, so a redelivery, a message published twice and a retried
# checkout that queues it again all send one e-mail. The demo's own app, not shared_task:
# a project with several Celery apps must not send the demo's e-mail through another one.
@app.task(bind=True, acks_late=True)
@idempotent_task(key="confirmation-{order_id}")
def send_order_confirmation(self: Any, order_id: int) -> int:
    """E-mail the buyer that order ``order_id`` is placed and paid; return the messages sent."""
    order = Order.objects.select_related("product").get(pk=order_id)
    if not order.email:
        return 0
    return send_mail(
        subject=f"Your order {order.order_number}",
        message=(
            f"Thank you for your order {order.order_number}: {order.quantity} x "
            f"{order.product.name}, {order.total} paid (charge {order.charge_id})."
        ),
        from_email=None,
        recipient_list=[order.email],
    )
