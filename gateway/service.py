"""The gateway service: inbound topics in, deliveries, receipts and decisions out.

Deliveries go to the receiving party's ``sgx.delivery.<party>`` (a local authority, a
school's key adult, a police force's SPOC); receipts, share decisions and open-case lists
(purpose ALLOCATIONS, the newest per school in the batch) to ``sgx.receipts.<party>``.

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
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gateway.decide import Judge
from gateway.decision import Decision
from gateway.store import GatewayStore
from sgx import contract as c
from sgx.contract import Contract
from sgx.envelope import Purpose, Sealer
from sgx.kafka import (
    delivery_topic,
    inbound_topic,
    kafka_errors,
    receipts_topic,
    run_batches,
    send_batched,
)
from sgx.metrics import GatewayMetrics
from sgx.quarantine import sources
from sgx.trust import Identity, TrustDirectory

log = logging.getLogger(__name__)
NO_LA = "none"  # the la label of a decision that concerns no LA (a key adult, a quarantine)


@dataclass(slots=True)
class _Outbox:
    """What one batch publishes, gathered before anything is sealed."""

    deliveries: dict[str, list[tuple[bytes, dict[str, Any]]]]  # by receiving party
    receipts: dict[str, list[dict[str, Any]]]
    share_decisions: list[tuple[str, dict[str, Any]]]
    open_case_lists: dict[str, dict[str, Any]]  # by school: the batch's last list replaces any


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
        decisions = [await self._judge.judge(s) for r in records for s in sources(r)]
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
        outbox = _Outbox(defaultdict(list), defaultdict(list), [], {})
        base = 0
        for decision in decisions:
            for delivery in decision.deliveries:
                addressees = delivery.record["recipients"]
                for addressee, index in zip(addressees, delivery.audit_indexes, strict=True):
                    addressee["audit_sequence"] = sequences[base + index]
                outbox.deliveries[delivery.party].append((delivery.key, delivery.record))
            base += len(decision.audit)
            if decision.receipt is not None:
                outbox.receipts[decision.receipt[0]].append(decision.receipt[1])
            if decision.share_decision is not None:
                outbox.share_decisions.append(decision.share_decision)
            outbox.open_case_lists.update(decision.open_case_lists)
        return outbox

    async def _publish(self, outbox: _Outbox) -> None:
        async with kafka_errors("publish deliveries and receipts"):
            futures = await self._send_deliveries(outbox.deliveries)
            futures += await self._send_answers(outbox)
            await asyncio.gather(*futures)

    async def _send_deliveries(
        self, deliveries: dict[str, list[tuple[bytes, dict[str, Any]]]]
    ) -> list[asyncio.Future[Any]]:
        futures = []
        for party, items in deliveries.items():
            sealed = [
                (key, self._seal(party, Purpose.DELIVERY, uuid.uuid4(), c.DELIVERY, record))
                for key, record in items
            ]
            futures += await send_batched(self._producer, delivery_topic(party), sealed)
        return futures

    async def _send_answers(self, outbox: _Outbox) -> list[asyncio.Future[Any]]:
        """Receipts, share decisions and open-case lists, each to its party's receipts topic."""
        answers = [
            (agency, Purpose.RECEIPTS, c.RECEIPT_BATCH, {"receipts": receipts})
            for agency, receipts in outbox.receipts.items()
        ]
        answers += [
            (la, Purpose.SHARE_DECISION, c.SHARE_DECISION, answer)
            for la, answer in outbox.share_decisions
        ]
        answers += [
            (school, Purpose.ALLOCATIONS, c.OPEN_CASE_LIST, cases)
            for school, cases in outbox.open_case_lists.items()
        ]
        futures = []
        for party, purpose, name, record in answers:
            message_id = uuid.uuid4()
            value = self._seal(party, purpose, message_id, name, record)
            topic = receipts_topic(party)
            futures.append(await self._producer.send(topic, value, key=message_id.bytes))
        return futures

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
        outcomes = Counter((d.type_label, d.outcome) for d in decisions)
        reasons = Counter(
            (entry.reason, entry.local_authority or NO_LA) for d in decisions for entry in d.audit
        )
        quarantined = Counter(q.reason for d in decisions for q in d.quarantine)
        for (type_label, outcome), n in outcomes.items():
            metrics.notifications.labels(type=type_label, outcome=outcome).inc(n)
        for (reason, la), n in reasons.items():
            metrics.decisions.labels(reason=reason, la=la).inc(n)
        for reason, n in quarantined.items():
            metrics.quarantined.labels(reason=reason).inc(n)
        self.processed += len(decisions)


def inbound_topics(trust: TrustDirectory) -> list[str]:
    """Every agency's inbound topic (the gateway itself sends nothing inbound)."""
    return sorted(inbound_topic(p.id) for p in trust.parties() if p.kind != "gateway")
