"""Garbage-collector settings for the long-running services.

Every notification allocates hundreds of short-lived objects (decoded records, dicts,
rows), almost none of them in reference cycles. With CPython's default thresholds
(700, 10, 10) the cyclic collector runs a young collection every 700 net allocations and a
full one every 70,000, and a full collection walks every object the process holds: the
trust directory, the allocation directory, the compiled schemas. Measured with the three
stages' work run in one process (6,000 notifications), the collector took 12% of the CPU
time, and 5% with :func:`settle`.

:func:`settle` is called once a service has finished starting: it collects, moves every
surviving object into the permanent generation (:func:`gc.freeze`: never scanned again,
never freed), and makes young collections rarer. Reference counting still frees
everything acyclic at once; cycles are still collected, only less often.
"""

from __future__ import annotations

import functools
import gc

YOUNG_THRESHOLD = 20_000  # net allocations between young collections (CPython: 700)


@functools.cache
def settle() -> None:
    """Freeze what start-up built and collect young objects less often (see the module).

    Only the first call in a process does anything: a process that runs several services
    (the demo, the tests) freezes once, at the first service's start.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
