"""Post/Redirect/Get for class-based form views (G2-G5)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase, HttpResponseRedirectBase
from django.template.response import TemplateResponse

from idempotent_post.conf import conf
from idempotent_post.engine import Guard
from idempotent_post.http import HttpResponseSeeOther
from idempotent_post.keys import InvalidKey, parse_key
from idempotent_post.models import IdempotencyRecord
from idempotent_post.responses import (
    INVALID_KEY,
    PROBLEM_CONTENT_TYPE,
    REPLAYED_HEADER,
    problem_response,
)

logger = logging.getLogger("idempotent_post")


def _redirects(status: int) -> bool:
    # Only the redirect of a valid form is an outcome worth replaying; an invalid
    # form's page is not stored, so the user can correct it and submit again.
    return 300 <= status < 400


class PostRedirectGetMixin:
    """Answer a valid POST with ``303 See Other`` and make it safe to submit twice.

    Put it first in the bases of a ``FormView``, ``CreateView`` or ``UpdateView`` whose
    template renders ``{% idempotency_key_field %}`` in its form. A double click, a
    reload of the POST or a back-and-resubmit of the same rendered form all land on
    the same result page, and the view's ``form_valid`` runs once (G4). A duplicate
    that arrives while the first still runs waits for it up to ``idempotency_wait``
    seconds (default ``IDEMPOTENT_POST_FORM_WAIT``), then gets a page that refreshes
    itself until the result is there.
    """

    #: The status of an invalid form's page (422 suits Turbo and htmx).
    invalid_status: int = 200
    #: The message a replayed submit adds (django.contrib.messages), or "" for none.
    replay_message: str = "This form was already submitted; here is its result."
    #: The form error shown when a form's key comes back with other values (back, edit,
    #: submit): the page is rendered again with a fresh key, and nothing is placed.
    changed_message: str = (
        "This form was already submitted with other values. Check them and submit again."
    )
    #: Seconds a duplicate waits for the first submit; ``None`` follows the setting.
    idempotency_wait: float | None = None
    #: Who a form key belongs to (see IDEMPOTENT_POST_SCOPE).
    idempotency_scope: Any = "user_or_session"
    processing_template_name = "idempotent_post/processing.html"

    request: HttpRequest

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # The scope of an anonymous visitor is the session: create it when the form is
        # rendered, so the first submit does not change the scope of the next one.
        session = getattr(request, "session", None)
        if session is not None and not session.session_key and not request.user.is_authenticated:
            session.save()
        pending = request.GET.get(conf.FORM_FIELD)
        if pending:
            return self._pending_result(request, pending, *args, **kwargs)
        return super().get(request, *args, **kwargs)  # type: ignore[misc]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        value = request.POST.get(conf.FORM_FIELD)
        if not value:
            logger.warning(
                "%s: form posted without the %r field, so it is not guarded against double "
                "submits; render {%% idempotency_key_field %%} in the form.",
                type(self).__name__,
                conf.FORM_FIELD,
            )
            return super().post(request, *args, **kwargs)  # type: ignore[misc]
        try:
            key = parse_key(value)
        except InvalidKey as error:
            return problem_response(INVALID_KEY, str(error))
        wait = conf.FORM_WAIT if self.idempotency_wait is None else self.idempotency_wait
        guard = Guard(scope=self.idempotency_scope, wait=wait, store=_redirects, sender=type(self))
        response = guard.handle(
            request,
            key,
            lambda: super(PostRedirectGetMixin, self).post(request, *args, **kwargs),  # type: ignore[misc]
        )
        if response.status_code == 409:
            return self.processing_response(key)
        if response.status_code == 422 and response.get("Content-Type") == PROBLEM_CONTENT_TYPE:
            return self.changed_response()
        if response.get(REPLAYED_HEADER) == "true" and self.replay_message:
            messages.info(request, self.replay_message, fail_silently=True)
        return response

    def form_valid(self, form: Any) -> HttpResponseBase:
        response = super().form_valid(form)  # type: ignore[misc]
        if isinstance(response, HttpResponseRedirectBase) and response.status_code == 302:
            return HttpResponseSeeOther(response["Location"])
        return response

    def form_invalid(self, form: Any) -> HttpResponseBase:
        response = super().form_invalid(form)  # type: ignore[misc]
        response.status_code = self.invalid_status
        return response

    def changed_response(self) -> HttpResponseBase:
        """The form again, with :attr:`changed_message`, when its key was used for other values."""
        if not hasattr(self, "object"):
            try:
                self.object = self.get_object()  # type: ignore[attr-defined]
            except (AttributeError, Http404):
                self.object = None
        form = self.get_form()  # type: ignore[attr-defined]
        form.is_valid()
        form.add_error(None, self.changed_message)
        return self.form_invalid(form)

    def processing_response(self, key: str) -> HttpResponseBase:
        """The page a duplicate gets while the first submit is still running."""
        refresh_url = f"{self.request.path}?{conf.FORM_FIELD}={key}"
        return TemplateResponse(
            self.request,
            self.processing_template_name,
            {"refresh_url": refresh_url, "refresh_seconds": 2},
            status=202,
        )

    def _pending_result(
        self, request: HttpRequest, key: str, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        # Where the "still processing" page refreshes to: the result once it is there.
        found = self._guard().peek(request, key)
        if found is None:
            return super().get(request, *args, **kwargs)  # type: ignore[misc]
        if isinstance(found, IdempotencyRecord) and found.state == found.State.COMPLETED:
            location = next(
                (value for name, value in found.response_headers if name.lower() == "location"),
                None,
            )
            if location:
                return HttpResponseSeeOther(location)
            return super().get(request, *args, **kwargs)  # type: ignore[misc]
        return self.processing_response(key)

    def _guard(self) -> Guard:
        wait = conf.FORM_WAIT if self.idempotency_wait is None else self.idempotency_wait
        return Guard(scope=self.idempotency_scope, wait=wait, store=_redirects, sender=type(self))
