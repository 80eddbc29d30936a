"""Raw Kafka and the full exchange, measured in one run on one broker, with their ratio.

    python -m benchmarks.run [--count 20000] [--rate 1000] [--seconds 10] [--json FILE]
                             [--las 20] [--allocations 100000] [--no-partnership]

The target for the spine (issue 2): the pipeline's throughput at >= 40% of the raw chain's.
The target for routing by the child: the gateway's CPU per notification in a partnership
of ``--las`` LAs (:mod:`benchmarks.partnership`) at most 10% above the single-LA
pipeline's, both measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio

from benchmarks import floor, partnership
from benchmarks.common import Result, bench_broker, publish
from benchmarks.pipeline import run_pipeline_phase
from benchmarks.raw_chain import arguments, run_raw_chain, run_settings

TARGET_RATIO = 0.40


def ratio_line(raw: Result, pipeline: Result) -> str:
    ratio = pipeline.per_second / raw.per_second
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    return (
        f"pipeline / raw chain throughput: {pipeline.per_second:,.0f} / {raw.per_second:,.0f}"
        f" msg/s = {ratio:.0%} ({verdict} the {TARGET_RATIO:.0%} target)"
    )


async def amain(args: argparse.Namespace) -> None:
    async with bench_broker(args.bootstrap, fetch_max_wait_ms=args.fetch_wait_ms) as settings:
        raw = await run_raw_chain(settings, args)
        count, paced = args.count, round(args.rate * args.seconds)
        pipeline = [
            await run_pipeline_phase(settings, "pipeline, throughput", count, None, args.limit)
        ]
        if not args.no_partnership:
            pipeline.append(await partnership.run_partnership_phase(settings, args))
        pipeline.append(
            await run_pipeline_phase(
                settings, f"pipeline, latency @ {args.rate:g}/s", paced, args.rate, args.limit
            )
        )
    steps = await floor.measure(args.floor_count)  # after the phases: the machine is quiet again
    results = [*raw, *pipeline]
    library_floor = {f"{stage}: {what}": round(us, 1) for stage, what, us in steps}
    publish(results, {**run_settings(args, settings), "library_floor_us": library_floor}, args.json)
    print(ratio_line(raw[0], pipeline[0]))
    print()
    print(floor.report(steps))
    print(budget_line(raw[0], pipeline[0], floor.total(steps)))
    if not args.no_partnership:
        print()
        print(partnership.partnership_report(pipeline[0], pipeline[1]))


def budget_line(raw: Result, pipeline: Result, library_floor_us: float) -> str:
    """What CPU per notification the target leaves, beside what is spent and the floor."""
    raw_us = raw.extra["cpu_us_per_message"]["total"]
    spent_us = pipeline.extra["cpu_us_per_message"]["total"]
    return (
        f"the {TARGET_RATIO:.0%} target leaves {raw_us / TARGET_RATIO:,.0f} µs of CPU per"
        f" notification (raw chain: {raw_us:,.0f} µs per message); the pipeline spent"
        f" {spent_us:,.0f} µs, of which the library floor above is {library_floor_us:,.0f} µs"
    )


def main() -> None:
    parser = partnership.arguments(arguments())
    parser.set_defaults(count=20_000)
    parser.add_argument(
        "--floor-count", type=int, default=5_000, help="notifications per library-floor step"
    )
    parser.add_argument("--no-partnership", action="store_true", help="skip the partnership run")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
