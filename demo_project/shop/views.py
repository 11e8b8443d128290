"""The shop's pages: product list, checkout (Post/Redirect/Get) and order confirmation."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from django.views.generic import CreateView, DetailView, ListView, TemplateView

from demo_project.shop.forms import CheckoutForm
from demo_project.shop.gateway import gateway_url
from demo_project.shop.models import Charge, Order, Product, SentEmail
from demo_project.shop.services import OutOfStock, pay_and_confirm
from idempotent_post.engine import Idempotency
from idempotent_post.http import HttpResponseSeeOther
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

    A valid submit places the order, charges it at the payment gateway and has the
    confirmation e-mailed (M7): one order, one charge, one e-mail per rendered form, even
    when a submit fails half-way and is sent again.
    """

    model = Order
    # Recovery points (the order, the charge) need the durable reservation, and the
    # gateway call must not run inside a transaction the guard holds open (T2).
    idempotency_atomic = False
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
        # Unguarded (IDEMPOTENT_POST_ENABLED off, or no key in the form): steps just run.
        idempotency = getattr(self.request, "idempotency", None) or Idempotency()
        try:
            # A recovery point (T2): a retry after a failure further on finds it placed.
            order_id = idempotency.step("order", lambda: form.save().pk)
        except OutOfStock as exc:
            form.add_error("quantity", str(exc))
            return self.form_invalid(form)
        self.object = Order.objects.get(pk=order_id)
        pay_and_confirm(self.object, idempotency, gateway_url(self.request))
        return HttpResponseSeeOther(self.get_success_url())


class OrderDetailView(DetailView):
    """``GET /orders/<id>/``: the confirmation page the checkout redirects to.

    Open to anyone who has the link: it is a demo, and guests buy without an account.
    """

    template_name = "shop/order_detail.html"
    context_object_name = "order"

    def get_queryset(self) -> QuerySet[Order]:
        return Order.objects.select_related("product")


class PaymentsView(TemplateView):
    """``GET /payments/``: what the shop did to the world, the gateway's charges and the e-mails.

    After double clicks, reloads and a crash, one order still shows one charge and one e-mail.
    """

    template_name = "shop/payments.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["charges"] = Charge.objects.all()[:100]
        context["charge_count"] = Charge.objects.count()
        context["emails"] = SentEmail.objects.all()[:100]
        context["email_count"] = SentEmail.objects.count()
        return context
