"""``/health/``, and ``/<variant>/orders/`` and ``/<variant>/upload/`` for every variant."""

from django.urls import path

from benchproject.benchshop.variants import VARIANTS
from benchproject.benchshop.views import health

urlpatterns = [path("health/", health)]
for name, variant in VARIANTS.items():
    urlpatterns += [
        path(f"{name}/orders/", variant.orders.as_view({"post": "create"})),
        path(f"{name}/upload/", variant.upload.as_view({"post": "create"})),
    ]
