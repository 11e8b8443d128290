"""Signals sent by the engine (O1, O2). Every signal is sent with ``sender`` = the view."""

from django.dispatch import Signal

# request, record: a stored response was replayed instead of running the view.
replayed = Signal()

# request, record: a duplicate arrived while the first was still in progress (409).
conflict = Signal()

# request, record: a key was reused for a different request (422).
mismatch = Signal()

# request, record, attempts: a retry took over a reservation whose lease had run out.
lease_taken_over = Signal()

# request, error: the cache lock failed and the database lock was used instead.
lock_backend_fallback = Signal()

# request, path, fingerprint: the same POST arrived twice within a short window.
double_submit_suspected = Signal()

# request, response, stored: the view ran for a key and answered (C6); stored says whether
# its answer will be replayed.
executed = Signal()

# request, outcome, seconds: the guard answered a keyed request; seconds is the guard's own
# time, the view's excluded (C6: the metrics' histogram).
guard_finished = Signal()
