"""Composition: builds each role's service from settings, trust directory and stores.

This is the only place that knows all three roles; each ``run_*`` coroutine runs one
long-lived service until its stop event is set, then finishes the batch in hand, commits
and closes everything it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from consumers.monitor import consumer_monitors
from consumers.queue import QueueStore
from consumers.reader import QueueReader
from consumers.service import DeliveryConsumer
from gateway.allocation_feed import AllocationFeed, allocation_topics
from gateway.allocations import AllocationDirectory
from gateway.checkpoints import Checkpoints
from gateway.consent_book import ConsentBook
from gateway.decide import Judge
from gateway.information import InformationJudge
from gateway.information_book import InformationBook
from gateway.information_monitor import InformationMetrics, InformationMonitor
from gateway.monitor import gateway_monitors
from gateway.partnership import Partnership
from gateway.referral_book import ReferralBook
from gateway.referrals import ReferralClock
from gateway.requests import SQLITE_FILE as REQUESTS_FILE
from gateway.requests import DisclosureRequests
from gateway.service import ChainClaims, Gateway, group_topics
from gateway.store import GatewayStore
from producers.publisher import Publisher
from sgx.domain.calendar import CalendarSettings
from sgx.errors import ConfigError
from sgx.kafka import schema_topic
from sgx.kafka.outbound import delivery_topic_of
from sgx.kafka.wiring import (
    GATEWAY_GROUP,
    REPLAY_TOPIC,
    allocations_topic,
    delivery_group,
    delivery_topic,
    ensure_topics,
    inbound_topic,
    partitions_of,
    receipts_topic,
    start_consumer,
    start_producer,
)
from sgx.keys.identity import Identity
from sgx.keys.pseudonym import Pseudonymiser
from sgx.keys.trust import TrustDirectory
from sgx.ops import heap
from sgx.ops.metrics import (
    ConsumerMetrics,
    GatewayMetrics,
    MonitorSettings,
    ProducerMetrics,
    TrustMetrics,
    refreshing,
)
from sgx.ops.serving import MetricsServer, Readiness
from sgx.ops.trust_reload import TrustWatcher, watching
from sgx.settings import ExchangeSettings, KafkaSettings, StoreSettings
from sgx.wire import contract as c
from sgx.wire import schema_registry
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opener

log = logging.getLogger(__name__)

GATEWAY_ID = "gateway"
# Party kinds the gateway delivers to: an LA's workers and MASH, a school's Operation
# Encompass key adult, a police force's single point of contact for disclosure requests.
DELIVERY_KINDS = frozenset({"local_authority", "school", "police"})
# What the gateway writes for other parties to read, itself or inside a delivery.
GATEWAY_WRITES = (
    c.DELIVERY,
    c.RECEIPT_BATCH,
    c.SHARE_DECISION,
    c.CONSENT_REQUEST,
    c.CONSENT_OUTCOME,
    c.OPEN_CASE_LIST,
    c.DISCLOSURE_REQUEST,
    c.SIGNED_REFERRAL_RESPONSE,  # an LA's, forwarded to the referrer
    c.REFERRAL_RESPONSE,  # inside it, as the LA encoded it
    c.INFORMATION_REQUEST,
    c.INFORMATION_STATUS,
    c.INFORMATION_ANSWER,
    *sorted(c.NOTIFICATION_TYPES),
)
_Client = TypeVar("_Client", AIOKafkaProducer, AIOKafkaConsumer)


@functools.cache
def _contract(schema_dir: Path) -> Contract:
    """Schemas are loaded and their checkers compiled once per process, not per use."""
    return Contract.load(schema_dir)


@dataclass(slots=True)
class Runtime:
    """Everything a service needs that comes from configuration."""

    exchange: ExchangeSettings = field(default_factory=ExchangeSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    store: StoreSettings = field(default_factory=StoreSettings)

    @property
    def dsn(self) -> str | None:
        return self.store.dsn.get_secret_value() if self.store.dsn else None

    def trust(self) -> TrustDirectory:
        return TrustDirectory.load(self.exchange.trust_dir)

    def identity(self, party_id: str, trust: TrustDirectory | None = None) -> Identity:
        return Identity.load(self.exchange.trust_dir, party_id, directory=trust)

    def contract(self) -> Contract:
        return _contract(self.exchange.schema_dir)

    def pseudonyms(self) -> Pseudonymiser:
        return Pseudonymiser.load(self.exchange.trust_dir)

    def sqlite(self, name: str) -> Path:
        self.exchange.home.mkdir(parents=True, exist_ok=True)
        return self.exchange.home / name

    def store_schema(self, owner: str) -> str | None:
        """The PostgreSQL schema of ``owner``'s store (None on SQLite, where each party's
        stores are files of their own under the home)."""
        return self.store.schema_for(owner) if self.dsn else None

    async def gateway_store(self) -> GatewayStore:
        return await GatewayStore.open(
            self.dsn,
            self.sqlite("gateway.db"),
            owner=GATEWAY_ID,
            schema=self.store_schema(GATEWAY_ID),
        )

    async def disclosure_requests(self) -> DisclosureRequests:
        """The gateway's 2013 / 2024 Protocol request tracker (the gateway's store)."""
        return await DisclosureRequests.open(
            self.dsn,
            self.sqlite(REQUESTS_FILE),
            owner=GATEWAY_ID,
            schema=self.store_schema(GATEWAY_ID),
        )

    async def queue_store(self, party_id: str) -> QueueStore:
        """A receiving party's queue (an LA, a school or a police force): queue-<party>.db."""
        return await QueueStore.open(
            self.dsn,
            self.sqlite(f"queue-{party_id}.db"),
            owner=party_id,
            schema=self.store_schema(party_id),
        )

    async def queue_reader(self, party_id: str, store: QueueStore) -> QueueReader:
        trust = self.trust()
        opener = Opener(self.identity(party_id, trust), trust)
        return QueueReader(store=store, opener=opener, contract=self.contract())


def exchange_topics(trust: TrustDirectory, kafka: KafkaSettings) -> dict[str, int]:
    """Every topic the exchange uses, with its partition count."""
    topics: dict[str, int] = {schema_registry.TOPIC: 1, REPLAY_TOPIC: 1}
    for connector in trust.inbound_connectors():  # connectors, and agencies that are their own
        topics[inbound_topic(connector)] = kafka.inbound_partitions
    for party in trust.parties():
        if party.kind == "gateway":
            continue
        owner = trust.outbound_connector(party.id)  # the party, or the connector carrying it
        if owner != party.id:  # its connector's outbound topics carry it (sgx.kafka.outbound)
            topics[receipts_topic(owner)] = kafka.inbound_partitions
            if party.kind in DELIVERY_KINDS:
                topics[delivery_topic(owner)] = kafka.delivery_partitions
            continue
        topics[receipts_topic(party.id)] = 1
        if party.kind in DELIVERY_KINDS:
            topics[delivery_topic(party.id)] = kafka.delivery_partitions
        if party.kind == "local_authority":
            topics[allocations_topic(party.id)] = 1  # one LA's updates in one total order
    return topics


async def create_topics(rt: Runtime) -> None:
    await ensure_topics(rt.kafka, exchange_topics(rt.trust(), rt.kafka))


@contextlib.asynccontextmanager
async def serving_metrics(
    rt: Runtime, registry: CollectorRegistry, readiness: Readiness | None = None
) -> AsyncIterator[MetricsServer | None]:
    if rt.exchange.metrics_port < 0:
        yield None
        return
    server = MetricsServer(
        registry, rt.exchange.metrics_host, rt.exchange.metrics_port, readiness=readiness
    )
    await server.start()
    log.info("metrics on http://%s:%d/metrics", server.host, server.port)
    try:
        yield server
    finally:
        await server.stop()


async def _started(stack: contextlib.AsyncExitStack, client: _Client) -> _Client:
    stack.push_async_callback(client.stop)
    return client


async def run_gateway(
    rt: Runtime,
    stop: asyncio.Event,
    registry: CollectorRegistry | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the gateway until ``stop`` is set."""
    registry = registry or CollectorRegistry()
    trust, contract, pseudonyms = rt.trust(), rt.contract(), rt.pseudonyms()
    identity = rt.identity(GATEWAY_ID, trust)
    partnership = Partnership.load(rt.exchange.agreement_file, contract, trust)
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(await rt.gateway_store())
        requests = await stack.enter_async_context(await rt.disclosure_requests())
        allocations = AllocationDirectory(store.engine, pseudonyms, schema=store.schema)
        consents = ConsentBook(store.engine, schema=store.schema)
        information = InformationBook(store.engine, schema=store.schema)
        calendar = CalendarSettings().calendar()
        feed = AllocationFeed(
            directory=allocations,
            opener=Opener(identity, trust),
            contract=contract,
            trust=trust,
            consumer=await _started(stack, await start_consumer(rt.kafka, [], group_id=None)),
            # never fetches: asks the ends of the allocation topics without queueing
            # behind the feed's held fetch
            offsets=await _started(stack, await start_consumer(rt.kafka, [], group_id=None)),
        )
        # Ready only once the directory holds every allocation published so far: the
        # group is joined after that, so nothing is judged before.
        group = await partitions_of(rt.kafka, group_topics(trust))  # one metadata request
        feed_topics = set(allocation_topics(trust))
        await feed.start([tp for tp in group if tp.topic in feed_topics])
        log.info("allocation directory caught up: %d allocation(s)", len(allocations))
        referral_book = ReferralBook(requests.engine, schema=requests.schema)
        judge = Judge(
            opener=Opener(identity, trust),
            contract=contract,
            partnership=partnership,
            feed=feed,
            store=store,
            pseudonyms=pseudonyms,
            trust=trust,
            requests=requests,
            consents=consents,
            referrals=ReferralClock(
                partnership=partnership,
                calendar=calendar,
                book=referral_book,
            ),
            information=InformationJudge(
                contract=contract,
                partnership=partnership,
                trust=trust,
                calendar=calendar,
                pseudonyms=pseudonyms,
                book=information,
            ),
        )
        await stack.enter_async_context(watching_trust(rt, trust, [identity], registry))
        metrics = GatewayMetrics(registry)
        metrics.group_partitions.set(len(group))
        metrics.nhs_number_target.set(rt.exchange.nhs_number_target)
        checkpoints = await Checkpoints(store.engine, schema=store.schema).open()
        claims = ChainClaims(store, instance_id(), metrics)
        # No linger: a batch's records are all sent at once and its acks awaited at once
        # (gateway.service), so lingering only delayed every batch by SGX_KAFKA_LINGER_MS.
        producer = await _started(stack, await start_producer(rt.kafka, linger_ms=0))
        # Readers of an older release find the schemas this gateway writes in the registry.
        await schema_topic.publish(producer, identity, contract, GATEWAY_WRITES)
        consumer = await _started(
            stack,
            await start_consumer(
                rt.kafka, group_topics(trust), group_id=GATEWAY_GROUP, listener=claims
            ),
        )
        gateway = Gateway(
            judge=judge,
            feed=feed,
            store=store,
            consents=consents,
            identity=identity,
            trust=trust,
            contract=contract,
            consumer=consumer,
            producer=producer,
            metrics=metrics,
            claims=claims,
            information=information,
        )
        readiness = Readiness()
        readiness.add("allocation directory", functools.partial(_caught_up, feed))

        async def checkpoint() -> None:  # the heads of the chains this instance owns
            await checkpoints.take(store, identity, list(claims.epochs))

        await stack.enter_async_context(
            gateway_monitors(
                store=store,
                requests=requests,
                consents=consents,
                # the directory this gateway runs on, refreshed in place by its watcher: a
                # load from disk at every refresh took 4.2 s at 25,000 agencies
                trust=lambda: trust,
                consumer=consumer,
                referrals=referral_book,
                registry=registry,
                readiness=readiness,
                checkpoint=checkpoint,
                checkpoint_interval_s=rt.exchange.checkpoint_interval_s,
            )
        )
        overdue = InformationMonitor(information, InformationMetrics(registry))
        interval = MonitorSettings().interval_s
        await stack.enter_async_context(
            refreshing("information requests", overdue.refresh, interval)
        )
        try:
            await _serve(rt, registry, ready, gateway.run(stop), readiness)
        finally:
            await checkpoint()  # the last heads this instance wrote, signed before it goes


def watching_trust(
    rt: Runtime, trust: TrustDirectory, identities: list[Identity], registry: CollectorRegistry
) -> contextlib.AbstractAsyncContextManager[None]:
    """Keep ``trust`` and ``identities`` up to date with the directory while in the block."""
    watcher = TrustWatcher(
        rt.exchange.trust_dir,
        trust,
        identities,
        TrustMetrics(registry),
        interval_s=rt.exchange.trust_reload_s,
    )
    return watching(watcher)


async def _caught_up(feed: AllocationFeed) -> None:
    if not feed.ready:
        raise RuntimeError("the allocation directory is still loading")


def instance_id() -> str:
    """This process's name as an audit chain's writer: host, process id and a nonce (a
    restarted process with a reused pid is still another writer)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _receiving_party(trust: TrustDirectory, party_id: str) -> str:
    kind = trust.party(party_id).kind
    if kind not in DELIVERY_KINDS:
        kinds = ", ".join(sorted(DELIVERY_KINDS))
        raise ConfigError(f"party {party_id!r} is a {kind}: the gateway delivers only to {kinds}")
    return kind


def consumer_topics(trust: TrustDirectory, party_id: str, kind: str) -> list[str]:
    """What a party's delivery consumer reads: its delivery topic (its connector's, for a
    school or force a connector carries), and for a local authority its receipts topic
    too, whose answers it keeps as rows (:mod:`consumers.answer_rows`; the ACL plan grants
    the read)."""
    topics = [delivery_topic_of(trust, party_id)]
    if kind == "local_authority":
        topics.append(receipts_topic(party_id))
    return topics


async def run_consumer(
    rt: Runtime,
    party_id: str,
    stop: asyncio.Event,
    registry: CollectorRegistry | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run one party's delivery consumer (an LA, a school, a police force) until ``stop``."""
    registry = registry or CollectorRegistry()
    trust = rt.trust()
    kind = _receiving_party(trust, party_id)
    metrics = ConsumerMetrics(registry)
    identity = rt.identity(party_id, trust)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(watching_trust(rt, trust, [identity], registry))
        store = await stack.enter_async_context(await rt.queue_store(party_id))
        # its connector's delivery topic, or its own; its own group either way
        topic = delivery_topic_of(trust, party_id)
        consumer = await _started(
            stack,
            await start_consumer(
                rt.kafka, consumer_topics(trust, party_id, kind), group_id=delivery_group(party_id)
            ),
        )
        service = DeliveryConsumer(
            opener=Opener(identity, trust),
            contract=rt.contract(),
            store=store,
            consumer=consumer,
            metrics=metrics,
            registry=schema_topic.SchemaRegistry(rt.kafka, trust, rt.contract()),
            party=None if topic == delivery_topic(party_id) else party_id,
        )
        readiness = Readiness()
        await stack.enter_async_context(
            consumer_monitors(
                store=store,
                consumer=consumer,
                registry=registry,
                readiness=readiness,
                queued=metrics.queued,
            )
        )
        await _serve(rt, registry, ready, service.run(stop), readiness)


async def _serve(
    rt: Runtime,
    registry: CollectorRegistry,
    ready: asyncio.Event | None,
    service: Coroutine[Any, Any, None],
    readiness: Readiness | None = None,
) -> None:
    """Serve metrics, say the service is ready, and run it to its end."""
    async with serving_metrics(rt, registry, readiness):
        heap.settle()
        if ready is not None:
            ready.set()
        await service


@contextlib.asynccontextmanager
async def publisher(
    rt: Runtime, agency_id: str, registry: CollectorRegistry | None = None
) -> AsyncIterator[Publisher]:
    """A started publisher for ``agency_id``."""
    trust = rt.trust()
    producer = await start_producer(rt.kafka)
    heap.settle()
    try:
        yield Publisher(
            identity=rt.identity(agency_id, trust),
            trust=trust,
            contract=rt.contract(),
            pseudonyms=rt.pseudonyms(),
            producer=producer,
            metrics=ProducerMetrics(registry or CollectorRegistry()),
            connector=rt.exchange.connector,
        )
    finally:
        await producer.stop()
