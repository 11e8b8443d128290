"""URLs of the demo shop: the pages at the root, the API under ``/api/``."""

from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.http import HttpRequest, HttpResponse
from django.urls import include, path, re_path
from django.views.decorators.http import require_safe
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("demo_project.shop.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("demo_project.shop.api_urls")),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
    # runserver serves static files itself; this lets gunicorn serve the admin's and the
    # browsable API's too, with no extra dependency. Fine for a demo, slow for production.
    re_path(r"^static/(?P<path>.*)$", serve_static, {"insecure": True}),
]

try:
    import prometheus_client
except ImportError:  # the [metrics] extra is optional
    pass
else:

    @require_safe
    def metrics(request: HttpRequest) -> HttpResponse:
        """The default registry in Prometheus' text format: the package's metrics (C6)."""
        return HttpResponse(
            prometheus_client.generate_latest(),
            content_type=prometheus_client.CONTENT_TYPE_LATEST,
        )

    # Open to anyone, as a demo's can be; a real project restricts who scrapes it.
    urlpatterns.append(path("metrics", metrics, name="metrics"))
