"""What a Kafka transaction would cost the gateway's batch, on Apache Kafka.

    python -m benchmarks.transactions [--batches 300] [--batch 30] [--bootstrap HOST:PORT]

The gateway's batch today: publish its deliveries with the idempotent producer, wait for
the acks, then commit the input offsets (after its database transaction, which holds the
audit records and the judged-message rows). With Kafka transactions the deliveries and
the input offsets would commit atomically instead: begin, send, send the offsets to the
transaction, commit. This measures both on the same broker, batch by batch (wall time per
batch and this process's CPU per record), so docs/design.md can say what "judged once"
by transaction would cost beside what it would not give (the decision is there:
"Judged once, and Kafka transactions").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.common import apache_kafka
from sgx.kafka.wiring import ensure_topics
from sgx.settings import KafkaSettings

PAYLOAD = bytes(1_200)  # about a sealed delivery's size


async def _plain(
    bootstrap: str, topic: str, group: str, batches: int, size: int
) -> tuple[list[float], float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await producer.start()
    await consumer.start()
    source = TopicPartition(topic, 0)
    consumer.assign([source])  # commits as the gateway's do: offsets of what it read
    times: list[float] = []
    cpu = time.process_time()
    try:
        for n in range(batches):
            started = time.perf_counter()
            sent = [await producer.send(topic, PAYLOAD) for _ in range(size)]
            await asyncio.gather(*sent)
            await consumer.commit({source: (n + 1) * size})
            times.append(time.perf_counter() - started)
    finally:
        cpu = time.process_time() - cpu
        await consumer.stop()
        await producer.stop()
    return times, cpu


async def _transactional(
    bootstrap: str, topic: str, group: str, batches: int, size: int
) -> tuple[list[float], float]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"bench-{uuid.uuid4().hex}"
    )
    await producer.start()
    source = TopicPartition(topic, 0)
    times: list[float] = []
    cpu = time.process_time()
    try:
        for n in range(batches):
            started = time.perf_counter()
            async with producer.transaction():
                sent = [await producer.send(topic, PAYLOAD) for _ in range(size)]
                await asyncio.gather(*sent)
                await producer.send_offsets_to_transaction({source: (n + 1) * size}, group)
            times.append(time.perf_counter() - started)
    finally:
        cpu = time.process_time() - cpu
        await producer.stop()
    return times, cpu


def _line(name: str, times: list[float], cpu: float, records: int) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{name:<14} per batch: median {statistics.median(ms):6.2f} ms, p99 {p99:6.2f} ms;"
        f" client CPU {cpu / records * 1e6:6.1f} µs per record"
    )


async def amain(args: argparse.Namespace) -> None:
    bootstrap = args.bootstrap or (await apache_kafka())[0]
    results = {}
    for name, run in (("plain", _plain), ("transactional", _transactional)):
        topic = f"bench-tx-{name}-{uuid.uuid4().hex[:8]}"
        await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), {topic: 1})
        await run(bootstrap, topic, f"g-{topic}", 10, args.batch)  # warm up
        results[name] = await run(bootstrap, topic, f"g-{topic}", args.batches, args.batch)
    records = args.batches * args.batch
    for name, (times, cpu) in results.items():
        print(_line(name, times, cpu, records))
    plain, tx = (statistics.median(results[n][0]) for n in ("plain", "transactional"))
    print(f"transactional / plain, median time per batch: {tx / plain:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--batch", type=int, default=30, help="records per batch")
    parser.add_argument("--bootstrap", default=None, help="this cluster, not the bench's Kafka")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
