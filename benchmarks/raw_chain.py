"""Raw Kafka baseline: producer → relay → sink in three OS processes, no exchange code.

* **throughput**: the producer sends ``--count`` 1 KB values (acks=all) as fast as it
  can to topic A; the relay consumes A, produces each value to B, waits for the acks
  and commits; the sink consumes B. Rate = count / (first produce → last sink receipt).
* **latency**: the same chain, paced at ``--rate`` messages/s for ``--seconds``; each
  value carries its send time and the sink reports p50/p99 of receipt - send.

The clients are configured exactly as the exchange's roles are (:mod:`sgx.kafka.wiring`), so
the exchange pipeline can be measured against these numbers in the same run::

    python -m benchmarks.raw_chain [--count 50000] [--rate 1000] [--seconds 10] [--json -]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from benchmarks.common import (
    Report,
    Result,
    Stages,
    bench_broker,
    broker_arguments,
    broker_cpu_s,
    broker_cpu_used,
    cpu_per_message,
    paced,
    percentile,
    publish,
    read_stamp,
    stamp,
)
from sgx.kafka.wiring import ensure_topics, start_consumer, start_producer
from sgx.settings import KafkaSettings

VALUE_BYTES = 1024
ACK_CHUNK = 5_000  # the producer awaits acks every this many sends


@dataclass(frozen=True)
class Phase:
    """One run of the chain: ``count`` messages, unpaced (rate None) or paced."""

    name: str
    count: int
    rate: float | None
    partitions: int
    limit_s: float


# --- stages (each runs in its own process) -----------------------------------------


async def _send(producer: AIOKafkaProducer, topic: str, seqs: range) -> list[asyncio.Future[Any]]:
    return [await producer.send(topic, stamp(seq, VALUE_BYTES)) for seq in seqs]


async def _send_unpaced(producer: AIOKafkaProducer, topic: str, count: int) -> None:
    for start in range(0, count, ACK_CHUNK):
        await asyncio.gather(
            *await _send(producer, topic, range(start, min(count, start + ACK_CHUNK)))
        )


async def _send_paced(producer: AIOKafkaProducer, topic: str, count: int, rate: float) -> None:
    pending: list[asyncio.Future[Any]] = []
    sent = 0
    async for due in paced(rate, count):
        pending += await _send(producer, topic, range(sent, sent + due))
        sent += due
    await asyncio.gather(*pending)


async def producer_stage(
    report: Report, settings: KafkaSettings, topic: str, count: int, rate: float | None
) -> None:
    """Send ``count`` stamped values to ``topic``, paced at ``rate``/s or flat out."""
    producer = await start_producer(settings)
    try:
        cpu_start_s = time.process_time()
        first_ns = time.time_ns()
        if rate is None:
            await _send_unpaced(producer, topic, count)
        else:
            await _send_paced(producer, topic, count, rate)
        report("done", first_ns=first_ns, acked_ns=time.time_ns(), cpu_start_s=cpu_start_s)
    finally:
        await producer.stop()


async def relay_stage(
    report: Report, settings: KafkaSettings, source: str, target: str, count: int
) -> None:
    """Consume ``source``, produce every value to ``target``, commit once acked."""
    consumer = await start_consumer(settings, [source], group_id=f"relay-{source}")
    producer = await start_producer(settings)
    try:
        relayed, ready = 0, False
        while relayed < count:
            batch = await consumer.getmany(timeout_ms=100)
            ready = ready or _announce_ready(report, consumer)
            records = [r for recs in batch.values() for r in recs]
            if records:
                await asyncio.gather(*[await producer.send(target, r.value) for r in records])
                await consumer.commit()
                relayed += len(records)
        report("done", relayed=relayed)
    finally:
        await producer.stop()
        await consumer.stop()


def _announce_ready(report: Report, consumer: Any) -> bool:
    if consumer.assignment():
        report("ready")
        return True
    return False


async def sink_stage(report: Report, settings: KafkaSettings, topic: str, count: int) -> None:
    """Consume ``topic`` until ``count`` distinct values; report receipt times and latency."""
    consumer = await start_consumer(settings, [topic], group_id=f"sink-{topic}")
    try:
        seen: set[int] = set()
        latencies_ms: list[float] = []
        first_ns, now_ns, ready = 0, 0, False
        while len(seen) < count:
            batch = await consumer.getmany(timeout_ms=100)
            now_ns = time.time_ns()
            ready = ready or _announce_ready(report, consumer)
            for records in batch.values():
                first_ns = first_ns or now_ns
                _note(records, now_ns, seen, latencies_ms)
            if batch:
                await consumer.commit()
        report("done", first_ns=first_ns, last_ns=now_ns, received=len(seen),
               p50_ms=percentile(latencies_ms, 50), p99_ms=percentile(latencies_ms, 99),
               max_ms=max(latencies_ms))  # fmt: skip
    finally:
        await consumer.stop()


def _note(records: list[Any], now_ns: int, seen: set[int], latencies_ms: list[float]) -> None:
    for record in records:
        seq, sent_ns = read_stamp(record.value)
        if seq not in seen:
            seen.add(seq)
            latencies_ms.append((now_ns - sent_ns) / 1e6)


# --- orchestration (parent process) -------------------------------------------------


async def run_phase(settings: KafkaSettings, phase: Phase) -> Result:
    """Run the three-process chain once on fresh topics; the phase's measured result."""
    run = uuid.uuid4().hex[:8]
    source, target = f"bench.raw.{run}.a", f"bench.raw.{run}.b"
    await ensure_topics(settings, {source: phase.partitions, target: phase.partitions})
    async with Stages() as stages:
        stages.spawn("relay", relay_stage, settings, source, target, phase.count)
        stages.spawn("sink", sink_stage, settings, target, phase.count)
        ready = await stages.expect("ready", ["relay", "sink"], phase.limit_s)
        broker_start = broker_cpu_s()
        stages.spawn("producer", producer_stage, settings, source, phase.count, phase.rate)
        done = await stages.expect("done", ["producer", "relay", "sink"], phase.limit_s)
        broker_used = broker_cpu_used(broker_start)
    result = _result(phase, done["producer"], done["sink"])
    result.extra["cpu_us_per_message"] = cpu_per_message(done, phase.count, ready, broker_used)
    return result


def _result(phase: Phase, producer: dict[str, Any], sink: dict[str, Any]) -> Result:
    seconds = (sink["last_ns"] - producer["first_ns"]) / 1e9
    produce_s = (producer["acked_ns"] - producer["first_ns"]) / 1e9
    return Result(
        name=phase.name,
        messages=sink["received"],
        seconds=seconds,
        per_second=sink["received"] / seconds,
        p50_ms=sink["p50_ms"] if phase.rate else None,
        p99_ms=sink["p99_ms"] if phase.rate else None,
        extra={
            "producer_msgs_per_s": round(phase.count / produce_s),
            "max_ms": round(sink["max_ms"], 1),
            "partitions": phase.partitions,
            "value_bytes": VALUE_BYTES,
        },
    )


def phases(args: argparse.Namespace) -> list[Phase]:
    """The throughput phase and the paced latency phase the arguments ask for."""
    return [
        Phase("raw chain, throughput", args.count, None, args.partitions, args.limit),
        Phase(
            f"raw chain, latency @ {args.rate:g}/s",
            round(args.rate * args.seconds),
            args.rate,
            args.partitions,
            args.limit,
        ),
    ]


async def run_raw_chain(settings: KafkaSettings, args: argparse.Namespace) -> list[Result]:
    """Every raw-chain phase, one after the other, on the broker of ``settings``."""
    return [await run_phase(settings, phase) for phase in phases(args)]


def arguments(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The command-line options (a pipeline benchmark can add its own to this parser)."""
    parser = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000, help="throughput messages")
    parser.add_argument("--rate", type=float, default=1_000.0, help="latency phase msg/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency phase length")
    parser.add_argument("--partitions", type=int, default=3, help="partitions per topic")
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="fetch_max_wait_ms")
    parser.add_argument("--limit", type=float, default=180.0, help="seconds per phase at most")
    broker_arguments(parser)
    parser.add_argument("--json", default=None, help="write results as JSON here ('-': stdout)")
    return parser


def run_settings(args: argparse.Namespace, settings: KafkaSettings) -> dict[str, Any]:
    """What the JSON records about the run's configuration."""
    return {
        **{k: v for k, v in vars(args).items() if k != "json"},
        "linger_ms": settings.linger_ms,
        "max_batch_size": settings.max_batch_size,
        "acks": "all",
    }


async def amain(args: argparse.Namespace) -> None:
    async with bench_broker(
        args.bootstrap, fetch_max_wait_ms=args.fetch_wait_ms, broker=args.broker
    ) as settings:
        results = await run_raw_chain(settings, args)
    publish(results, run_settings(args, settings), args.json)


def main() -> None:
    asyncio.run(amain(arguments().parse_args()))


if __name__ == "__main__":
    main()
