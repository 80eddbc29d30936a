"""A gateway's first start at national scale: its resident memory at every moment.

    python -m benchmarks.first_start [--allocations 1000000] [--schools 150] [--trusts 40]
        [--forces 43] [--every 0.2] [--json FILE]

The issue-23 target: a gateway resides in at most 300 MB with 1,000,000 allocations at
every moment, the first start that judges a backlog of allocation updates included. This
is that start alone, without :mod:`benchmarks.national`'s morning: the same parties
(``benchmarks.national.build``, one inbound partition each) and allocations, published
before a real ``safeguard gateway run`` process starts; then

1. **start-up**: spawn → ``/readyz`` 200 (the directory has read every allocation topic);
2. **the backlog**: the allocation topics' owner (this instance, the group's only one)
   judges every update once (audit records, receipts, the snapshot, the schools'
   open-case lists), until the gateway counts them all;
3. **afterwards**: a few seconds idle.

Its ``VmRSS`` is read from ``/proc`` every ``--every`` seconds throughout, and ``VmHWM``
(the kernel's own peak, which no sampling misses) at the end; the report gives the
peak of each phase and whether it is within the target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks.common import bench_broker, broker_arguments, publish
from benchmarks.national import (
    ALLOCATIONS,
    FORCES,
    LAS,
    RSS_TARGET_MB,
    GatewayProcess,
    build,
    gateway_process,
    prepare,
)
from sgx.settings import KafkaSettings

SCHOOLS, TRUSTS = 150, 40  # what this machine carries beside the rest (benchmarks/README.md)
IDLE_S = 5.0


class Sampler:
    """The gateway's VmRSS every ``every`` seconds, by phase."""

    def __init__(self, gateway: GatewayProcess, every: float) -> None:
        self._gateway = gateway
        self._every = every
        self.phase = "start-up"
        self.peaks: dict[str, float] = {}
        self.samples: list[tuple[float, str, float]] = []

    async def run(self) -> None:
        started = time.perf_counter()
        while True:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                rss = self._gateway.status()["VmRSS"]
                self.samples.append((round(time.perf_counter() - started, 1), self.phase, rss))
                self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
            await asyncio.sleep(self._every)


@contextlib.asynccontextmanager
async def sampling(gateway: GatewayProcess, every: float) -> AsyncIterator[Sampler]:
    sampler = Sampler(gateway, every)
    task = asyncio.create_task(sampler.run())
    try:
        yield sampler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run(settings: KafkaSettings, args: argparse.Namespace) -> dict[str, Any]:
    national = build(args.las, args.schools, args.trusts, args.forces, args.allocations)
    figures: dict[str, Any] = {"las": len(national.las), "agencies": len(national.serves)}
    with tempfile.TemporaryDirectory(prefix="sgx-bench-first-start-") as tmp:
        home = Path(tmp)
        figures.update(await prepare(home, settings, national))
        async with gateway_process(settings, home) as gateway:
            async with sampling(gateway, args.every) as sampler:
                figures["start_s"] = round(gateway.ready_s, 1)
                figures["after_start_mb"] = gateway.status()["VmRSS"]
                figures["start_peak_mb"] = gateway.status()["VmHWM"]
                sampler.phase = "backlog"
                figures["backlog_s"] = await gateway.audited(figures["allocation_updates"])
                figures["after_backlog_mb"] = gateway.status()["VmRSS"]
                sampler.phase = "idle"
                await asyncio.sleep(IDLE_S)
            figures["allocations_held"] = await gateway.metric("sgx_gateway_allocations")
            status = gateway.status()
    figures["peak_mb_by_phase"] = {k: round(v, 1) for k, v in sampler.peaks.items()}
    figures["vm_hwm_mb"] = round(status["VmHWM"], 1)
    figures["rss_at_end_mb"] = round(status["VmRSS"], 1)
    figures["samples"] = sampler.samples
    return figures


def report(figures: dict[str, Any]) -> str:
    peak = figures["vm_hwm_mb"]
    by_phase = ", ".join(f"{k} {v:.0f} MB" for k, v in figures["peak_mb_by_phase"].items())
    return "\n".join(
        [
            f"first start: {figures['allocations_held']:,.0f} allocations held, "
            f"{figures['allocation_updates']} updates judged ({figures['las']} LAs, "
            f"{figures['agencies']} agencies)",
            f"start-up {figures['start_s']} s (RSS then {figures['after_start_mb']:.0f} MB, peak "
            f"{figures['start_peak_mb']:.0f} MB); "
            f"backlog judged in {figures['backlog_s']} s (RSS then "
            f"{figures['after_backlog_mb']:.0f} MB)",
            f"RSS peak by phase (sampled every few tenths of a second): {by_phase}",
            f"peak resident memory (VmHWM): {peak:.0f} MB "
            f"({'within' if peak <= RSS_TARGET_MB else 'OVER'} the {RSS_TARGET_MB:.0f} MB "
            "target)",
        ]
    )


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--las", type=int, default=LAS)
    parser.add_argument("--schools", type=int, default=SCHOOLS)
    parser.add_argument("--trusts", type=int, default=TRUSTS)
    parser.add_argument("--forces", type=int, default=FORCES)
    parser.add_argument("--allocations", type=int, default=ALLOCATIONS)
    parser.add_argument("--every", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="fetch_max_wait_ms")
    broker_arguments(parser)
    parser.add_argument("--json", default=None, help="write the figures as JSON ('-': stdout)")
    return parser


async def amain(args: argparse.Namespace) -> None:
    # one inbound partition per agency, as a nation needs (docs/design.md, "At national
    # scale"); the gateway process reads it from its environment
    os.environ.setdefault("SGX_KAFKA_INBOUND_PARTITIONS", "1")
    async with bench_broker(
        args.bootstrap, fetch_max_wait_ms=args.fetch_wait_ms, broker=args.broker
    ) as settings:
        # the gateway process reads its settings from the environment: the broker's
        # (the embedded one has no idempotent producers)
        os.environ["SGX_KAFKA_IDEMPOTENCE"] = str(settings.idempotence).lower()
        figures = await run(settings, args)
    publish([], {**vars(args), **figures}, args.json)
    print(report(figures))


def main() -> None:
    asyncio.run(amain(arguments().parse_args()))


if __name__ == "__main__":
    main()
