"""O6: the ``requests`` client retries one key with backoff, Retry-After and X-Retry-Count.

A real HTTP server on 127.0.0.1 answers from a script and records every request it
receives before it answers, so when ``post()`` returns the record is complete: the tests
assert on that sequence, never on timing.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import urllib3
import urllib3.util.retry
from hypothesis import given
from hypothesis import strategies as st
from urllib3.util.retry import Retry

from idempotent_post import client
from idempotent_post.client import IdempotentSession


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def retry_count(self) -> str | None:
        return self.headers.get("x-retry-count")


@dataclass
class Server:
    url: str
    script: list[tuple] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *actions: tuple) -> None:
        """Queue answers: ``(status, headers)``, ``("drop",)`` or ``("hang",)``.

        Once the script is spent, every request gets 201.
        """
        self.script.extend(actions)


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with server.lock:
                server.received.append(
                    Received(
                        self.command,
                        self.path,
                        {name.lower(): value for name, value in self.headers.items()},
                        body,
                    )
                )
                action = server.script.pop(0) if server.script else (201, {})
            if action[0] == "drop":
                # Close the connection without an answer.
                self.close_connection = True
                return
            if action[0] == "hang":
                # Answer nothing until the test is over: the client's read times out.
                server.release.wait(10)
                self.close_connection = True
                return
            status, headers = action
            payload = f'{{"status": {status}}}'.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_PATCH = do_PUT = do_GET = do_QUERY = _handle

        def log_message(self, format, *args):
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/orders/"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The waits urllib3's ``Retry`` asks for, recorded instead of slept."""
    recorded: list[float] = []

    class Clock:
        sleep = staticmethod(recorded.append)
        time = staticmethod(time.time)

    monkeypatch.setattr(urllib3.util.retry, "time", Clock)
    return recorded


@pytest.fixture
def session() -> Iterator[IdempotentSession]:
    with IdempotentSession(retries=5, backoff_factor=0.01, backoff_jitter=0.01) as session:
        yield session


def test_O6_retries_409_and_503_with_the_same_key(server, session):
    server.answer((409, {"Retry-After": "0"}), (503, {}))
    response = session.post(server.url, json={"product": 1})

    assert response.status_code == 201
    assert [r.method for r in server.received] == ["POST"] * 3
    keys = {r.key for r in server.received}
    assert len(keys) == 1
    assert None not in keys
    assert [r.retry_count for r in server.received] == [None, "1", "2"]
    assert {r.body for r in server.received} == {b'{"product": 1}'}
    assert response.request.headers["Idempotency-Key"] == keys.pop()


def test_O6_each_post_call_gets_a_fresh_key(server, session):
    session.post(server.url, json={"product": 1})
    session.post(server.url, json={"product": 1})
    first, second = server.received
    assert first.key and second.key
    assert first.key != second.key
    assert first.retry_count is None
    assert second.retry_count is None


def test_O6_an_explicit_key_is_used_on_every_try(server, session):
    server.answer((500, {}))
    session.post(server.url, data=b"x", idempotency_key="order-42")
    assert [r.key for r in server.received] == ["order-42", "order-42"]
    assert [r.retry_count for r in server.received] == [None, "1"]


def test_O6_a_key_in_the_headers_is_kept(server, session):
    session.post(server.url, headers={"idempotency-key": "mine"})
    assert server.received[0].key == "mine"


def test_O6_dropped_connection_is_retried_with_the_same_key(server, session):
    server.answer(("drop",))
    response = session.post(server.url, json={"product": 2})
    assert response.status_code == 201
    first, second = server.received
    assert first.key == second.key
    assert first.body == second.body == b'{"product": 2}'
    assert [first.retry_count, second.retry_count] == [None, "1"]


def test_O6_read_timeout_is_retried_with_the_same_key(server, session):
    server.answer(("hang",))
    response = session.post(server.url, json={"product": 3}, timeout=(5, 0.2))
    assert response.status_code == 201
    first, second = server.received
    assert first.key == second.key
    assert second.retry_count == "1"


@pytest.fixture
def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_O6_connection_refused_is_retried_then_raised(refused_url, sleeps):
    with IdempotentSession(retries=2) as session, pytest.raises(requests.ConnectionError):
        session.post(refused_url, json={})
    # Three tries: urllib3 retries at once the first time, then waits once.
    assert len(sleeps) == 1


def test_O6_retry_after_is_honoured(server, sleeps):
    server.answer((409, {"Retry-After": "3"}), (429, {"Retry-After": "7"}))
    with IdempotentSession(backoff_factor=0.5, backoff_jitter=0) as session:
        response = session.post(server.url, json={})
    assert response.status_code == 201
    assert sleeps == [3, 7]
    assert [r.retry_count for r in server.received] == [None, "1", "2"]


def test_O6_backoff_grows_exponentially_with_jitter(server, sleeps):
    server.answer((503, {}), (502, {}), (500, {}), (504, {}))
    with IdempotentSession(backoff_factor=0.5, backoff_jitter=0.25, backoff_max=1.5) as session:
        response = session.post(server.url, json={})
    assert response.status_code == 201
    # urllib3 retries at once the first time, then waits 0.5 * 2 ** (n - 1) plus jitter,
    # capped at backoff_max.
    assert len(sleeps) == 3
    for wait, base in zip(sleeps, [1.0, 1.5, 1.5], strict=True):
        assert base <= wait <= min(base + 0.25, 1.5)
    assert [r.retry_count for r in server.received] == [None, "1", "2", "3", "4"]


def test_O6_retries_run_out_and_return_the_last_response(server, sleeps):
    server.answer(*[(503, {})] * 10)
    with IdempotentSession(retries=2) as session:
        response = session.post(server.url, json={})
    assert response.status_code == 503
    assert [r.retry_count for r in server.received] == [None, "1", "2"]
    assert len({r.key for r in server.received}) == 1


def test_O6_raise_on_status_raises_retry_error(server, sleeps):
    server.answer(*[(503, {})] * 10)
    retry = Retry(total=1, status_forcelist=[503], allowed_methods=None, raise_on_status=True)
    with IdempotentSession(retries=retry) as session, pytest.raises(requests.exceptions.RetryError):
        session.post(server.url, json={})
    assert len(server.received) == 2


@pytest.mark.parametrize("status", [200, 400, 404, 422])
def test_O6_other_statuses_are_not_retried(server, session, status):
    server.answer((status, {}))
    assert session.post(server.url, json={}).status_code == status
    assert len(server.received) == 1


def test_O6_patch_gets_a_key_and_is_retried(server, session):
    server.answer((503, {}))
    session.patch(server.url, json={})
    first, second = server.received
    assert first.method == second.method == "PATCH"
    assert first.key and first.key == second.key


def test_O6_get_gets_no_key_but_is_retried(server, session):
    server.answer((503, {}))
    session.get(server.url)
    assert [r.key for r in server.received] == [None, None]
    assert [r.retry_count for r in server.received] == [None, "1"]


def test_C1_query_gets_no_key_but_is_retried_like_get(server, session):
    server.answer((503, {}))
    response = session.query(server.url, json={"q": "mug"})
    assert response.status_code == 201
    assert [r.method for r in server.received] == ["QUERY", "QUERY"]
    assert [r.key for r in server.received] == [None, None]
    assert [r.retry_count for r in server.received] == [None, "1"]
    assert server.received[0].body == b'{"q": "mug"}'


def test_O6_a_post_without_a_key_is_never_retried(server):
    with IdempotentSession(key_methods=()) as session:
        server.answer((503, {}))
        assert session.post(server.url, json={}).status_code == 503
    assert len(server.received) == 1
    assert server.received[0].key is None


def test_O6_a_body_that_cannot_be_sent_again_is_not_retried(server, session):
    server.answer((503, {}))
    response = session.post(server.url, data=iter([b"a", b"b"]))
    assert response.status_code == 503
    assert len(server.received) == 1


def test_O6_a_file_body_is_rewound_for_each_retry(server, session, tmp_path):
    path = tmp_path / "body.txt"
    path.write_bytes(b"from a file")
    server.answer((503, {}), (503, {}))
    with path.open("rb") as body:
        assert session.post(server.url, data=body).status_code == 201
    assert [r.body for r in server.received] == [b"from a file"] * 3
    assert len({r.key for r in server.received}) == 1


def test_O6_module_level_post(server):
    server.answer((409, {"Retry-After": "0"}))
    response = client.post(server.url, json={"a": 1})
    assert response.status_code == 201
    first, second = server.received
    assert first.key == second.key
    assert second.retry_count == "1"


def test_O6_default_timeout_applies(server):
    with IdempotentSession(retries=0, timeout=(5, 0.2)) as session:
        server.answer(("hang",))
        with pytest.raises(requests.ReadTimeout):
            session.post(server.url, json={})
    assert len(server.received) == 1


def test_O6_new_key_is_a_valid_key():
    from idempotent_post.keys import parse_key

    key = client.new_key()
    assert parse_key(key) == key
    assert client.new_key() != key


def test_O6_against_the_engine_a_repeated_key_is_replayed(live_server, session):
    from idempotent_post.models import IdempotencyRecord
    from tests.testapp.models import Widget

    url = f"{live_server.url}/t/plain/"
    first = session.post(url, json={"name": "a"}, idempotency_key="client-e2e")
    again = session.post(url, json={"name": "a"}, idempotency_key="client-e2e")
    other = session.post(url, json={"name": "a"})

    assert first.status_code == again.status_code == other.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert other.json() != first.json()
    assert Widget.objects.count() == 2
    assert IdempotencyRecord.objects.filter(key="client-e2e").count() == 1


# O6: a Retry-After is capped, and a malformed one falls back to the backoff.


def raw_response(retry_after: str) -> urllib3.HTTPResponse:
    return urllib3.HTTPResponse(body=b"", headers={"Retry-After": retry_after}, status=503)


def session_retry(session: IdempotentSession) -> Retry:
    adapter = session.get_adapter("http://127.0.0.1/")
    assert isinstance(adapter, client.IdempotentAdapter)
    return adapter.retry


def test_O6_a_long_retry_after_is_capped_at_a_minute_by_default(server, sleeps):
    server.answer((503, {"Retry-After": "86400"}), (409, {"Retry-After": "61"}))
    with IdempotentSession() as session:
        response = session.post(server.url, json={})
        retry = session_retry(session)
    assert response.status_code == 201
    assert sleeps == [60, 60]
    assert retry.get_retry_after(raw_response("86400")) == 60
    assert retry.get_retry_after(raw_response("59")) == 59


def test_O6_retry_after_cap_argument(server, sleeps):
    far = "Fri, 31 Dec 9999 23:59:59 GMT"
    server.answer((503, {"Retry-After": "7"}), (503, {"Retry-After": far}), (503, {}))
    with IdempotentSession(retry_after_cap=5, backoff_factor=0.5, backoff_jitter=0) as session:
        response = session.post(server.url, json={})
    assert response.status_code == 201
    # The third wait is the backoff: 0.5 * 2 ** 2.
    assert sleeps == [5, 5, 2.0]
    assert [r.retry_count for r in server.received] == [None, "1", "2", "3"]


def test_O6_the_cap_survives_each_retry(server):
    # Retry.increment() makes a new Retry for each try: the cap must go with it, on
    # urllib3 releases whose Retry.new() knows nothing of it too.
    with IdempotentSession(retry_after_cap=5) as session:
        retry = session_retry(session)
    later = retry.increment("POST", server.url, response=raw_response("100"))
    later = later.increment("POST", server.url, response=raw_response("100"))
    assert len(later.history) == 2
    assert later.get_retry_after(raw_response("100")) == 5


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "",
        "-5",
        "1.5",
        "1e3",
        "Wed, 21 Oct 99999 07:28:00 GMT",
        "Wed, 21 Oct 99999999999 07:28:00",
        "9" * 5000,
    ],
)
def test_O6_a_malformed_retry_after_falls_back_to_the_backoff(server, sleeps, value):
    server.answer((503, {"Retry-After": value}), (503, {"Retry-After": value}))
    with IdempotentSession(backoff_factor=0.5, backoff_jitter=0) as session:
        response = session.post(server.url, json={})
        retry = session_retry(session)
    assert response.status_code == 201
    assert [r.retry_count for r in server.received] == [None, "1", "2"]
    # urllib3 retries at once the first time, then backs off 0.5 * 2 ** 1.
    assert sleeps == [1.0]
    assert retry.get_retry_after(raw_response(value)) in (None, 60)


def test_O6_a_malformed_retry_after_never_raises_with_a_plain_retry(server, sleeps):
    # A Retry of the caller's own, used as it is: still no exception out of post().
    server.answer((503, {"Retry-After": "soon"}))
    retry = Retry(total=2, status_forcelist=[503], allowed_methods=None, raise_on_status=False)
    with IdempotentSession(retries=retry) as session:
        assert session.post(server.url, json={}).status_code == 201
    assert len(server.received) == 2


@given(st.text())
def test_O6_any_retry_after_gives_a_wait_within_the_cap(value):
    retry = client.IdempotentRetry(retry_after_cap=30)
    seconds = retry.get_retry_after(raw_response(value))
    assert seconds is None or 0 <= seconds <= 30
