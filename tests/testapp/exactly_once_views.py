"""Views for the "exactly once" regression tests (tests/test_exactly_once.py).

Effects outside the view's transaction (a charge at a payment gateway, say) are counted
in :data:`effects`, which no rollback undoes: it says how often a step really ran.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from functools import cache

from asgiref.sync import sync_to_async
from django import forms
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import FormView
from rest_framework import status
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound, Throttled, ValidationError
from rest_framework.response import Response

from idempotent_post import idempotent
from idempotent_post.views import PostRedirectGetMixin
from tests.testapp import views as shared_views
from tests.testapp.models import Widget

#: How often each effect ran, by ``"<effect>:<name>"``; never rolled back.
effects: Counter[str] = Counter()
_effects_lock = threading.Lock()


def count(effect: str) -> int:
    with _effects_lock:
        effects[effect] += 1
        return effects[effect]


@cache
def template(source: str):
    return engines["django"].from_string(source)


FORM_PAGE = (
    "{% load idempotent_post %}<form method='post'>{% csrf_token %}"
    "{% idempotency_key_field script=False %}{{ form }}</form>"
)
THANKS_PAGE = "Thank you: order {{ widget.pk }} for {{ widget.name }}."
WIDGETS_PAGE = "{% for widget in widgets %}{{ widget.pk }}:{{ widget.name }};{% endfor %}"


def _name(request) -> str:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        data = {}
    return str(data.get("name", "w")) if isinstance(data, dict) else "w"


# S10: form views whose valid form answers a page, not a redirect.


class OrderForm(forms.Form):
    name = forms.CharField(max_length=50)
    quantity = forms.IntegerField(min_value=1)


class _FormPage(FormView):
    form_class = OrderForm

    def render_to_response(self, context, **response_kwargs):
        return TemplateResponse(self.request, template(FORM_PAGE), context, **response_kwargs)


def _place(form) -> Widget:
    return Widget.objects.create(
        name=f"{form.cleaned_data['name']} x{form.cleaned_data['quantity']}",
        key=form.data.get("idempotency_key", ""),
    )


class ThanksPageView(PostRedirectGetMixin, _FormPage):
    """The usual Django idiom: ``form_valid`` overridden on the view itself."""

    def form_valid(self, form):
        widget = _place(form)
        return TemplateResponse(self.request, template(THANKS_PAGE), {"widget": widget})


class _ThanksPageBase(_FormPage):
    def form_valid(self, form):
        widget = _place(form)
        return TemplateResponse(self.request, template(THANKS_PAGE), {"widget": widget})


class ThanksPageBaseView(PostRedirectGetMixin, _ThanksPageBase):
    """The same page from a base class, so the mixin's ``form_valid`` wraps it."""


class HtmxRedirectView(PostRedirectGetMixin, _FormPage):
    """htmx: a valid form answers ``204 No Content`` with ``HX-Redirect``."""

    def form_valid(self, form):
        widget = _place(form)
        response = HttpResponse(status=204)
        response["HX-Redirect"] = f"/orders/{widget.pk}/"
        return response


class HtmxRedirectBaseView(PostRedirectGetMixin, _FormPage):
    """The same htmx answer, with the mixin's ``form_valid`` in the call chain."""

    def get_success_url(self):
        return "/unused/"

    def form_valid(self, form):
        super().form_valid(form)  # the mixin marks the form valid; its redirect is not used
        widget = _place(form)
        response = HttpResponse(status=204)
        response["HX-Redirect"] = f"/orders/{widget.pk}/"
        return response


# S12, T2, K4, O1, E3: function views with and without the guard's transaction.


@csrf_exempt
@idempotent(atomic=False)
def steps_create(request):
    """A charge as a recovery point (T2), then a failure when asked, then a row."""
    name = _name(request)

    def charge():
        count(f"charge:{name}")
        return Widget.objects.create(name=f"charge {name}").pk

    charged = request.idempotency.step("charge", charge)
    if request.headers.get("X-Fail"):
        raise RuntimeError("failed after the charge")
    widget = Widget.objects.create(name=f"done {name}")
    return JsonResponse({"charge": charged, "id": widget.pk}, status=201)


@csrf_exempt
@idempotent
def atomic_create(request):
    name = _name(request)
    count(f"atomic:{name}")
    widget = Widget.objects.create(name=name)
    return JsonResponse({"id": widget.pk, "name": name}, status=201)


@csrf_exempt
@idempotent(atomic=False)
def nonatomic_create(request):
    name = _name(request)
    count(f"nonatomic:{name}")
    widget = Widget.objects.create(name=name)
    return JsonResponse({"id": widget.pk, "name": name}, status=201)


# S11: transient answers.


@csrf_exempt
@idempotent
def transient_status(request, code):
    count(f"transient:{_name(request)}")
    Widget.objects.create(name=f"transient {code}")
    response = HttpResponse(f"status {code}", status=code, content_type="text/plain")
    if code in (429, 503):
        response["Retry-After"] = "7"
    return response


# D5: an async view whose template response queries while it renders.


@csrf_exempt
@idempotent
async def async_page(request):
    name = _name(request)
    await sync_to_async(Widget.objects.create)(name=name)
    widgets = Widget.objects.filter(name=name).order_by("pk")  # lazy: runs at render
    return TemplateResponse(request, template(WIDGETS_PAGE), {"widgets": widgets}, status=201)


# T3: ATOMIC_REQUESTS and durable atomic blocks.


@csrf_exempt
@idempotent(atomic=False)
def gated_steps(request):
    """A charge, then a pause the test controls (``X-Gate``), then a failure when asked."""
    name = _name(request)

    def charge():
        count(f"charge:{name}")
        return Widget.objects.create(name=f"charge {name}").pk

    charged = request.idempotency.step("charge", charge)
    shared_views._checkpoint(request)
    if request.headers.get("X-Fail"):
        raise RuntimeError("failed after the charge")
    return JsonResponse({"charge": charged}, status=201)


def _drf_create(request):
    widget = Widget.objects.create(name=str(request.data.get("name", "drf")))
    return Response({"id": widget.pk}, status=status.HTTP_201_CREATED)


drf_in_request_transaction = api_view(["POST"])(idempotent(required=True)(_drf_create))
drf_out_of_request_transaction = transaction.non_atomic_requests(
    api_view(["POST"])(idempotent(required=True)(_drf_create))
)


def _durable_create(request):
    with transaction.atomic(durable=True):
        widget = Widget.objects.create(name=_name(request))
    return JsonResponse({"id": widget.pk}, status=201)


durable_in_guard = csrf_exempt(idempotent(_durable_create))
durable_non_atomic = csrf_exempt(idempotent(atomic=False)(_durable_create))


# T4: the view's writes on the default database, the records on another.


@csrf_exempt
@idempotent
def server_error(request):
    Widget.objects.create(name=_name(request))
    return HttpResponse("it broke", status=500, content_type="text/plain")


# S6, T1: a DRF view that answers by raising.

RAISES = {
    "invalid": lambda: ValidationError({"name": ["This name is refused."]}),
    "missing": lambda: NotFound(),
    "throttled": lambda: Throttled(wait=1),
    "crash": lambda: RuntimeError("the view failed"),
}


def _write_then_raise(request):
    """Write a widget, then answer by raising what the body names; counts ``raised:<name>``."""
    name = str(request.data["name"])
    count(f"raised:{name}")
    Widget.objects.create(name=name)
    shared_views._checkpoint(request)
    raise RAISES[request.data["raise"]]()


@api_view(["POST"])
@idempotent(required=True)
def drf_raising(request):
    _write_then_raise(request)


@api_view(["POST"])
@idempotent(required=True, atomic=False)
def drf_raising_non_atomic(request):
    _write_then_raise(request)
