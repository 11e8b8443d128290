"""``{% idempotency_key_field %}`` (G3): a hidden input with a fresh key per rendered form."""

from __future__ import annotations

from html.parser import HTMLParser

from django.template import Context, Template

from idempotent_post.keys import parse_key


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "input":
            self.inputs.append(dict(attrs))


def inputs(source: str = "{% idempotency_key_field %}") -> list[dict[str, str | None]]:
    html = Template("{% load idempotent_post %}" + source).render(Context())
    parser = _Inputs()
    parser.feed(html)
    return parser.inputs


def test_g3_renders_one_hidden_input_named_by_the_default_setting():
    [field] = inputs()
    assert field["type"] == "hidden"
    assert field["name"] == "idempotency_key"


def test_g3_field_name_follows_the_setting(settings):
    settings.IDEMPOTENT_POST_FORM_FIELD = "form_key"
    [field] = inputs()
    assert field["name"] == "form_key"


def test_g3_value_is_a_valid_key():
    [field] = inputs()
    value = field["value"]
    assert value
    assert parse_key(value) == value
    # Unguessable: a key is the only thing keeping visitors of one scope apart.
    assert len(value) >= 32


def test_g3_each_render_gets_a_fresh_key():
    values = {inputs()[0]["value"] for _ in range(20)}
    assert len(values) == 20


def test_g3_two_forms_on_one_page_get_different_keys():
    first, second = inputs("{% idempotency_key_field %}{% idempotency_key_field %}")
    assert first["value"] != second["value"]


def test_g4_field_carries_the_back_forward_restore_script():
    html = Template("{% load idempotent_post %}{% idempotency_key_field %}").render(Context())
    assert "<script>" in html
    assert "back_forward" in html
    assert "sessionStorage" in html


def test_g3_script_can_be_left_out_or_given_a_nonce():
    bare = Template("{% load idempotent_post %}{% idempotency_key_field script=False %}").render(
        Context()
    )
    assert "<script" not in bare
    with_nonce = Template(
        '{% load idempotent_post %}{% idempotency_key_field nonce="abc" %}'
    ).render(Context())
    assert '<script nonce="abc">' in with_nonce
