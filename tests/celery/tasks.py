"""Tasks for the X2 tests. Each counts its effects in files of ``directory``: lines
appended outside any transaction, so a run that is killed or rolled back still counts.
"""

import time
from pathlib import Path

from celery import shared_task

import idempotent_post
from idempotent_post.celery import idempotent_task
from tests.testapp.models import Widget

#: How long a blocked task waits for its release before giving up.
BLOCK_SECONDS = 60


def append(directory: str, name: str) -> int:
    """Append a line to ``directory/name``; the number of lines it has now."""
    path = Path(directory) / name
    with path.open("a") as file:
        file.write(f"{time.time()}\n")
    return len(path.read_text().splitlines())


def block(directory: str) -> None:
    """Wait until the test creates ``directory/release`` (or the worker is killed)."""
    deadline = time.monotonic() + BLOCK_SECONDS
    while not (Path(directory) / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.05)


@shared_task(bind=True, acks_late=True)
@idempotent_task(lease=2, atomic=False)
def charge_then_block(self, directory, label):
    """A recovery point, then its first run blocks (to be killed); a later run finishes."""
    charge = idempotent_post.current().step("charge", lambda: append(directory, "charged"))
    if append(directory, "entered") == 1:
        block(directory)
    Widget.objects.create(name=label, key=label)
    return {"charge": charge}


@shared_task(bind=True, acks_late=True)
@idempotent_task(lease=2)
def write_then_block(self, directory, label):
    """Writes in the guard's transaction; its first run blocks (to be killed)."""
    Widget.objects.create(name=label, key=label)
    if append(directory, "entered") == 1:
        block(directory)
    return label


@shared_task(acks_late=True)
@idempotent_task(lease=2)
def once(directory, label):
    """Counts its entries and writes one row."""
    append(directory, "entered")
    Widget.objects.create(name=label, key=label)
    return label


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(ConnectionError,),
    max_retries=3,
    default_retry_delay=0,
)
@idempotent_task(lease=2)
def flaky(self, directory, label):
    """Writes a row, then fails on its first run (the row is rolled back) and not after."""
    Widget.objects.create(name=label, key=label)
    if append(directory, "entered") == 1:
        raise ConnectionError("the first run fails")
    return label


@shared_task(bind=True, acks_late=True)
@idempotent_task(lease=2, atomic=False)
def slow(self, directory, label):
    """Runs until released, for longer than its lease."""
    append(directory, "entered")
    block(directory)
    Widget.objects.create(name=label, key=label)
    return label
