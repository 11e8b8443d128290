"""The demo shop (M0-M6): pages, the orders API, comments, search and the seed command."""

from __future__ import annotations

import base64
import json
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from demo_project.shop.management.commands.seed_demo import PRODUCTS, STOCK
from demo_project.shop.models import Comment, Order, Product
from demo_project.shop.services import place_order
from idempotent_post.models import IdempotencyRecord

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def seeded():
    seed()


@pytest.fixture
def product(seeded):
    return Product.objects.get(name="Ceramic mug")


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def token(user: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Token demo-token-{user}"}


def basic(user: str, password: str = "demo-password") -> dict[str, str]:
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {credentials}"}


def order_api(client, body, key=None, **extra):
    if key is not None:
        extra["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(
        "/api/orders/", data=json.dumps(body), content_type="application/json", **extra
    )


def stock(product: Product) -> int:
    product.refresh_from_db(fields=["stock"])
    return product.stock


# M6: the seed command.


def test_m6_seed_demo_creates_products_users_and_tokens():
    output = seed()
    assert Product.objects.count() == len(PRODUCTS)
    assert set(Product.objects.values_list("stock", flat=True)) == {STOCK}
    for name in ("alice", "bob"):
        user = get_user_model().objects.get(username=name)
        assert Token.objects.get(user=user).key == f"demo-token-{name}"
        assert authenticate(username=name, password="demo-password") == user
    assert "Demo data ready." in output


def test_m6_seed_demo_is_safe_to_run_twice(product):
    product.stock = 7
    product.save()
    Token.objects.filter(key="demo-token-bob").delete()
    seed()
    assert Product.objects.count() == len(PRODUCTS)
    assert get_user_model().objects.filter(username__in=["alice", "bob"]).count() == 2
    assert set(Token.objects.values_list("key", flat=True)) == {
        "demo-token-alice",
        "demo-token-bob",
    }
    # The stock of an existing product is left alone, so placed orders stay visible...
    assert stock(product) == 7
    # ...unless asked otherwise.
    seed("--reset-stock")
    assert stock(product) == STOCK


# M1: the pages.


def test_m1_product_list(client, seeded):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for name, _ in PRODUCTS:
        assert name in html
    assert html.count('href="/checkout/?product=') == len(PRODUCTS)


def test_m1_checkout_form_for_anonymous_visitors(client, product):
    response = client.get(f"/checkout/?product={product.pk}")
    assert response.status_code == 200
    html = response.content.decode()
    for field in ("product", "quantity", "email"):
        assert f'name="{field}"' in html
    assert '<button type="submit">Place order</button>' in html
    assert response.context["form"].initial["product"] == product.pk


def test_m1_checkout_redirects_to_the_order_page_showing_its_number(client, product):
    client.get("/checkout/")
    response = client.post(
        "/checkout/",
        {"product": product.pk, "quantity": 1, "email": "guest@example.com"},
    )
    assert response.status_code == 303
    order = Order.objects.get()
    assert response["Location"] == f"/orders/{order.pk}/"
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert order.order_number in page.content.decode()


# M0: stock changes hands with the order, in one transaction.


def test_m0_checkout_takes_the_quantity_off_the_stock(client, product):
    client.post("/checkout/", {"product": product.pk, "quantity": 3, "email": "g@example.com"})
    assert Order.objects.get().quantity == 3
    assert stock(product) == STOCK - 3


def test_m0_checkout_with_too_little_stock_is_a_form_error(client, product):
    product.stock = 2
    product.save()
    response = client.post(
        "/checkout/", {"product": product.pk, "quantity": 3, "email": "g@example.com"}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["quantity"] == ["Only 2 of Ceramic mug left in stock."]
    assert not Order.objects.exists()
    assert stock(product) == 2


def test_m0_api_with_too_little_stock_is_a_400(client, product):
    response = order_api(
        client, {"product": product.pk, "quantity": STOCK + 1}, "k", **token("alice")
    )
    assert response.status_code == 400
    assert "quantity" in response.json()
    assert not Order.objects.exists()
    assert stock(product) == STOCK


def test_m2_s6_a_refused_order_is_kept_like_any_4xx(client, product):
    # The serializer raises; DRF's 400 is the view's answer, kept for the key (S6).
    too_many = {"product": product.pk, "quantity": STOCK + 1}
    first = order_api(client, too_many, "big-order", **token("alice"))
    again = order_api(client, too_many, "big-order", **token("alice"))
    assert first.status_code == again.status_code == 400
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    # A corrected order is another request: it needs another key (F1).
    fixed = order_api(client, {"product": product.pk, "quantity": 1}, "big-order", **token("alice"))
    assert fixed.status_code == 422
    assert (
        order_api(
            client, {"product": product.pk, "quantity": 1}, "new", **token("alice")
        ).status_code
        == 201
    )
    assert Order.objects.count() == 1
    assert stock(product) == STOCK - 1


def test_m0_a_failed_order_insert_gives_the_stock_back(product):
    taken = place_order(Order(product=product, quantity=1))
    with pytest.raises(IntegrityError):
        place_order(Order(product=product, quantity=5, order_number=taken.order_number))
    assert stock(product) == STOCK - 1
    assert Order.objects.count() == 1


def test_m0_products_api(client, product):
    response = client.get("/api/products/")
    assert response.status_code == 200
    products = response.json()
    assert len(products) == len(PRODUCTS)
    assert all(set(item) == {"id", "name", "price", "stock"} for item in products)
    mug = next(item for item in products if item["id"] == product.pk)
    assert (mug["name"], mug["price"], mug["stock"]) == ("Ceramic mug", "12.50", STOCK)


# M2: the orders API.


def test_m2_order_with_token_and_key_is_201_with_location(client, product):
    response = order_api(
        client, {"product": product.pk, "quantity": 2}, "order-1", **token("alice")
    )
    assert response.status_code == 201
    body = response.json()
    order = Order.objects.get()
    assert (body["id"], body["product"], body["quantity"]) == (order.pk, product.pk, 2)
    assert body["order_number"] == order.order_number
    assert response["Location"] == f"/api/orders/{order.pk}/"
    assert "Idempotent-Replayed" not in response
    assert order.user.username == "alice"
    assert stock(product) == STOCK - 2


def test_m2_same_key_replays_the_first_answer(client, product):
    first = order_api(client, {"product": product.pk, "quantity": 2}, "order-1", **token("alice"))
    second = order_api(client, {"product": product.pk, "quantity": 2}, "order-1", **token("alice"))
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert second["Location"] == first["Location"]
    assert Order.objects.count() == 1
    assert stock(product) == STOCK - 2


def test_m2_missing_key_is_a_400_problem(client, product):
    response = order_api(client, {"product": product.pk, "quantity": 1}, **token("alice"))
    assert response.status_code == 400
    assert response["Content-Type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 400
    assert problem["type"] == "urn:idempotent-post:missing-key"
    assert not Order.objects.exists()


def test_m2_anonymous_callers_cannot_order(client, product):
    response = order_api(client, {"product": product.pk, "quantity": 1}, "anon-1")
    assert response.status_code == 401
    assert not Order.objects.exists()


def test_m2_http_basic_auth(client, product):
    response = order_api(client, {"product": product.pk, "quantity": 1}, "basic-1", **basic("bob"))
    assert response.status_code == 201
    assert Order.objects.get().user.username == "bob"


def test_m2_session_auth(client, product):
    assert client.login(username="alice", password="demo-password")
    response = order_api(client, {"product": product.pk, "quantity": 1}, "session-1")
    assert response.status_code == 201
    assert Order.objects.get().user.username == "alice"


def test_m2_k3_bob_with_alices_key_gets_his_own_order(client, product):
    alices = order_api(client, {"product": product.pk, "quantity": 1}, "shared", **token("alice"))
    bobs = order_api(client, {"product": product.pk, "quantity": 1}, "shared", **token("bob"))
    assert bobs.status_code == 201
    assert "Idempotent-Replayed" not in bobs
    assert bobs.json()["id"] != alices.json()["id"]
    assert bobs.json()["user"] == get_user_model().objects.get(username="bob").pk
    assert Order.objects.count() == 2
    assert stock(product) == STOCK - 2


def test_m2_order_list_shows_only_the_callers_orders(client, product):
    for user, key in [("alice", "a1"), ("alice", "a2"), ("bob", "b1")]:
        order_api(client, {"product": product.pk, "quantity": 1}, key, **token(user))
    alice = get_user_model().objects.get(username="alice")
    response = client.get("/api/orders/", **token("alice"))
    assert response.status_code == 200
    assert sorted(item["id"] for item in response.json()) == sorted(
        Order.objects.filter(user=alice).values_list("pk", flat=True)
    )
    assert {item["user"] for item in response.json()} == {alice.pk}
    bobs = Order.objects.get(user__username="bob")
    assert client.get(f"/api/orders/{bobs.pk}/", **token("alice")).status_code == 404


# M3: comments are not idempotent, on purpose.


def test_m3_comment_posted_twice_makes_two_comments(client):
    for _ in range(2):
        response = client.post(
            "/api/comments/",
            data=json.dumps({"text": "Nice mug"}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="ignored-here",
        )
        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response
    assert Comment.objects.count() == 2
    assert not IdempotencyRecord.objects.exists()


# M4: search by POST is safe.


def test_m4_search_by_post_answers_and_writes_nothing(client, product):
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            "/api/products/search/", data={"q": "mug"}, content_type="application/json"
        )
    assert response.status_code == 200
    assert [item["name"] for item in response.json()] == ["Ceramic mug"]
    statements = [query["sql"].lstrip().split()[0].upper() for query in queries.captured_queries]
    assert statements
    assert set(statements) == {"SELECT"}
    assert not IdempotencyRecord.objects.exists()


def test_m4_search_twice_is_the_same_answer(client, seeded):
    answers = [
        client.post("/api/products/search/", data={"q": ""}, content_type="application/json").json()
        for _ in range(2)
    ]
    assert answers[0] == answers[1]
    assert len(answers[0]) == len(PRODUCTS)


# M5: the business key.


def test_m5_order_number_is_unique(product):
    Order.objects.create(product=product, quantity=1, order_number="ORD-SAME")
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.create(product=product, quantity=1, order_number="ORD-SAME")
    assert Order.objects.count() == 1


def test_m5_new_orders_get_distinct_numbers(product):
    numbers = {place_order(Order(product=product, quantity=1)).order_number for _ in range(5)}
    assert len(numbers) == 5
    assert all(number.startswith("ORD-") for number in numbers)
