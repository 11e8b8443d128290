"""``{% idempotency_key_field %}``: the hidden per-form key (G3)."""

import secrets

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from idempotent_post.conf import conf

register = template.Library()

# Browsers without a back-forward cache (or pages not eligible for it) fetch the form
# again when the user goes back, with a fresh key: its submit would be a second order.
# This script remembers the key a form was submitted with, for the tab's session, and puts
# it back when the page is reached by back/forward navigation only; a normal visit or a
# reload keeps the fresh key. Without JavaScript the field still works as a plain key.
_RESTORE_SCRIPT = (
    "(function(s){var i=s.previousElementSibling,f=i.form;if(!f)return;"
    'var n="idempotent_post:"+location.pathname+location.search+":"+i.name+":"'
    '+(f.getAttribute("action")||"");'
    "try{var e=performance.getEntriesByType('navigation')[0];"
    "if(e&&e.type==='back_forward'){var k=sessionStorage.getItem(n);if(k)i.value=k}"
    'f.addEventListener("submit",function(){try{sessionStorage.setItem(n,i.value)}catch(x){}})'
    "}catch(x){}})(document.currentScript)"
)


def new_form_key() -> str:
    """A fresh, unguessable key for one rendered form."""
    return secrets.token_urlsafe(24)


@register.simple_tag
def idempotency_key_field(script: bool = True, nonce: str = "") -> SafeString:
    """A hidden input with a fresh server-generated key, for a form guarded by
    :class:`idempotent_post.views.PostRedirectGetMixin`.

    A small inline script follows it so that going back to the form and submitting it
    again sends the key it was first submitted with (G4). ``script=False`` leaves the
    script out; ``nonce`` sets its ``nonce`` attribute for a Content-Security-Policy.
    """
    field = format_html(
        '<input type="hidden" name="{}" value="{}">', conf.FORM_FIELD, new_form_key()
    )
    if not script:
        return field
    nonce_attribute = format_html(' nonce="{}"', nonce) if nonce else ""
    return format_html(
        "{}<script{}>{}</script>", field, nonce_attribute, mark_safe(_RESTORE_SCRIPT)
    )
