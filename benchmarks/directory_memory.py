"""The allocation directory's memory at national scale, in one process, no broker.

    python -m benchmarks.directory_memory [--mix national|both] [--allocations 1000000]

Applies allocation updates to an :class:`~gateway.allocations.AllocationDirectory` in
memory (as every gateway instance does while reading the allocation topics) under
``tracemalloc`` and reports what the directory holds once they are applied: megabytes of
Python objects and bytes per pseudonym (per distinct key held).

* ``national``: :mod:`benchmarks.national`'s allocations (152 LAs; half the children known
  by NHS number only, half by UPN only; each LA transfers in 20 of the LA before's).
* ``both``: as many allocations, every child allocated by its NHS number and UPN in one
  entry, so every case is of two keys (its ring costs two dict entries:
  :mod:`gateway.allocation_index`).
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.national import BATCH, LAS, NHS_CHILDREN, allocation_updates, build, la_id
from gateway.allocations import AllocationDirectory
from safeguard import samples
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.keys.pseudonym import Pseudonymiser


def both_identifiers(allocations: int) -> Iterator[dict[str, Any]]:
    """``allocations`` keys held: half as many children, each by NHS number and UPN."""
    children = min(allocations // 2, NHS_CHILDREN)
    per_la = -(-children // LAS)
    for k in range(LAS):
        first = k * per_la
        entries = [
            (make_nhs_number(g), make_upn(g), f"sw-{k:03d}-{g % 40}", f"team-{g % 8}",
             f"tm-{k:03d}-{g % 8}")
            for g in range(first, min(first + per_la, children))
        ]  # fmt: skip
        for s in range(0, len(entries), BATCH):
            yield samples.allocation_update(entries[s : s + BATCH], la=la_id(k + 1))


def measure(mix: str, allocations: int) -> dict[str, float]:
    engine = create_async_engine("sqlite+aiosqlite://")  # never opened: memory only
    pseudonyms = Pseudonymiser(bytes(range(32)))
    updates: Iterator[dict[str, Any]] = (
        (u for _, u in allocation_updates(build(allocations=allocations)))
        if mix == "national"
        else both_identifiers(allocations)
    )
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    directory = AllocationDirectory(engine, pseudonyms)
    started = time.perf_counter()
    for update in updates:
        directory.apply_in_memory(directory.change(update))
    applied_s = time.perf_counter() - started
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    keys = directory.index.keys()
    return {
        "allocations": len(directory),
        "pseudonyms": keys,
        "mb": round(held / 1e6, 1),
        "bytes_per_pseudonym": round(held / keys, 1),
        "applied_s_traced": round(applied_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mix", choices=("national", "both"), default="national")
    parser.add_argument("--allocations", type=int, default=1_000_000)
    args = parser.parse_args()
    print(args.mix, measure(args.mix, args.allocations))


if __name__ == "__main__":
    main()
