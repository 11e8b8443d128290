"""Post/Redirect/Get for class-based form views (G2-G5)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase, HttpResponseRedirectBase
from django.template.response import TemplateResponse

from idempotent_post.conf import conf
from idempotent_post.engine import (
    EVERY_DATABASE,
    Busy,
    Executed,
    Guard,
    Mismatch,
    Options,
    Refused,
    Replay,
)
from idempotent_post.http import HttpResponseSeeOther
from idempotent_post.keys import InvalidKey, ensure_scope, parse_key
from idempotent_post.responses import (
    INVALID_KEY,
    UnreadableResponse,
    decrypted,
    problem_response,
)

logger = logging.getLogger("idempotent_post")


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
    #: Run form_valid in one transaction with its record (T1); ``False`` for recovery
    #: points (``request.idempotency.step``) around calls to other services (T2).
    idempotency_atomic: bool | None = None
    processing_template_name = "idempotent_post/processing.html"

    request: HttpRequest
    #: Whether form_valid answered this POST: then its answer is kept (S10).
    _idempotency_valid = False

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        """The view, taken out of ``ATOMIC_REQUESTS``: the guard runs its own transaction (T3)."""
        view = super().as_view(**initkwargs)  # type: ignore[misc]
        view._non_atomic_requests = EVERY_DATABASE
        return view

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # The scope of an anonymous visitor lives in the session: make it when the form
        # is rendered, so the first submit does not change the scope of the next one (K5).
        ensure_scope(request)
        pending = request.GET.get(conf.FORM_FIELD)
        if pending:
            return self._pending_result(request, pending, *args, **kwargs)
        return super().get(request, *args, **kwargs)  # type: ignore[misc]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not conf.ENABLED:
            return super().post(request, *args, **kwargs)  # type: ignore[misc]
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
        self._follow_validity()
        outcome = self._guard().run(
            request,
            key,
            lambda: super(PostRedirectGetMixin, self).post(request, *args, **kwargs),  # type: ignore[misc]
        )
        match outcome:
            case Executed(response) | Refused(response):
                return response
            case Replay():
                if self.replay_message:
                    messages.info(request, self.replay_message, fail_silently=True)
                return outcome.response()
            case Busy():
                return self.processing_response(key)
            case Mismatch():
                return self.changed_response()
        raise AssertionError(f"unexpected outcome {outcome!r}")

    def form_valid(self, form: Any) -> HttpResponseBase:
        response = super().form_valid(form)  # type: ignore[misc]
        if isinstance(response, HttpResponseRedirectBase) and response.status_code == 302:
            return HttpResponseSeeOther(response["Location"])
        return response

    def form_invalid(self, form: Any) -> HttpResponseBase:
        response = super().form_invalid(form)  # type: ignore[misc]
        response.status_code = self.invalid_status
        return response

    def _follow_validity(self) -> None:
        """Note which of ``form_valid``/``form_invalid`` answered, overridden or not (S10).

        Whatever a valid form answers is the outcome to keep (a 303, a 200 thank-you page,
        an htmx 204); an invalid form's page never is, even one that ``form_valid`` itself
        renders through ``form_invalid`` (out of stock, say).
        """
        self._idempotency_valid = False
        valid, invalid = self.form_valid, self.form_invalid

        def form_valid(form: Any) -> HttpResponseBase:
            self._idempotency_valid = True
            return valid(form)

        def form_invalid(form: Any) -> HttpResponseBase:
            self._idempotency_valid = False
            return invalid(form)

        self.form_valid = form_valid  # type: ignore[method-assign]
        self.form_invalid = form_invalid  # type: ignore[method-assign]

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
        found = self._guard().lookup(request, key)
        match found:
            case Replay():
                try:
                    kept = decrypted(found.stored()).headers
                except UnreadableResponse:
                    kept = []  # no key decrypts it (C4): show the form
                location = {name.lower(): value for name, value in kept}.get("location")
                if location:
                    return HttpResponseSeeOther(location)
            case Busy():
                return self.processing_response(key)
        return super().get(request, *args, **kwargs)  # type: ignore[misc]

    def _guard(self) -> Guard:
        wait = conf.FORM_WAIT if self.idempotency_wait is None else self.idempotency_wait
        options = Options(
            scope=self.idempotency_scope,
            atomic=self.idempotency_atomic,
            wait=wait,
            store=lambda response: self._idempotency_valid,
        )
        return Guard(options, sender=type(self))
