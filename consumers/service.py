"""The delivery consumer: a party's delivery topic into its recipients' queues.

A local authority's topic is its own (``sgx.delivery.<la>``); a school or a police force a
connector carries reads its connector's (``sgx.delivery.<connector>``) and queues only the
records naming it (:mod:`sgx.kafka.outbound`).

The topic also carries the gateway's word on the MASH's information requests (an
``InformationStatus``, purpose SHARE_DECISION), and information answers come as
deliveries to the MASH queue; both are kept with the batch (:mod:`consumers.information_rows`).
An LA's consumer also reads the LA's receipts topic, in the same group: the gateway's
share decisions, consent outcomes and receipts there are kept as rows with the batch too
(:mod:`consumers.answer_rows`), so no reader on the LA's side reads that topic.

Per batch: split each record into its envelopes, verify and open each (it must come from
the gateway), decode the delivery (one view, for one or more addressees), and insert one
queue entry per addressee and every quarantined envelope in ONE database transaction;
offsets are committed only after that commit. A crash before the commit replays the batch
and the queue ignores rows it already holds, so each notification ends up exactly once in
each recipient's queue.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from consumers.answer_rows import AnswerReader, GatewayAnswer, GatewayReceipt
from consumers.information_rows import AnswerLink, InformationStatusRow, status_from
from consumers.queue import QueueEntry, QueueStore
from sgx.errors import ContractError, UnknownSchema
from sgx.kafka.commits import commit_offsets
from sgx.kafka.outbound import for_agency
from sgx.kafka.quarantine import Quarantined, Source, from_gateway, sources
from sgx.kafka.schema_topic import SchemaRegistry, read_learning
from sgx.kafka.wiring import RECEIPTS_PREFIX, read_offsets, run_batches
from sgx.ops.metrics import ConsumerMetrics
from sgx.wire import avro
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opener, Purpose

# what a delivery topic's envelope is kept as: a queue row per addressee (and, for an
# information answer, its request's link), or an information request's status; what the
# LA's receipts topic's envelope is kept as: a gateway answer or receipt
Kept = QueueEntry | InformationStatusRow | AnswerLink | GatewayAnswer | GatewayReceipt
ANSWER_LABEL = "information_answer"  # the metrics' type of an information answer


class DeliveryReader:
    """Turns sealed delivery envelopes into queue entries (no Kafka, no database): verify
    and open each (it must come from the gateway), decode the delivery, and make one entry
    per addressee. A delivery whose notification was written with a schema this release
    has not seen is read again once the registry (``sgx.wire.schema_registry``) has taught it,
    and the schema is kept in the queue database for the queue's other readers; else it is
    refused as ``unknown_schema``."""

    def __init__(
        self,
        *,
        opener: Opener,
        contract: Contract,
        store: QueueStore,
        registry: SchemaRegistry | None = None,
    ) -> None:
        self._opener = opener
        self._contract = contract
        self._store = store
        self._registry = registry
        self._gateway = AnswerReader(opener=opener, contract=contract)

    def entries(self, source: Source) -> list[Kept]:
        """One queue entry per addressee of the delivery, all naming the same envelope
        (kept once, under the envelope's message id); for an information answer also the
        link from its request to it. An information request's status (purpose
        SHARE_DECISION) is kept as a status row. An envelope of the LA's receipts topic is
        kept as the gateway's answers it holds (:class:`~consumers.answer_rows.AnswerReader`)."""
        if source.topic.startswith(RECEIPTS_PREFIX):
            return list(self._gateway.rows(source))
        envelope = source.envelope()
        opened = self._opener.open(envelope, purposes=(Purpose.DELIVERY, Purpose.SHARE_DECISION))
        from_gateway(opened, "delivery")
        if opened.purpose is Purpose.SHARE_DECISION:
            status = self._contract.decode_as(c.INFORMATION_STATUS, opened.plaintext)
            return [status_from(status, source.where)]
        delivery = self._contract.decode_as(c.DELIVERY, opened.plaintext)
        digest, _ = avro.split(delivery["notification"])  # only opened when read: known?
        if not self._contract.knows(digest):
            raise UnknownSchema(digest, schema=delivery["notification_type"])
        if not delivery["recipients"]:
            raise ContractError("recipients", "a delivery names no recipient", schema=c.DELIVERY)
        restrictions = tuple(r["code"] for r in delivery["restrictions"])
        withheld = tuple(delivery["withheld"])
        where, delivery_id = source.where, str(opened.message_id)
        kept: list[Kept] = [
            QueueEntry(
                notification_id=str(delivery["notification_id"]),
                recipient_id=addressee["id"],
                recipient_role=addressee["role"],
                team=addressee["team"],
                route_reason=addressee["route_reason"],
                notification_type=delivery["notification_type"],
                urgency=delivery["urgency"],
                sender_agency=delivery["sender_agency"],
                authored_at=delivery["authored_at"],
                routed_at=delivery["routed_at"],
                restrictions=restrictions,
                withheld=withheld,
                envelope=envelope,
                source_offset=where,
                delivery_id=delivery_id,
            )
            for addressee in delivery["recipients"]
        ]
        if delivery["notification_type"] == c.INFORMATION_ANSWER:
            kept += self._answers(delivery, where)
        return kept

    def _answers(self, delivery: dict[str, Any], where: str) -> list[Kept]:
        """The link from the request an information answer answers to its item, in the
        asking MASH's queue (not an onward recipient's: the request is the MASH's)."""
        answer = self._contract.decode_as(c.INFORMATION_ANSWER, delivery["notification"])
        if answer["answer_id"] != delivery["notification_id"]:
            raise ContractError(
                "notification_id", "the delivery names another answer than it holds",
                schema=c.DELIVERY,
            )  # fmt: skip
        asking = [a for a in delivery["recipients"] if a["route_reason"] == "REQUESTING_LA_MASH"]
        if any(a["id"] != f"mash:{answer['local_authority']}" for a in asking):
            raise ContractError(
                "recipients", "an answer delivered to a MASH other than the asking LA's",
                schema=c.DELIVERY,
            )  # fmt: skip
        return [
            AnswerLink(str(answer["request_id"]), str(answer["answer_id"]), a["id"], where)
            for a in asking
        ]

    async def read(
        self, found: Sequence[Source], clock: Callable[[], datetime]
    ) -> tuple[list[Kept], list[Quarantined]]:
        """What these envelopes hold and their quarantine, learning newer schemas on the way."""
        kept, quarantined, learned = await read_learning(found, self.entries, self._registry, clock)
        await self._store.remember_schemas([(e.digest.hex(), e.name, e.schema) for e in learned])
        return kept, quarantined


async def keep(store: QueueStore, kept: Sequence[Kept], quarantined: Sequence[Quarantined]) -> int:
    """Store what a batch's envelopes hold, in ONE transaction; how many queue rows were new."""
    return await store.store_batch(
        [k for k in kept if isinstance(k, QueueEntry)],
        quarantined,
        statuses=[k for k in kept if isinstance(k, InformationStatusRow)],
        answers=[k for k in kept if isinstance(k, AnswerLink)],
        gateway=[k for k in kept if isinstance(k, GatewayAnswer | GatewayReceipt)],
    )


class DeliveryConsumer:
    """Moves sealed deliveries from Kafka into the durable queue."""

    def __init__(
        self,
        *,
        opener: Opener,
        contract: Contract,
        store: QueueStore,
        consumer: AIOKafkaConsumer,
        metrics: ConsumerMetrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_records: int = 500,
        registry: SchemaRegistry | None = None,
        party: str | None = None,
    ) -> None:
        """``party``: whose deliveries this consumer queues, where its topic is its
        connector's (another agency's records there are skipped unopened); None reads every
        record of the topic (a party's own topic)."""
        self._party = party
        self._reader = DeliveryReader(
            opener=opener, contract=contract, store=store, registry=registry
        )
        self._store = store
        self._consumer = consumer
        self._metrics = metrics
        self._clock = clock
        self._max_records = max_records
        self.queued = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver batches until ``stop`` is set; the batch in hand is finished first."""
        await run_batches(
            self._consumer,
            stop,
            self.process,
            max_records=self._max_records,
            action="fetch deliveries",
        )

    async def process(self, records: Iterable[Any]) -> None:
        records = list(records)  # every one is committed, another agency's too
        mine = records if self._party is None else for_agency(records, self._party)
        found = [source for record in mine for source in sources(record)]
        kept, quarantined = await self._reader.read(found, self._clock)
        entries = [k for k in kept if isinstance(k, QueueEntry)]
        inserted = await keep(self._store, kept, quarantined)
        offsets = read_offsets(self._consumer, records)
        await commit_offsets(self._consumer, offsets, action="commit delivery offsets")
        self._observe(entries, quarantined, inserted)

    def _observe(
        self, entries: list[QueueEntry], quarantined: list[Quarantined], inserted: int
    ) -> None:
        now = self._clock()
        latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
        for entry in entries:
            latencies[entry.notification_type, entry.urgency].append(
                (now - entry.authored_at).total_seconds()
            )
        for (name, urgency), seconds in latencies.items():
            label = (
                ANSWER_LABEL if name == c.INFORMATION_ANSWER else c.SHORT_NAMES.get(name, "unknown")
            )
            self._metrics.notifications.labels(type=label, outcome="queued").inc(len(seconds))
            histogram = self._metrics.latency.labels(type=label, urgency=urgency)
            for value in seconds:
                histogram.observe(value)
        for q in quarantined:
            self._metrics.quarantined.labels(reason=q.reason).inc()
        self.queued += inserted
