"""``HttpResponseSeeOther`` (G1)."""

from __future__ import annotations

import pytest
from django.core.exceptions import DisallowedRedirect
from django.http import HttpResponseRedirect
from django.http.response import HttpResponseRedirectBase

from idempotent_post.http import HttpResponseSeeOther


def test_g1_status_is_303():
    response = HttpResponseSeeOther("/orders/1/")
    assert response.status_code == 303
    assert response.reason_phrase == "See Other"


def test_g1_subclasses_redirect_base_only():
    assert issubclass(HttpResponseSeeOther, HttpResponseRedirectBase)
    assert not issubclass(HttpResponseSeeOther, HttpResponseRedirect)


@pytest.mark.parametrize(
    "url", ["/orders/1/", "https://shop.example/orders/1/?ok=1", "orders/1/", "//cdn.example/x"]
)
def test_g1_sets_location(url):
    response = HttpResponseSeeOther(url)
    assert response["Location"] == url
    assert response.url == url


def test_g1_accepts_a_lazy_url():
    from django.utils.functional import lazystr

    assert HttpResponseSeeOther(lazystr("/done/"))["Location"] == "/done/"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
    ],
)
def test_g1_refuses_unsafe_schemes(url):
    with pytest.raises(DisallowedRedirect):
        HttpResponseSeeOther(url)


def test_g1_carries_extra_headers_and_body_like_any_redirect():
    response = HttpResponseSeeOther("/x/", headers={"HX-Trigger": "saved"})
    assert response["HX-Trigger"] == "saved"
    assert response.content == b""
