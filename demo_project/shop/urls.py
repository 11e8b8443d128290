"""The shop's pages."""

from django.urls import path

from demo_project.shop import views

app_name = "shop"

urlpatterns = [
    path("", views.ProductListView.as_view(), name="product-list"),
    path("checkout/", views.CheckoutView.as_view(), name="checkout"),
    path("orders/<int:pk>/", views.OrderDetailView.as_view(), name="order-detail"),
]
