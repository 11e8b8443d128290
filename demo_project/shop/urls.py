"""The shop's pages."""

from django.urls import path

from demo_project.shop import gateway, views

app_name = "shop"

urlpatterns = [
    path("", views.ProductListView.as_view(), name="product-list"),
    path("checkout/", views.CheckoutView.as_view(), name="checkout"),
    path("orders/<int:pk>/", views.OrderDetailView.as_view(), name="order-detail"),
    path("payments/", views.PaymentsView.as_view(), name="payments"),
    # The fake payment gateway's API (M7): another service, served here for the demo.
    path("gateway/charges/", gateway.charges, name="gateway-charges"),
]
