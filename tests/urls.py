from django.urls import include, path
from rest_framework.routers import DefaultRouter

from tests.testapp import views

router = DefaultRouter()
router.register("widgets", views.WidgetViewSet, basename="widget")
router.register("mixin-widgets", views.MixinWidgetViewSet, basename="mixin-widget")

urlpatterns = [
    path("t/plain/", views.plain_create),
    path("t/required/", views.required_create),
    path("t/nonatomic/", views.nonatomic_create),
    path("t/waiting/", views.waiting_create),
    path("t/status/<int:code>/", views.status_view),
    path("t/failing/", views.failing_view),
    path("t/steps/", views.steps_view),
    path("t/stream/", views.streaming_view),
    path("t/file/", views.file_view),
    path("t/upload/", views.upload_view),
    path("t/async/", views.async_create),
    path("t/drf/", views.drf_create),
    path("api/", include(router.urls)),
    # The demo shop, for the M tests and the browser tests.
    path("", include("demo_project.urls")),
]
urlpatterns += [path("t/drf-reads-data/", views.drf_reads_data_create)]
