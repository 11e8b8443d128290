"""The decorator on every kind of view (D1, D2) and the OpenAPI schema (D3)."""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.test import Client
from django.views import View
from rest_framework.decorators import api_view
from rest_framework.test import APIClient
from rest_framework.views import APIView

from idempotent_post import idempotent
from tests.testapp.models import Widget

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw")


@pytest.fixture
def api(alice):
    client = APIClient()
    client.force_authenticate(alice)
    return client


def test_d1_wrong_order_above_api_view_raises_type_error_showing_the_right_order():
    with pytest.raises(TypeError) as raised:

        @idempotent(required=True)
        @api_view(["POST"])
        def view(request):
            return HttpResponse()

    message = str(raised.value)
    assert '@api_view(["POST"])\n    @idempotent(required=True)' in message


def test_d1_wrong_target_class_raises_type_error():
    with pytest.raises(TypeError, match="not the class"):
        idempotent(APIView)


def test_d1_decorating_as_view_of_a_drf_class_raises():
    class Orders(APIView):
        pass

    with pytest.raises(TypeError, match="below @api_view"):
        idempotent(Orders.as_view())


def test_d1_plain_django_class_view_via_as_view_is_guarded(rf):
    runs = []

    class Plain(View):
        def post(self, request):
            runs.append(request)
            return HttpResponse("ok", status=201)

    view = idempotent(Plain.as_view())
    first = view(rf.post("/", {"a": 1}, HTTP_IDEMPOTENCY_KEY="plain-1"))
    again = view(rf.post("/", {"a": 1}, HTTP_IDEMPOTENCY_KEY="plain-1"))
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert len(runs) == 1


@pytest.mark.parametrize("decorate", [idempotent, idempotent()], ids=["bare", "called"])
def test_d1_bare_decorator_and_called_decorator_both_guard(rf, decorate):
    runs = []

    def view(request):
        runs.append(request)
        return HttpResponse("made", status=201)

    guarded = decorate(view)
    assert guarded.__name__ == "view"
    first = guarded(rf.post("/", {"a": 1}, HTTP_IDEMPOTENCY_KEY="bare-or-called"))
    again = guarded(rf.post("/", {"a": 1}, HTTP_IDEMPOTENCY_KEY="bare-or-called"))
    assert first.content == again.content == b"made"
    assert again["Idempotent-Replayed"] == "true"
    assert len(runs) == 1


def test_d1_api_view_function_replays(api):
    first = api.post("/t/drf/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    second = api.post("/t/drf/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 201
    assert first["Location"] == second["Location"]
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Widget.objects.count() == 1


def test_d1_api_view_scope_is_the_drf_authenticated_user(django_user_model):
    """K3: DRF token auth runs before the guard, so the key belongs to the token's user."""
    from rest_framework.authtoken.models import Token

    for name in ("alice", "bob"):
        user = django_user_model.objects.create_user(name)
        Token.objects.create(user=user, key=f"token-{name}")
    client = Client()

    def order(token):
        return client.post(
            "/t/drf/",
            data={"name": "x"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {token}",
            HTTP_IDEMPOTENCY_KEY="shared-key",
        )

    alice_first, bob_first = order("token-alice"), order("token-bob")
    assert alice_first.json()["user"] == "alice"
    assert bob_first.json()["user"] == "bob"
    assert "Idempotent-Replayed" not in bob_first
    assert Widget.objects.count() == 2


def test_d1_viewset_method(api):
    first = api.post("/api/widgets/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    second = api.post("/api/widgets/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert api.post("/api/widgets/", {"name": "a"}, format="json").status_code == 400
    assert Widget.objects.count() == 1


def test_d1_class_level_mixin(api):
    first = api.post("/api/mixin-widgets/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    second = api.post("/api/mixin-widgets/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert second["Idempotent-Replayed"] == "true"
    assert first.content == second.content
    missing = api.post("/api/mixin-widgets/", {"name": "a"}, format="json")
    assert missing.status_code == 400
    assert missing["Content-Type"] == "application/problem+json"
    assert api.get("/api/mixin-widgets/").status_code == 200
    assert Widget.objects.count() == 1


def test_d1_drf_errors_are_problem_json(api):
    response = api.post("/t/drf/", {"name": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="a,b")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 400


@pytest.mark.django_db(transaction=True)
def test_d2_async_view_replays_and_runs_once():
    client = Client()
    kwargs = {"content_type": "application/json", "HTTP_IDEMPOTENCY_KEY": "async-key"}
    first = client.post("/t/async/", data={}, **kwargs)
    second = client.post("/t/async/", data={}, **kwargs)
    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert Widget.objects.filter(name="async").count() == 1


@pytest.mark.django_db(transaction=True)
def test_d2_async_view_under_asgi(async_client):
    from asgiref.sync import async_to_sync

    kwargs = {"content_type": "application/json", "headers": {"Idempotency-Key": "async-2"}}
    first = async_to_sync(async_client.post)("/t/async/", data={}, **kwargs)
    second = async_to_sync(async_client.post)("/t/async/", data={}, **kwargs)
    assert first.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content


def test_d3_openapi_schema_documents_guarded_operations(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    create = schema["paths"]["/api/orders/"]["post"]
    header = next(p for p in create["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header"
    assert header["required"] is True
    assert "Idempotent-Replayed" in create["responses"]["201"]["headers"]
    for code in ("400", "409", "422"):
        assert "application/problem+json" in create["responses"][code]["content"]
    # Unguarded operations are left alone.
    comments = schema["paths"]["/api/comments/"]["post"]
    assert all(p["name"] != "Idempotency-Key" for p in comments.get("parameters", []))
    assert "409" not in comments["responses"]
