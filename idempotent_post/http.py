"""HTTP responses that Django lacks."""

from django.http.response import HttpResponseRedirectBase


class HttpResponseSeeOther(HttpResponseRedirectBase):
    """A ``303 See Other`` redirect: the answer to a POST that worked (G1).

    Unlike 302, a 303 tells every client to follow with a GET, so a reload of the
    result page repeats the safe GET only.
    """

    status_code = 303
