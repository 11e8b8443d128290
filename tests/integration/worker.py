"""A separate process that sends one guarded request through Django's test client.

Run as ``python -m tests.integration.worker URL KEY [HEADER=VALUE ...]`` with the test
database in ``DATABASE_URL``. It prints ``READY``, waits for a line on stdin (so the
parent can release all workers at once), sends the request and prints one JSON line
with the status and the ``Idempotent-Replayed`` header. ``IDEMPOTENT_POST_*`` options
come from the environment variables of the same names, as JSON.
"""

import json
import os
import sys

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    from django.conf import settings
    from django.test import Client

    for name, value in os.environ.items():
        if name.startswith("IDEMPOTENT_POST_"):
            setattr(settings, name, json.loads(value))
    url, key, *headers = sys.argv[1:]
    extra = {
        "HTTP_" + h.split("=")[0].upper().replace("-", "_"): h.split("=", 1)[1] for h in headers
    }
    client = Client(raise_request_exception=False)
    print("READY", flush=True)
    sys.stdin.readline()
    response = client.post(
        url, data={"name": "w"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key, **extra
    )
    print(
        json.dumps(
            {"status": response.status_code, "replayed": response.get("Idempotent-Replayed")}
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
