"""The gateway service: inbound topics in, deliveries, receipts and decisions out.

Per batch of records: judge each (verify, open, validate, route, minimise, restrict), write
every audit record, quarantine entry and ledger entry in ONE database transaction, then
seal and publish the deliveries, receipts and share decisions, wait for the broker's
acknowledgements, and only then commit the consumer offsets. A crash anywhere replays the
batch: the audit trail ignores decisions it already holds and the queues are idempotent
on (notification, recipient), so nothing is lost and nothing is doubled.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gateway.decide import Decision, Judge, Source
from gateway.store import GatewayStore
from sgx import contract as c
from sgx.contract import Contract
from sgx.envelope import Purpose, Sealer, unpack
from sgx.errors import MalformedEnvelope
from sgx.kafka import (
    delivery_topic,
    inbound_topic,
    kafka_errors,
    receipts_topic,
    run_batches,
    send_batched,
)
from sgx.metrics import GatewayMetrics
from sgx.trust import Identity, TrustDirectory

log = logging.getLogger(__name__)

INBOUND_PREFIX = "sgx.inbound."


@dataclass(slots=True)
class _Outbox:
    """What one batch publishes, gathered before anything is sealed."""

    deliveries: dict[str, list[tuple[bytes, dict[str, Any]]]]  # by local authority
    receipts: dict[str, list[dict[str, Any]]]
    share_decisions: list[tuple[str, dict[str, Any]]]


class Gateway:
    """Consumes every agency's inbound topic and publishes sealed deliveries."""

    def __init__(
        self,
        *,
        judge: Judge,
        store: GatewayStore,
        identity: Identity,
        trust: TrustDirectory,
        contract: Contract,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        metrics: GatewayMetrics,
        max_records: int = 500,
    ) -> None:
        self._judge = judge
        self._store = store
        self._identity = identity
        self._trust = trust
        self._contract = contract
        self._consumer = consumer
        self._producer = producer
        self._metrics = metrics
        self._max_records = max_records
        self._sealers: dict[str, Sealer] = {}
        self.processed = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; the last batch is finished first."""
        await run_batches(
            self._consumer,
            stop,
            self.process,
            max_records=self._max_records,
            action="fetch inbound records",
        )

    async def process(self, records: Iterable[Any]) -> None:
        started = time.perf_counter()
        decisions = [await self._judge.judge(s) for r in records for s in _sources(r)]
        audit = [entry for d in decisions for entry in d.audit]
        sequences = await self._store.record(
            audit,
            [q for d in decisions for q in d.quarantine],
            [entry for d in decisions for entry in d.ledger],
        )
        await self._publish(self._outbox(decisions, sequences))
        async with kafka_errors("commit inbound offsets"):
            await self._consumer.commit()
        self._observe(decisions, time.perf_counter() - started)

    def _outbox(self, decisions: list[Decision], sequences: list[int]) -> _Outbox:
        outbox = _Outbox(defaultdict(list), defaultdict(list), [])
        base = 0
        for decision in decisions:
            for delivery in decision.deliveries:
                addressees = delivery.record["recipients"]
                for addressee, index in zip(addressees, delivery.audit_indexes, strict=True):
                    addressee["audit_sequence"] = sequences[base + index]
                outbox.deliveries[delivery.local_authority].append((delivery.key, delivery.record))
            base += len(decision.audit)
            if decision.receipt is not None:
                outbox.receipts[decision.receipt[0]].append(decision.receipt[1])
            if decision.share_decision is not None:
                outbox.share_decisions.append(decision.share_decision)
        return outbox

    async def _publish(self, outbox: _Outbox) -> None:
        futures = []
        async with kafka_errors("publish deliveries and receipts"):
            for la, deliveries in outbox.deliveries.items():
                sealed = [
                    (key, self._seal(la, Purpose.DELIVERY, uuid.uuid4(), c.DELIVERY, record))
                    for key, record in deliveries
                ]
                futures += await send_batched(self._producer, delivery_topic(la), sealed)
            for agency, receipts in outbox.receipts.items():
                value = self._seal(
                    agency, Purpose.RECEIPTS, uuid.uuid4(), c.RECEIPT_BATCH, {"receipts": receipts}
                )
                futures.append(await self._producer.send(receipts_topic(agency), value))
            for la, answer in outbox.share_decisions:
                value = self._seal(
                    la, Purpose.SHARE_DECISION, uuid.uuid4(), c.SHARE_DECISION, answer
                )
                futures.append(await self._producer.send(receipts_topic(la), value))
            await asyncio.gather(*futures)

    def _seal(
        self,
        recipient: str,
        purpose: Purpose,
        message_id: uuid.UUID,
        name: str,
        record: dict[str, Any],
    ) -> bytes:
        sealer = self._sealers.get(recipient)
        if sealer is None:
            sealer = Sealer(self._identity, self._trust, recipient)
            self._sealers[recipient] = sealer
        plaintext = self._contract.encode(name, record, check=False)
        return sealer.seal(purpose, message_id, plaintext)

    def _observe(self, decisions: list[Decision], seconds: float) -> None:
        metrics = self._metrics
        metrics.batch_seconds.observe(seconds)
        for d in decisions:
            metrics.notifications.labels(type=d.type_label, outcome=d.outcome).inc()
            for entry in d.audit:
                metrics.decisions.labels(reason=entry.reason).inc()
            for q in d.quarantine:
                metrics.quarantined.labels(reason=q.reason).inc()
        self.processed += len(decisions)


def _sources(record: Any) -> list[Source]:
    """The envelopes one inbound record carries, each with where it came from."""
    topic = str(record.topic)
    agency = topic.removeprefix(INBOUND_PREFIX)
    partition, offset = int(record.partition), int(record.offset)
    value = bytes(record.value or b"")
    try:
        envelopes = unpack(value)
    except MalformedEnvelope as exc:
        return [Source(topic, partition, offset, 0, agency, value, broken=str(exc))]
    return [Source(topic, partition, offset, i, agency, e) for i, e in enumerate(envelopes)]


def inbound_topics(trust: TrustDirectory) -> list[str]:
    """Every agency's inbound topic (the gateway itself sends nothing inbound)."""
    return sorted(inbound_topic(p.id) for p in trust.parties() if p.kind != "gateway")
