"""Raw Kafka and the full exchange, measured in one run on one broker, with their ratio.

    python -m benchmarks.run [--broker tansu|kafka | --both] [--count 20000] [--rate 1000]
                             [--seconds 10] [--json FILE]
                             [--las 20] [--allocations 100000] [--no-partnership]
                             [--history-rows 1000000]

The target for the spine (issue 2): the pipeline's throughput at >= 40% of the raw chain's;
for scaling out (issue 11): >= 20%, and two gateway instances in one group at no more
gateway CPU per notification than one.
The target for routing by the child: the gateway's CPU per notification in a partnership
of ``--las`` LAs (:mod:`benchmarks.partnership`) at most 10% above the single-LA
pipeline's, both measured in this run.
The target for history (issue 20, :mod:`benchmarks.history`): the gateway's and the
consumer's CPU per notification with a year of history in their stores (``--history-rows``
judged messages, audit records, ledger entries and queue rows; 0 skips the phase) at
most 10% above the same pipeline's with fresh stores, both measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio

from benchmarks import floor, history, partnership
from benchmarks.common import Result, bench_broker, publish
from benchmarks.pipeline import gateway_cpu_us, run_pipeline_phase
from benchmarks.raw_chain import arguments, run_raw_chain, run_settings

TARGET_RATIO = 0.40  # issue 2's target
SCALE_OUT_RATIO = 0.20  # issue 11's target for the single-gateway pipeline
TWO_GATEWAYS_CPU = 1.00  # two gateways' CPU per notification, at most this times one's


def ratio_line(raw: Result, pipeline: Result) -> str:
    ratio = pipeline.per_second / raw.per_second
    verdicts = ", ".join(
        f"{'meets' if ratio >= target else 'MISSES'} the {target:.0%} target"
        for target in (SCALE_OUT_RATIO, TARGET_RATIO)
    )
    return (
        f"pipeline / raw chain throughput: {pipeline.per_second:,.0f} / {raw.per_second:,.0f}"
        f" msg/s = {ratio:.0%} ({verdicts})"
    )


def gateways_line(one: Result, two: Result) -> str:
    """Two gateway instances beside one: throughput, and CPU per notification together."""
    a, b = gateway_cpu_us(one), gateway_cpu_us(two)
    verdict = "within" if b <= a * TWO_GATEWAYS_CPU else "MISSES"
    shares = ", ".join(f"{n:,.0f}" for n in two.extra["delivered_by_gateway"].values())
    return (
        f"two gateways / one: {two.per_second:,.0f} / {one.per_second:,.0f} notifications/s;"
        f" gateway CPU per notification {b:,.1f} / {a:,.1f} µs = {b / a:.2f} ({verdict} the"
        f" {TWO_GATEWAYS_CPU:.2f} target); notifications per instance: {shares}"
    )


async def amain(args: argparse.Namespace) -> str:
    """One run on ``args.broker``; its throughput ratio line."""
    async with bench_broker(
        args.bootstrap, fetch_max_wait_ms=args.fetch_wait_ms, broker=args.broker
    ) as settings:
        raw = await run_raw_chain(settings, args)
        count, paced = args.count, round(args.rate * args.seconds)
        pipeline = [
            await run_pipeline_phase(settings, "pipeline, throughput", count, None, args.limit),
            await run_pipeline_phase(
                settings, "pipeline, two gateways, throughput", count, None, args.limit, gateways=2
            ),
        ]
        if not args.no_partnership:
            pipeline.append(await partnership.run_partnership_phase(settings, args))
        pipeline.append(
            await run_pipeline_phase(
                settings, f"pipeline, latency @ {args.rate:g}/s", paced, args.rate, args.limit
            )
        )
        aged = await history.run_history_phase(settings, args) if args.history_rows > 0 else None
        if aged is not None:
            pipeline += aged
    steps = await floor.measure(args.floor_count)  # after the phases: the machine is quiet again
    results = [*raw, *pipeline]
    library_floor = {f"{stage}: {what}": round(us, 1) for stage, what, us in steps}
    publish(results, {**run_settings(args, settings), "library_floor_us": library_floor}, args.json)
    ratio = ratio_line(raw[0], pipeline[0])
    print(ratio)
    print(gateways_line(pipeline[0], pipeline[1]))
    print()
    print(floor.report(steps))
    print(budget_line(raw[0], pipeline[0], floor.total(steps)))
    if not args.no_partnership:
        print()
        print(partnership.partnership_report(pipeline[0], pipeline[2]))
    if aged is not None:
        print()
        print(history.fill_line(aged[1]))
        print(history.history_line(*aged))
    return ratio


async def on_both(args: argparse.Namespace) -> None:
    """The whole run on the embedded Tansu, then on Apache Kafka; both ratios at the end."""
    ratios = {}
    for broker in ("tansu", "kafka"):
        print(f"=== on {broker} ===")
        args.broker = broker
        ratios[broker] = await amain(args)
        print()
    for broker, line in ratios.items():
        print(f"{broker}: {line}")


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
    parser = history.arguments(partnership.arguments(arguments()))
    parser.set_defaults(count=20_000)
    parser.add_argument(
        "--floor-count", type=int, default=5_000, help="notifications per library-floor step"
    )
    parser.add_argument("--no-partnership", action="store_true", help="skip the partnership run")
    parser.add_argument(
        "--both", action="store_true", help="run on Tansu, then on Apache Kafka; both ratios"
    )
    args = parser.parse_args()
    asyncio.run(on_both(args) if args.both else amain(args))


if __name__ == "__main__":
    main()
