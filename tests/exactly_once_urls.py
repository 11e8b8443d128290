"""URLs of tests/test_exactly_once.py."""

from django.urls import path

from tests.testapp import exactly_once_views as views

urlpatterns = [
    path("eo/thanks/", views.ThanksPageView.as_view()),
    path("eo/thanks-base/", views.ThanksPageBaseView.as_view()),
    path("eo/htmx/", views.HtmxRedirectView.as_view()),
    path("eo/htmx-base/", views.HtmxRedirectBaseView.as_view()),
    path("eo/steps/", views.steps_create),
    path("eo/atomic/", views.atomic_create),
    path("eo/nonatomic/", views.nonatomic_create),
    path("eo/status/<int:code>/", views.transient_status),
    path("eo/async-page/", views.async_page),
    path("eo/gated-steps/", views.gated_steps),
    path("eo/drf/", views.drf_in_request_transaction),
    path("eo/drf-non-atomic/", views.drf_out_of_request_transaction),
    path("eo/durable/", views.durable_in_guard),
    path("eo/durable-non-atomic/", views.durable_non_atomic),
    path("eo/server-error/", views.server_error),
    path("eo/drf-raising/", views.drf_raising),
    path("eo/drf-raising-non-atomic/", views.drf_raising_non_atomic),
]
