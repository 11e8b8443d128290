"""The HTTP side of the benchmark: clients that post orders and uploads, standard library only.

Each client is a process of its own (``Bench.measure`` hands ``run_client`` to a process
pool), so the clients do not share a GIL with each other or with run.py. A request opens its
own connection: gunicorn's sync workers close the connection after every response anyway.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

HOST = "127.0.0.1"
TIMEOUT = 60.0


def order_body(key: str, product: int) -> bytes:
    """The JSON of an order; the key rides along as ``note`` so orders can be counted per key."""
    return json.dumps({"product": product, "quantity": 1, "note": key}).encode()


@dataclass
class Reply:
    """What came back: the status (0 when the connection failed), headers and body."""

    status: int
    headers: dict[str, str]
    body: bytes


def post(
    port: int,
    path: str,
    token: str,
    key: str | None,
    body: bytes | Iterator[bytes],
    content_type: str = "application/json",
    length: int | None = None,
) -> Reply:
    """POST ``body`` with the token and (unless ``None``) the ``Idempotency-Key``."""
    headers = {
        "Authorization": f"Token {token}",
        "Content-Type": content_type,
        "Connection": "close",
    }
    if key is not None:
        headers["Idempotency-Key"] = key
    if length is not None:
        headers["Content-Length"] = str(length)
    connection = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)
    failure: Exception | None = None
    try:
        try:
            connection.request("POST", path, body=body, headers=headers)
        except OSError as error:
            # The server may answer and close before taking the whole body (a 400 for a
            # body over Django's limit, say): its answer can still be read.
            failure = error
        response = connection.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    except (OSError, http.client.HTTPException) as error:
        error = failure or error
        return Reply(0, {}, f"{type(error).__name__}: {error}".encode())
    finally:
        connection.close()


def get(port: int, path: str) -> int:
    """The status of ``GET path``, 0 when the server does not answer."""
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


@dataclass
class Job:
    """One client's share of a round.

    ``mode`` is ``fresh`` (a new key per request, a random product) or ``replay`` (the
    client cycles through ``keys``, each a (key, product) pair already used once). The
    client starts at the wall-clock time ``start_at`` and stops sending at ``stop_at`` or
    as soon as ``stop_file`` exists.
    """

    port: int
    path: str
    token: str
    mode: str
    start_at: float
    stop_at: float
    products: list[int] = field(default_factory=list)
    keys: list[tuple[str, int]] = field(default_factory=list)
    stop_file: str | None = None


@dataclass
class ClientResult:
    """Per request: wall-clock start, latency in ms and status; a few error messages."""

    starts: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_client(job: Job) -> ClientResult:
    """Send requests back to back for the job's time window."""
    result = ClientResult()
    rng = random.Random()
    turn = 0
    delay = job.start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    while time.time() < job.stop_at:
        if job.stop_file is not None and os.path.exists(job.stop_file):
            break
        if job.mode == "fresh":
            key, product = str(uuid.uuid4()), rng.choice(job.products)
        else:
            key, product = job.keys[turn % len(job.keys)]
            turn += 1
        started = time.time()
        clock = time.perf_counter()
        reply = post(job.port, job.path, job.token, key, order_body(key, product))
        result.latencies.append((time.perf_counter() - clock) * 1000)
        result.starts.append(started)
        result.statuses.append(reply.status)
        if not 200 <= reply.status < 300 and len(result.errors) < 3:
            result.errors.append(f"{reply.status} {reply.body[:300]!r}")
    return result


def storm(port: int, path: str, token: str, key: str, product: int, clients: int) -> Counter[int]:
    """Fire ``clients`` identical requests with one key at the same instant; count statuses."""
    barrier = threading.Barrier(clients)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    body = order_body(key, product)

    def one() -> None:
        barrier.wait()
        reply = post(port, path, token, key, body)
        with lock:
            statuses[reply.status] += 1

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def upload(port: int, path: str, token: str, key: str | None, megabytes: int) -> Reply:
    """POST a ``megabytes`` MB file as multipart/form-data, streamed from a generator."""
    boundary = uuid.uuid4().hex
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="upload.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    chunk = os.urandom(1024 * 1024)
    size = len(head) + megabytes * len(chunk) + len(tail)

    def parts() -> Iterator[bytes]:
        yield head
        for _ in range(megabytes):
            yield chunk
        yield tail

    return post(
        port,
        path,
        token,
        key,
        parts(),
        content_type=f"multipart/form-data; boundary={boundary}",
        length=size,
    )
