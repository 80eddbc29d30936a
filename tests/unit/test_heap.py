"""sgx.ops.heap: a service's start-up heap is frozen once and young collections are rarer."""

from __future__ import annotations

import gc

from sgx.ops import heap


def test_settle_freezes_once_and_raises_the_young_threshold() -> None:
    heap.settle()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD
    kept = [object() for _ in range(1000)]  # built after the first settle
    heap.settle()  # a second service in the same process: nothing more is frozen
    assert gc.get_freeze_count() == frozen
    del kept
