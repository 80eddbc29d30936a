"""Composition: builds each role's service from settings, trust directory and stores.

This is the only place that knows all three roles; each ``run_*`` coroutine runs one
long-lived service until its stop event is set, then finishes the batch in hand, commits
and closes everything it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from consumers.queue import QueueStore
from consumers.reader import QueueReader
from consumers.service import DeliveryConsumer
from gateway.agreement import Agreement
from gateway.allocations import AllocationDirectory
from gateway.decide import Judge
from gateway.service import Gateway, inbound_topics
from gateway.store import GatewayStore
from producers.publisher import Publisher
from sgx.contract import Contract
from sgx.envelope import Opener
from sgx.kafka import (
    delivery_topic,
    ensure_topics,
    inbound_topic,
    receipts_topic,
    start_consumer,
    start_producer,
)
from sgx.metrics import ConsumerMetrics, GatewayMetrics, MetricsServer, ProducerMetrics
from sgx.pseudonym import Pseudonymiser
from sgx.settings import ExchangeSettings, KafkaSettings, StoreSettings
from sgx.trust import Identity, TrustDirectory

log = logging.getLogger(__name__)

GATEWAY_ID = "gateway"


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

    def identity(self, party_id: str) -> Identity:
        return Identity.load(self.exchange.trust_dir, party_id)

    def contract(self) -> Contract:
        return Contract.load(self.exchange.schema_dir)

    def pseudonyms(self) -> Pseudonymiser:
        return Pseudonymiser.load(self.exchange.trust_dir)

    def sqlite(self, name: str) -> Path:
        self.exchange.home.mkdir(parents=True, exist_ok=True)
        return self.exchange.home / name

    @property
    def pg_schema(self) -> str | None:
        return self.store.pg_schema if self.dsn else None

    async def gateway_store(self) -> GatewayStore:
        return await GatewayStore.open(self.dsn, self.sqlite("gateway.db"), schema=self.pg_schema)

    async def queue_store(self, la_id: str) -> QueueStore:
        return await QueueStore.open(
            self.dsn, self.sqlite(f"queue-{la_id}.db"), schema=self.pg_schema
        )

    async def queue_reader(self, la_id: str, store: QueueStore) -> QueueReader:
        opener = Opener(self.identity(la_id), self.trust())
        return QueueReader(store=store, opener=opener, contract=self.contract())


def exchange_topics(trust: TrustDirectory, kafka: KafkaSettings) -> dict[str, int]:
    """Every topic the exchange uses, with its partition count."""
    topics: dict[str, int] = {}
    for party in trust.parties():
        if party.kind == "gateway":
            continue
        topics[inbound_topic(party.id)] = kafka.inbound_partitions
        topics[receipts_topic(party.id)] = 1
        if party.kind == "local_authority":
            topics[delivery_topic(party.id)] = kafka.delivery_partitions
    return topics


async def create_topics(rt: Runtime) -> None:
    await ensure_topics(rt.kafka, exchange_topics(rt.trust(), rt.kafka))


@contextlib.asynccontextmanager
async def serving_metrics(
    rt: Runtime, registry: CollectorRegistry
) -> AsyncIterator[MetricsServer | None]:
    if rt.exchange.metrics_port < 0:
        yield None
        return
    server = MetricsServer(registry, rt.exchange.metrics_host, rt.exchange.metrics_port)
    await server.start()
    log.info("metrics on http://%s:%d/metrics", server.host, server.port)
    try:
        yield server
    finally:
        await server.stop()


async def run_gateway(
    rt: Runtime,
    stop: asyncio.Event,
    registry: CollectorRegistry | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the gateway until ``stop`` is set."""
    registry = registry or CollectorRegistry()
    trust, contract = rt.trust(), rt.contract()
    identity = rt.identity(GATEWAY_ID)
    pseudonyms = rt.pseudonyms()
    agreement = Agreement.load(rt.exchange.agreement_file, contract)
    store = await rt.gateway_store()
    try:
        allocations = AllocationDirectory(store.engine, pseudonyms, schema=rt.pg_schema)
        await allocations.load()
        metrics = GatewayMetrics(registry)
        judge = Judge(
            opener=Opener(identity, trust),
            contract=contract,
            agreement=agreement,
            allocations=allocations,
            store=store,
            pseudonyms=pseudonyms,
        )
        producer = await start_producer(rt.kafka)
        try:
            consumer = await start_consumer(rt.kafka, inbound_topics(trust), group_id="sgx-gateway")
            try:
                gateway = Gateway(
                    judge=judge,
                    store=store,
                    identity=identity,
                    trust=trust,
                    contract=contract,
                    consumer=consumer,
                    producer=producer,
                    metrics=metrics,
                )
                async with serving_metrics(rt, registry):
                    if ready is not None:
                        ready.set()
                    await gateway.run(stop)
            finally:
                await consumer.stop()
        finally:
            await producer.stop()
    finally:
        await store.close()


async def run_consumer(
    rt: Runtime,
    la_id: str,
    stop: asyncio.Event,
    registry: CollectorRegistry | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run one local authority's delivery consumer until ``stop`` is set."""
    registry = registry or CollectorRegistry()
    trust, contract = rt.trust(), rt.contract()
    store = await rt.queue_store(la_id)
    try:
        consumer = await start_consumer(
            rt.kafka, [delivery_topic(la_id)], group_id=f"sgx-consumer-{la_id}"
        )
        try:
            service = DeliveryConsumer(
                opener=Opener(rt.identity(la_id), trust),
                contract=contract,
                store=store,
                consumer=consumer,
                metrics=ConsumerMetrics(registry),
            )
            async with serving_metrics(rt, registry):
                if ready is not None:
                    ready.set()
                await service.run(stop)
        finally:
            await consumer.stop()
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def publisher(
    rt: Runtime, agency_id: str, registry: CollectorRegistry | None = None
) -> AsyncIterator[Publisher]:
    """A started publisher for ``agency_id``."""
    producer = await start_producer(rt.kafka)
    try:
        yield Publisher(
            identity=rt.identity(agency_id),
            trust=rt.trust(),
            contract=rt.contract(),
            pseudonyms=rt.pseudonyms(),
            producer=producer,
            metrics=ProducerMetrics(registry or CollectorRegistry()),
        )
    finally:
        await producer.stop()
