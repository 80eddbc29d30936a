"""What a gateway batch and a consumer batch cost, in one process, by batch size.

    python -m benchmarks.batch_cost [--batch 1 30 300] [--notifications 6000]
                                    [--history-rows 0]

The issue-23 question: at 1,000 notifications/s a batch holds a few dozen notifications,
so what the gateway and the consumer do once per batch weighs as much as what they do
per notification. This measures both without a broker, so the machine's other traffic
and the fetch waits do not blur it: ``Gateway.process`` and ``DeliveryConsumer.process``
(the services' own code, with their stores on SQLite in a temporary home) are handed
batches of sealed Kafka records by a stand-in consumer, and their sends are kept by a
stand-in producer; the deliveries the gateway published are then the consumer's batches,
of the same size. The notifications are the single-LA pipeline's
(:class:`benchmarks.pipeline.SingleLA`: Camden's 1,000 allocated children, each
notification to a worker and a supervisor).

Reported per batch size: CPU per notification (``process_time``: every thread, so
aiosqlite's too) and per batch, after five batches of warm-up. A batch of one is
(almost) the fixed cost per batch; the largest, the cost per notification.
``--history-rows`` first fills both stores with :func:`benchmarks.history.fill_history`
(a year of history), as :mod:`benchmarks.history` does for the pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from benchmarks.history import fill_history
from benchmarks.pipeline import SingleLA
from consumers.service import DeliveryConsumer
from gateway.allocation_feed import AllocationFeed
from gateway.allocations import AllocationDirectory
from gateway.consent_book import ConsentBook
from gateway.decide import Judge
from gateway.partnership import Partnership
from gateway.service import Gateway
from safeguard.parties import LA, SCHOOL
from safeguard.runtime import GATEWAY_ID, Runtime
from sgx.kafka.wiring import delivery_topic, inbound_topic
from sgx.keys.key_admin import init_trust
from sgx.ops.metrics import ConsumerMetrics, GatewayMetrics
from sgx.settings import ExchangeSettings
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose, Sealer, pack, unpack

WARM_UP = 5  # batches not counted


@dataclass(frozen=True)
class Record:
    """A Kafka record as the services read it."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None


class StandInConsumer:
    """Commits nothing anywhere; assigned the partitions the batches come from."""

    def __init__(self, topic: str) -> None:
        self._assigned = {TopicPartition(topic, p) for p in range(3)}

    def assignment(self) -> set[TopicPartition]:
        return self._assigned

    async def commit(self, _offsets: dict[TopicPartition, int]) -> None:
        return None

    def seek(self, _tp: TopicPartition, _offset: int) -> None:
        return None


class StandInProducer:
    """Keeps what is sent, acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def partitions_for(self, _topic: str) -> set[int]:
        return {0, 1, 2}

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> asyncio.Future[None]:
        self.sent.append((topic, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass(frozen=True)
class Cost:
    stage: str
    batch: int
    us_per_notification: float
    ms_per_batch: float


async def _timed(process: Any, batches: Sequence[list[Record]]) -> float:
    """CPU seconds ``process`` takes over ``batches`` (after the warm-up)."""
    for batch in batches[:WARM_UP]:
        await process(batch)
    gc.collect()
    started = time.process_time()
    for batch in batches[WARM_UP:]:
        await process(batch)
    return time.process_time() - started


async def measure(batch: int, notifications: int, history_rows: int = 0) -> list[Cost]:
    """The gateway's and the consumer's cost at ``batch`` notifications a batch."""
    flow = SingleLA()
    count = notifications + WARM_UP * batch
    with tempfile.TemporaryDirectory(prefix="sgx-bench-batch-") as tmp:
        home = Path(tmp)
        init_trust(home / "trust", flow.parties)
        rt = Runtime(exchange=ExchangeSettings(home=home, metrics_port=-1))
        if history_rows:
            await fill_history(rt, SCHOOL, (LA,), history_rows)
        trust, contract = rt.trust(), rt.contract()
        producer = StandInProducer()
        async with await rt.gateway_store() as store, await rt.disclosure_requests() as asks:
            identity = rt.identity(GATEWAY_ID, trust)
            directory = AllocationDirectory(store.engine, rt.pseudonyms(), schema=store.schema)
            await directory.load()
            for _, update in flow.allocation_updates():
                await directory.apply(update)
            feed = AllocationFeed(
                directory=directory, opener=Opener(identity, trust), contract=contract, trust=trust
            )
            consents = ConsentBook(store.engine, schema=store.schema)
            judge = Judge(
                opener=Opener(identity, trust),
                contract=contract,
                partnership=Partnership.load(rt.exchange.agreement_file, contract, trust),
                feed=feed,
                store=store,
                pseudonyms=rt.pseudonyms(),
                trust=trust,
                requests=asks,
                consents=consents,
            )
            gateway = Gateway(
                judge=judge, feed=feed, store=store, consents=consents, identity=identity,
                trust=trust, contract=contract,
                consumer=cast("AIOKafkaConsumer", StandInConsumer(inbound_topic(SCHOOL))),
                producer=cast("AIOKafkaProducer", producer),
                metrics=GatewayMetrics(CollectorRegistry()),
            )  # fmt: skip
            sealer = Sealer(rt.identity(SCHOOL, trust), trust, GATEWAY_ID)
            envelopes = [
                sealer.seal(Purpose.NOTIFICATION, record["notification_id"],
                            contract.encode(c.ATTENDANCE_UPDATE, record))
                for record in flow.notifications(count)
            ]  # fmt: skip
            batches = _records(inbound_topic(SCHOOL), envelopes, batch)
            gateway_s = await _timed(gateway.process, batches)
        topic = delivery_topic(LA)
        deliveries = [e for t, value in producer.sent if t == topic for e in unpack(value)]
        if len(deliveries) != count:  # one view each, for the worker and the supervisor
            raise RuntimeError(f"the gateway delivered {len(deliveries)} of {count}")
        async with await rt.queue_store(LA) as queue:
            history = await queue.count()
            consumer = DeliveryConsumer(
                opener=Opener(rt.identity(LA, trust), trust),
                contract=contract,
                store=queue,
                consumer=cast("AIOKafkaConsumer", StandInConsumer(topic)),
                metrics=ConsumerMetrics(CollectorRegistry()),
            )
            consumer_s = await _timed(consumer.process, _records(topic, deliveries, batch))
            queued = await queue.count() - history
            if queued != sum(flow.rows(count).values()):
                raise RuntimeError(f"the queue took {queued} rows for {count} notifications")
    timed = len(batches) - WARM_UP
    return [
        Cost(stage, batch, seconds / notifications * 1e6, seconds / timed * 1e3)
        for stage, seconds in (("gateway", gateway_s), ("consumer", consumer_s))
    ]


def _records(topic: str, envelopes: list[bytes], batch: int) -> list[list[Record]]:
    """One record of ``batch`` envelopes per batch (as a producer packs them)."""
    return [
        [Record(topic, 0, n, pack(envelopes[start : start + batch]))]
        for n, start in enumerate(range(0, len(envelopes), batch))
    ]


def report(costs: Sequence[Cost]) -> str:
    lines = [f"{'stage':9} {'batch':>6} {'µs CPU / notification':>22} {'ms CPU / batch':>15}"]
    lines += [
        f"{c.stage:9} {c.batch:6d} {c.us_per_notification:22.1f} {c.ms_per_batch:15.2f}"
        for c in sorted(costs, key=lambda c: (c.stage != "gateway", c.batch))
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 30, 300])
    parser.add_argument("--notifications", type=int, default=6_000, help="timed, per size")
    parser.add_argument("--history-rows", type=int, default=0, help="history in both stores")
    args = parser.parse_args()
    costs = [
        cost
        for size in args.batch
        for cost in asyncio.run(
            measure(size, max(size, args.notifications // size * size), args.history_rows)
        )
    ]
    print(report(costs))


if __name__ == "__main__":
    main()
