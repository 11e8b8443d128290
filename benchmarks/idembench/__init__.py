"""The benchmark behind ``benchmarks/run.py``, one module per concern.

- ``plan``       the phases, their sizes and durations, the variants, the paths
- ``stats``      percentiles, medians, pooled samples, ratios (pure)
- ``report``     number formatting, plain-text tables, the closing summary (pure)
- ``processes``  gunicorn servers, subprocesses, ``/proc`` (peak memory, children, machine)
- ``load``       the HTTP clients, each a process of its own (standard library only)
- ``bench``      one run's set-up, the load it drives, and what the phases found
- ``phases``     one module per phase, each with a ``run(bench, ...)``
"""
