"""The gateway service: inbound topics in, deliveries, receipts and decisions out.

Deliveries go to the receiving party's ``sgx.delivery.<party>`` (a local authority, a
school's key adult, a police force's SPOC); receipts, share decisions and open-case lists
(purpose ALLOCATIONS) to ``sgx.receipts.<party>``.
For an agency a connector carries, both go on the connector's topics instead
(``sgx.delivery.<connector>``, ``sgx.receipts.<connector>``), keyed by the agency and
naming it in a header, still sealed for the agency (:mod:`sgx.kafka.outbound`).

Per batch of records: bring the allocation directory up to the end of every allocation
topic (:meth:`AllocationFeed.catch_up`), judge each record (verify, open, validate, route,
minimise, restrict), write every audit record, quarantine entry, ledger entry and
allocation snapshot change in ONE database transaction, then seal and publish the
deliveries, receipts and share decisions, wait for the broker's acknowledgements, and
only then commit the consumer offsets. The schools' open-case lists follow once an LA's
backlog of allocation updates is judged (:mod:`gateway.open_case_sender`), its
allocation partition's offset committed only then. A crash anywhere replays the
batch: the audit trail ignores decisions it already holds and the queues are idempotent
on (notification, recipient), so nothing is lost and nothing is doubled.

**Several instances.** Every instance joins one consumer group (``sgx-gateway``) over the
inbound and allocation topics and shares their partitions. Each decision is audited in
the chain of the partition it was read from; when the group assigns this instance a
partition, it claims that chain (:meth:`GatewayStore.claim`) before reading, and writes
with the claimed epoch. A batch whose chain another instance has claimed since (this
instance was a zombie) raises :class:`~sgx.errors.Fenced`: the batch is abandoned with
nothing written or published, and the new owner judges it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation_feed import AllocationFeed, allocation_topics
from gateway.consent_book import ConsentBook
from gateway.decide import Judge
from gateway.decision import Decision, Message
from gateway.information_book import InformationBook
from gateway.open_case_sender import OpenCaseSender
from gateway.records import Judged
from gateway.store import GatewayStore
from sgx.errors import ConfigError, EnvelopeError, Fenced, StoreError
from sgx.kafka.backoff import Backoff
from sgx.kafka.commits import commit_offsets
from sgx.kafka.outbound import agency_headers, send_for_agency
from sgx.kafka.quarantine import Source, sources
from sgx.kafka.wiring import (
    REPLAY_TOPIC,
    delivery_topic,
    inbound_topic,
    kafka_errors,
    read_offsets,
    receipts_topic,
    run_batches,
    seek_back,
    send_batched,
)
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory
from sgx.ops.metrics import GatewayMetrics
from sgx.wire import contract as c
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opened, Purpose
from sgx.wire.ids import new_id
from sgx.wire.sealers import Sealers

log = logging.getLogger(__name__)
NO_LA = "none"  # the la label of a decision that concerns no LA (a key adult, a quarantine)


@dataclass(slots=True)
class _Outbox:
    """What one batch publishes, gathered before anything is sealed."""

    deliveries: dict[str, list[tuple[bytes, dict[str, Any]]]]  # by receiving party
    receipts: dict[str, list[dict[str, Any]]]
    messages: list[Message]  # share decisions, consent requests and outcomes


CLAIM_RETRY_S = 0.2  # the first wait before claiming audit chains again, doubling
CLAIM_RETRY_CAP_S = 2.0
CLAIM_LIMIT_S = 60.0  # then the group hears of the failure
YIELD_EVERY_S = 0.05  # judging gives the event loop a turn at least this often
# An instance with no batch to judge still reads the allocation updates this often: its
# directory (and sgx_gateway_allocation_records_total) stays current while the group gives
# its partitions to others, and the batch after a long quiet spell does not begin with a
# catch-up of everything published meanwhile. One ListOffsets on the feed's own connection.
IDLE_CATCH_UP_S = 5.0


def chain_of(topic: str, partition: int) -> str:
    """The audit chain of the decisions on records read from one partition."""
    return f"{topic}:{partition}"


class ChainClaims(ConsumerRebalanceListener):  # type: ignore[misc]
    """Claims the audit chain of every partition the group assigns this instance."""

    def __init__(self, store: GatewayStore, owner: str, metrics: GatewayMetrics) -> None:
        self._store = store
        self.owner = owner
        self._metrics = metrics
        self.epochs: dict[str, int] = {}
        # chains the group assigned here whose claim has not succeeded yet (it waits on a
        # row another instance holds locked, or gave up after CLAIM_LIMIT_S): a batch
        # claims its own instead. Only these: a chain merely missing from ``epochs`` may
        # be one a rebalance revoked, and claiming it would fence its new owner.
        self.unclaimed: set[str] = set()

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self.epochs.pop(chain_of(tp.topic, tp.partition), None)
            self.unclaimed.discard(chain_of(tp.topic, tp.partition))
        self._metrics.rebalances.labels(event="revoked").inc()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        chains = [chain_of(tp.topic, tp.partition) for tp in assigned]
        self.unclaimed.update(chains)
        backoff = Backoff(initial=CLAIM_RETRY_S, cap=CLAIM_RETRY_CAP_S)
        try:
            async with asyncio.timeout(CLAIM_LIMIT_S):
                while True:
                    try:
                        self.epochs.update(await self._store.claim(chains, self.owner))
                        self.unclaimed.difference_update(chains)
                        break
                    except StoreError as exc:  # the database away, or a lock held: try again
                        log.warning("gateway %s: claiming audit chains: %s", self.owner, exc)
                        await asyncio.sleep(backoff.next_delay())
        except TimeoutError:
            log.error(
                "gateway %s: could not claim %d assigned audit chain(s) in %gs; each is"
                " claimed before its first batch", self.owner, len(chains), CLAIM_LIMIT_S,
            )  # fmt: skip
        self._metrics.rebalances.labels(event="assigned").inc()
        self._metrics.assigned.set(len(self.epochs))
        log.info("gateway %s claimed %d audit chain(s)", self.owner, len(chains))


class Gateway:
    """Consumes every inbound topic (connectors' and agencies' own) and publishes sealed
    deliveries."""

    def __init__(
        self,
        *,
        judge: Judge,
        feed: AllocationFeed,
        store: GatewayStore,
        consents: ConsentBook,
        identity: Identity,
        trust: TrustDirectory,
        contract: Contract,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        metrics: GatewayMetrics,
        claims: ChainClaims | None = None,
        max_records: int = 500,
        information: InformationBook | None = None,
    ) -> None:
        """``claims`` holds the epochs of the chains the group gave this instance; without
        it (no group: a test, a tool) each chain is claimed when first written."""
        self._judge = judge
        self._feed = feed
        self._store = store
        self._consents = consents
        self._information = information
        self._identity = identity
        self._trust = trust
        self._contract = contract
        self._consumer = consumer
        self._producer = producer
        self._metrics = metrics
        self._max_records = max_records
        self._claims = claims
        self._epochs: dict[str, int] = {} if claims is None else claims.epochs
        self._sealers = Sealers(identity, trust)  # LRU: not one per agency for ever
        self.open_cases = OpenCaseSender(
            trust=trust,
            directory=feed.directory,
            contract=contract,
            producer=producer,
            seal=self._seal_plaintext,
        )
        self.processed = 0
        self.fenced = 0
        self._applied_counted = 0  # of feed.applied, what the metrics have counted
        self._caught_up_at = time.monotonic()  # the last catch-up, a batch's or an idle one
        self._count_allocations()  # those applied at start

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; the last batch is finished first."""
        await run_batches(
            self._consumer,
            stop,
            self.process,
            max_records=self._max_records,
            action="fetch inbound records",
            idle=self.keep_up,
        )
        await self._send_open_cases(idle=True)  # what waited: not read again at the next start

    async def keep_up(self) -> None:
        """With nothing to judge, send the open-case lists that waited, and read the
        allocation updates published since the last catch-up, if that was
        :data:`IDLE_CATCH_UP_S` ago (between batches: never while one is judged)."""
        await self._send_open_cases(idle=True)
        if time.monotonic() - self._caught_up_at < IDLE_CATCH_UP_S:
            return
        await self._feed.catch_up()
        self._caught_up_at = time.monotonic()
        self._count_allocations()

    async def process(self, records: Iterable[Any]) -> None:
        records = list(records)  # read, sought back or committed below
        started = time.perf_counter()
        await self._feed.catch_up()  # every allocation change taken before these records
        self._caught_up_at = time.monotonic()
        read = [s for r in records for s in sources(r)]
        opened = [self._open(source) for source in read]  # each header read once, here
        judged = await self._store.judged(
            {str(o.message_id) for o in opened if not isinstance(o, EnvelopeError)}
        )
        decisions = await self._judge_all(read, opened, judged)
        audit = [entry for d in decisions for entry in d.audit]
        chains = [
            chain_of(s.topic, s.partition) for s, d in zip(read, decisions, strict=True)
            for _ in d.audit
        ]  # fmt: skip
        changes = [change for d in decisions for change in d.allocation_changes]
        consents = [write for d in decisions for write in d.consents]
        also: list[Callable[[AsyncConnection], Awaitable[None]]] = []
        if changes:
            also.append(functools.partial(self._feed.directory.persist, changes=changes))
        if consents:
            also.append(functools.partial(self._consents.persist, writes=consents))
        information = [write for d in decisions for write in d.information]
        if information:
            if self._information is None:
                raise ConfigError("the gateway judged information requests with no book for them")
            also.append(functools.partial(self._information.persist, writes=information))
        try:
            places = await self._store.record_places(
                audit,
                [q for d in decisions for q in d.quarantine],
                [entry for d in decisions for entry in d.ledger],
                chains=chains,
                fence=await self._fence(chains),
                also=also,
                judged=[d.judged for d in decisions if d.judged is not None],
            )
        except Fenced as exc:
            self.fenced += 1
            self._metrics.fenced.inc()
            log.warning("gateway %s: %s", self._owner, exc)
            seek_back(self._consumer, records)
            return  # the new owner judges the records it took; nothing is committed here
        await self._publish(self._outbox(decisions, places))
        self.open_cases.mark(read, decisions)
        await self._send_open_cases(offsets=read_offsets(self._consumer, records))
        self._observe(decisions, time.perf_counter() - started)

    async def _send_open_cases(
        self, *, offsets: dict[TopicPartition, int] | None = None, idle: bool = False
    ) -> None:
        """Send the open-case lists that are due, then commit ``offsets`` (a batch's) but
        those of allocation partitions whose lists still wait, and those of the
        partitions whose lists went."""
        lists = self.open_cases
        if not offsets and not lists.held():
            return  # the idle loop's call, many times a second: nothing to do
        due = lists.due(self._consumer, idle=idle)
        released: dict[TopicPartition, int] = {}
        if due:
            sent = lists.sent
            released = await lists.send(due)
            self._metrics.open_case_lists.inc(lists.sent - sent)
            assigned = self._consumer.assignment()  # a rebalance may come during the send
            released = {tp: at for tp, at in released.items() if tp in assigned}
        held = lists.held()
        self._metrics.open_cases_waiting.set(len(held))
        commit = {tp: at for tp, at in (offsets or {}).items() if tp not in held}
        commit.update(released)
        if commit:
            await commit_offsets(self._consumer, commit, action="commit inbound offsets")

    def _open(self, source: Source) -> Opened | EnvelopeError:
        try:
            return self._judge.open(source)
        except EnvelopeError as exc:
            return exc  # quarantined when judged, with its reason

    async def _judge_all(
        self,
        read: list[Source],
        opened: list[Opened | EnvelopeError],
        judged: dict[tuple[str, str], Judged],
    ) -> list[Decision]:
        """Each record's decision, in order. Judging is CPU only, so a batch of large
        allocation updates (thousands of entries each) would hold the event loop for
        seconds, and with it the group heartbeat and /metrics: the loop gets a turn
        every :data:`YIELD_EVERY_S`."""
        decisions: list[Decision] = []
        turn = time.perf_counter() + YIELD_EVERY_S
        for source, envelope in zip(read, opened, strict=True):
            decisions.append(await self._judge.judge(source, judged, envelope))
            if time.perf_counter() > turn:
                await asyncio.sleep(0)
                turn = time.perf_counter() + YIELD_EVERY_S
        return decisions

    @property
    def _owner(self) -> str:
        return self._claims.owner if self._claims is not None else "(no group)"

    async def _fence(self, chains: Iterable[str]) -> dict[str, int]:
        """The epoch this instance holds for each chain; without a group, a chain not yet
        claimed is claimed now. In a group, a chain with no epoch here is fenced, unless
        the group assigned it here and the rebalance listener has not claimed it (its
        claim of all the assigned chains waits on one a paused instance holds locked, or
        gave up: aiokafka fetches meanwhile): that one is claimed now, or its batch would
        be read and fenced again and again. Any other chain with no epoch is one a
        rebalance revoked (perhaps still listed as assigned): claiming it would fence its
        new owner, for ever once this instance (a zombie resuming) leaves the group."""
        needed = set(chains)
        missing = needed - self._epochs.keys()
        if missing and self._claims is not None:
            assigned = {chain_of(tp.topic, tp.partition) for tp in self._consumer.assignment()}
            missing &= assigned & self._claims.unclaimed
            if missing:
                log.warning(
                    "gateway %s: claiming %d assigned audit chain(s) the rebalance did not",
                    self._claims.owner, len(missing),
                )  # fmt: skip
                self._epochs.update(await self._store.claim(missing, self._claims.owner))
                self._claims.unclaimed -= missing
        elif missing:
            self._epochs.update(await self._store.claim(missing, "gateway"))
        return {chain: self._epochs.get(chain, 0) for chain in needed}

    def _outbox(self, decisions: list[Decision], places: list[tuple[str, int]]) -> _Outbox:
        outbox = _Outbox(defaultdict(list), defaultdict(list), [])
        base = 0
        for decision in decisions:
            for delivery in decision.deliveries:
                addressees = delivery.record["recipients"]
                for addressee, index in zip(addressees, delivery.audit_indexes, strict=True):
                    chain, sequence = places[base + index]
                    addressee["audit_chain"] = chain
                    addressee["audit_sequence"] = sequence
                outbox.deliveries[delivery.party].append((delivery.key, delivery.record))
            base += len(decision.audit)
            if decision.receipt is not None:
                outbox.receipts[decision.receipt[0]].append(decision.receipt[1])
            outbox.messages += decision.messages
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
                (key, self._seal(party, Purpose.DELIVERY, new_id(), c.DELIVERY, record))
                for key, record in items
            ]
            owner = self._trust.outbound_connector(party)
            if owner == party:  # its own topic, keyed by child as before connectors
                futures += await send_batched(self._producer, delivery_topic(party), sealed)
            else:  # its connector's, keyed by and naming the agency (sgx.kafka.outbound)
                envelopes = [envelope for _, envelope in sealed]
                topic = delivery_topic(owner)
                futures += await send_for_agency(self._producer, topic, party, envelopes)
        return futures

    async def _send_answers(self, outbox: _Outbox) -> list[asyncio.Future[Any]]:
        """Receipts and messages (share decisions, consent requests and outcomes), each to
        its party's receipts topic; an information request's status to the LA's delivery
        topic (its consumer keeps it)."""
        answers = [
            (receipts_topic(agency), agency, Purpose.RECEIPTS, c.RECEIPT_BATCH,
             {"receipts": receipts})
            for agency, receipts in outbox.receipts.items()
        ]  # fmt: skip
        answers += [
            (
                (delivery_topic if m.on_delivery else receipts_topic)(m.party),
                m.party, m.purpose, m.schema, m.record,
            )
            for m in outbox.messages
        ]  # fmt: skip
        futures = []
        for topic, party, purpose, name, record in answers:
            message_id = new_id()
            value = self._seal(party, purpose, message_id, name, record)
            owner = self._trust.outbound_connector(party)
            if owner == party:  # its own topic, as above (an LA's status: its delivery topic)
                futures.append(await self._producer.send(topic, value, key=message_id.bytes))
            else:  # its connector's receipts topic: keyed by the agency, named in the header
                key, headers = party.encode(), agency_headers(party)
                topic = receipts_topic(owner)
                futures.append(await self._producer.send(topic, value, key=key, headers=headers))
        return futures

    def _seal(
        self,
        recipient: str,
        purpose: Purpose,
        message_id: uuid.UUID,
        name: str,
        record: dict[str, Any],
    ) -> bytes:
        plaintext = self._contract.encode(name, record, check=False)
        return self._seal_plaintext(recipient, purpose, message_id, plaintext)

    def _seal_plaintext(
        self, recipient: str, purpose: Purpose, message_id: uuid.UUID, plaintext: bytes
    ) -> bytes:
        return self._sealers.get(recipient).seal(purpose, message_id, plaintext)

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
        identified = Counter(d.identifier for d in decisions if d.identifier is not None)
        for (party, quality), n in identified.items():
            metrics.identifiers.labels(party=party, identifier=quality).inc(n)
        self._count_allocations()
        self.processed += len(decisions)

    def _count_allocations(self) -> None:
        """The allocation records applied since last counted, and the allocations held."""
        feed = self._feed
        self._metrics.allocation_records.inc(feed.applied - self._applied_counted)
        self._applied_counted = feed.applied
        self._metrics.allocations.set(len(feed.directory))


def inbound_topics(trust: TrustDirectory) -> list[str]:
    """Every inbound topic: each connector's, and each agency's that is its own connector
    (one no connector carries). The gateway itself sends nothing inbound."""
    return sorted(inbound_topic(owner) for owner in trust.inbound_connectors())


def group_topics(trust: TrustDirectory) -> list[str]:
    """What the gateway group shares out: every inbound topic, every allocation topic
    (whose owner judges each update once for its audit, receipt and snapshot), and the
    replay topic (quarantined envelopes sent to be judged again)."""
    return sorted([*inbound_topics(trust), *allocation_topics(trust), REPLAY_TOPIC])
