"""The phases of the benchmark, one module each, in the order ``run.py`` runs them.

- ``queries``   round trips of one first execution and one replay (test client, no server)
- ``profile``   where a guarded first execution spends its time (test client, no server)
- ``overhead``  first executions, each guarded slot between two bare ones
- ``replay``    replays, against bare first executions, the same way
- ``storm``     one key sent by many clients at the same instant: orders per key
- ``scale``     10 thousand against 1 million stored records
- ``purge``     ``idempotent_post_purge`` of expired records under load
- ``memory``    peak memory of a worker taking a large upload

``bracketed`` holds what overhead and replay share. Each module's ``run`` measures and
shows its table; the computations on what was measured are pure functions beside it.
"""
