"""The fake payment gateway: its HTTP API, and the shop's client for it (M7).

The API (``POST /gateway/charges/`` to charge, ``GET`` to list) stands in for a payment
service such as Stripe, and like a real one it demands an ``Idempotency-Key`` on every
charge (``@idempotent(required=True)``): a retry with the same key gets the first answer
and moves no money twice.

The shop calls it over HTTP with ``idempotent_post.client.IdempotentSession``, which
retries network errors, 409 and 5xx with the same key. The address is
``DEMO_GATEWAY_URL``; empty means this very server, as the request reached it, so that
the demo works on any port. A server that calls itself needs a second thread or worker
free to answer: ``runserver`` is threaded; give gunicorn ``--threads`` or ``--workers``
above one. A project that mounts the shop without setting ``DEMO_GATEWAY_URL`` at all
(the test suite, whose test client has no HTTP server) reaches the gateway in-process,
through the same session and the same guarded view.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from demo_project.shop.models import Charge
from idempotent_post import idempotent
from idempotent_post.client import IdempotentSession

CURRENCIES = {"EUR", "USD", "GBP"}
# The address an in-process gateway answers on; it never reaches the network.
IN_PROCESS_URL = "http://gateway.in-process.invalid"


class GatewayError(Exception):
    """The gateway refused the charge, or could not be reached after the retries."""


def merchant(request: HttpRequest) -> str:
    """The idempotency scope of a gateway call: the merchant account.

    A real gateway scopes keys by the merchant's API key; this one has a single merchant,
    the shop, so every caller shares one key space.
    """
    return "gateway:demo-merchant"


def _invalid(detail: str) -> JsonResponse:
    return JsonResponse({"error": detail}, status=400)


@csrf_exempt
@require_http_methods(["GET", "POST"])
@idempotent(required=True, scope=merchant)
def charges(request: HttpRequest) -> HttpResponse:
    """``GET`` lists the charges; ``POST`` (JSON ``amount``, ``currency``, ``reference``) pays."""
    if request.method == "GET":
        return JsonResponse({"charges": [charge.as_json() for charge in Charge.objects.all()]})
    try:
        payload = json.loads(request.body)
        amount = Decimal(str(payload["amount"]))
        currency = str(payload["currency"]).upper()
        reference = str(payload["reference"])
    except (ValueError, TypeError, KeyError, InvalidOperation):
        return _invalid('Send JSON {"amount": "12.50", "currency": "EUR", "reference": "..."}.')
    if not amount.is_finite() or amount <= 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
        return _invalid("amount must be positive, with at most two decimals.")
    if currency not in CURRENCIES:
        return _invalid(f"currency must be one of {', '.join(sorted(CURRENCIES))}.")
    if not 0 < len(reference) <= 100:
        return _invalid("reference must be 1 to 100 characters.")
    charge = Charge.objects.create(
        amount=amount,
        currency=currency,
        reference=reference,
        idempotency_key=request.headers.get("Idempotency-Key", ""),
    )
    return JsonResponse(charge.as_json(), status=201)


def gateway_url(request: HttpRequest) -> str:
    """Where the charges API is, for a call made while serving ``request``."""
    base = getattr(settings, "DEMO_GATEWAY_URL", None)
    path = reverse("shop:gateway-charges")
    if base is None:
        return IN_PROCESS_URL + path
    if not base:
        # This server, at the address the visitor reached it on. Fine for a demo; a real
        # shop never builds an outgoing URL from the Host header.
        return request.build_absolute_uri(path)
    return base.rstrip("/") + "/charges/"


def charge(url: str, *, amount: Decimal, currency: str, reference: str, key: str) -> str:
    """Charge ``amount`` at the gateway under ``key``; return the charge's id.

    Every retry of the same payment must send the same ``key`` (and the same body): the
    gateway then answers with the charge it already made.
    """
    body = {"amount": str(amount), "currency": currency, "reference": reference}
    with IdempotentSession(retries=3, backoff_factor=0.1, timeout=(2.0, 20.0)) as session:
        session.mount(IN_PROCESS_URL, InProcessAdapter())
        try:
            response = session.post(url, json=body, idempotency_key=key)
        except requests.RequestException as error:
            raise GatewayError(f"the payment gateway at {url} is unreachable: {error}") from error
    if response.status_code not in (200, 201):
        raise GatewayError(f"the payment gateway answered {response.status_code}: {response.text}")
    return str(response.json()["id"])


class InProcessAdapter(BaseAdapter):
    """Hands a ``requests`` call to this Django project itself, with no socket.

    For projects without an HTTP server in front of them (Django's test client): the
    request still goes through the URLconf, the middleware and the guarded view.
    """

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        """Answer ``request`` with the project's own response to it."""
        # Django's test client runs a request without closing this thread's database
        # connection at its end, which the outer request still uses.
        from django.test import Client

        url = urlsplit(request.url or "")
        path = url.path + (f"?{url.query}" if url.query else "")
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in {"content-type", "content-length"}
        }
        answer = Client().generic(
            request.method or "GET",
            path,
            data=request.body or b"",
            content_type=request.headers.get("Content-Type", ""),
            headers=headers,
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = CaseInsensitiveDict(answer.items())
        response._content = answer.content
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to close: no connections are pooled."""
