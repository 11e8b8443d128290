"""``{% idempotency_key_field %}``: the hidden per-form key (G3)."""

import secrets

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from idempotent_post.conf import conf

register = template.Library()


def new_form_key() -> str:
    """A fresh, unguessable key for one rendered form."""
    return secrets.token_urlsafe(24)


@register.simple_tag
def idempotency_key_field() -> SafeString:
    """A hidden input with a fresh server-generated key, for a form guarded by
    :class:`idempotent_post.views.PostRedirectGetMixin`."""
    return format_html(
        '<input type="hidden" name="{}" value="{}">', conf.FORM_FIELD, new_form_key()
    )
