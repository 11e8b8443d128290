"""The shop's pages: product list, checkout (Post/Redirect/Get) and order confirmation."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.views.generic import CreateView, DetailView, ListView

from demo_project.shop.forms import CheckoutForm
from demo_project.shop.models import Order, Product
from demo_project.shop.services import OutOfStock
from idempotent_post.views import PostRedirectGetMixin


class ProductListView(ListView):
    """``GET /``: what is for sale and how many are left."""

    model = Product
    template_name = "shop/product_list.html"
    context_object_name = "products"


class CheckoutView(PostRedirectGetMixin, CreateView):
    """``/checkout/``: place an order through a form (M1).

    The mixin answers a valid POST with ``303 See Other`` to the order page and guards it
    with the hidden form key, so a double click, a reload or a back-and-resubmit of the same
    rendered form places one order and lands every submit on the same confirmation.
    """

    model = Order
    form_class = CheckoutForm
    template_name = "shop/checkout.html"
    replay_message = "You already placed this order."

    def get_initial(self) -> dict[str, Any]:
        initial = super().get_initial()
        # "Buy" links on the product list come here with ?product=<id>.
        product_id = self.request.GET.get("product", "")
        if product_id.isdigit() and Product.objects.filter(pk=product_id).exists():
            initial["product"] = int(product_id)
        return initial

    def form_valid(self, form: CheckoutForm) -> HttpResponse:
        if self.request.user.is_authenticated:
            form.instance.user = self.request.user
        try:
            return super().form_valid(form)
        except OutOfStock as exc:
            form.add_error("quantity", str(exc))
            return self.form_invalid(form)


class OrderDetailView(DetailView):
    """``GET /orders/<id>/``: the confirmation page the checkout redirects to.

    Open to anyone who has the link: it is a demo, and guests buy without an account.
    """

    template_name = "shop/order_detail.html"
    context_object_name = "order"

    def get_queryset(self) -> QuerySet[Order]:
        return Order.objects.select_related("product")
