"""Composition of an agency's producer outbox: store, publisher, relay and receipt listener.

:func:`running_outbox` opens the agency's outbox store (SQLite ``outbox-<agency>.db``
under the home directory, or PostgreSQL when a DSN is set), starts a Kafka producer and
a receipts consumer, and runs the relay and the receipt listener as tasks for as long as
the block lasts. On exit both are stopped: the relay finishes (or times out) the batch in
hand, the listener commits what it recorded; anything not yet acknowledged stays PENDING
in the outbox and is sent by the next run.

The broker must answer when the block is entered (the Kafka clients are started then);
once running, an outage only makes the relay back off while :meth:`Outbox.add` goes on
keeping notifications.

A command that ingests a file does not need the broker to keep what it read:
:func:`offline_outbox` validates and keeps notifications with no Kafka client at all, and
:func:`relay_pending` then runs the relay until the broker has taken every pending entry
or a time limit passes, and says how many are still pending (they stay in the outbox for
the next ``safeguard producer relay`` or ingest).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from producers.consent_requests import ConsentRequests
from producers.outbox import Outbox, OutboxStore
from producers.publisher import Publisher
from producers.receipts import ReceiptListener, ReceiptRecorder
from producers.relay import OutboxRelay, RelayOptions
from safeguard.runtime import Runtime
from sgx.errors import TransportError
from sgx.kafka.schema_topic import SchemaRegistry
from sgx.kafka.wiring import receipts_group, start_consumer, start_producer
from sgx.keys.identity import Identity
from sgx.keys.trust import TrustDirectory
from sgx.ops.metrics import ProducerMetrics
from sgx.wire.contract import Contract
from sgx.wire.envelope import Opener

log = logging.getLogger(__name__)


async def open_outbox_store(rt: Runtime, agency: str) -> OutboxStore:
    """The agency's outbox store (PostgreSQL if a DSN is set, else its own SQLite file)."""
    return await OutboxStore.open(
        rt.dsn, rt.sqlite(f"outbox-{agency}.db"), owner=agency, schema=rt.store_schema(agency)
    )


def receipt_recorder(
    rt: Runtime,
    store: OutboxStore,
    identity: Identity,
    trust: TrustDirectory,
    contract: Contract,
) -> ReceiptRecorder:
    """What the agency's receipts topic means to its outbox: receipts on their entries,
    forwarded consent requests kept (the listener's, and ``producer consent list``'s)."""
    return ReceiptRecorder(
        store=store,
        agency=identity.party_id,
        opener=Opener(identity, trust),
        contract=contract,
        registry=SchemaRegistry(rt.kafka, trust, contract),
        consents=ConsentRequests(store.engine, schema=store.schema),
        trust=trust,
    )


@contextlib.asynccontextmanager
async def offline_outbox(
    rt: Runtime, agency: str, *, registry: CollectorRegistry | None = None
) -> AsyncIterator[Outbox]:
    """An Outbox that validates and keeps notifications without touching the broker.

    Its publisher only prepares (validates, encodes, pseudonymises the key); its Kafka
    producer is never started, so no connection is made. A relay sends the entries later.
    """
    trust = rt.trust()
    unstarted = AIOKafkaProducer(bootstrap_servers=rt.kafka.bootstrap_servers)
    try:
        preparer = Publisher(
            identity=rt.identity(agency, trust),
            trust=trust,
            contract=rt.contract(),
            pseudonyms=rt.pseudonyms(),
            producer=unstarted,
            metrics=ProducerMetrics(registry or CollectorRegistry()),
            connector=rt.exchange.connector,
        )
        async with await open_outbox_store(rt, agency) as store:
            yield Outbox(store, preparer, agency)
    finally:
        await unstarted.stop()  # closes the unstarted client's resources


@dataclass(frozen=True, slots=True)
class Relayed:
    """What :func:`relay_pending` achieved: entries the broker took, entries still pending."""

    sent: int
    pending: int
    problem: str | None = None  # why some are still pending


async def relay_pending(
    rt: Runtime,
    agency: str,
    *,
    timeout: float,
    registry: CollectorRegistry | None = None,
    poll: float = 0.05,
) -> Relayed:
    """Relay the agency's pending entries until none is left or ``timeout`` seconds pass.

    Does not contact the broker when nothing is pending. A broker that cannot be reached
    is not an error here: the entries stay PENDING and the result says why.
    """
    async with await open_outbox_store(rt, agency) as store:
        before = (await store.depth(agency)).pending
        if before == 0:
            return Relayed(0, 0)
        problem = await _relay_until_empty(rt, agency, store, timeout, registry, poll)
        after = (await store.depth(agency)).pending
    return Relayed(max(before - after, 0), after, problem if after else None)


async def _relay_until_empty(
    rt: Runtime,
    agency: str,
    store: OutboxStore,
    timeout: float,
    registry: CollectorRegistry | None,
    poll: float,
) -> str | None:
    deadline = time.monotonic() + timeout
    send_timeout = max(min(timeout, RelayOptions().send_timeout), 1.0)
    options = RelayOptions(send_timeout=send_timeout, backoff_cap=max(timeout / 4, 0.2))
    try:
        async with outbox_services(rt, agency, registry=registry, options=options, store=store):
            while (await store.depth(agency)).pending:
                if time.monotonic() >= deadline:
                    return f"the broker did not take them within {timeout:g}s"
                await asyncio.sleep(poll)
    except TransportError as exc:
        return f"the broker cannot be reached ({exc})"
    return None


@contextlib.asynccontextmanager
async def running_outbox(
    rt: Runtime,
    agency: str,
    *,
    registry: CollectorRegistry | None = None,
    options: RelayOptions | None = None,
) -> AsyncIterator[Outbox]:
    """An Outbox for ``agency`` with its relay and receipt listener running as tasks.

    On exit both are stopped and awaited; if one of them failed, its error is raised.
    """
    async with outbox_services(rt, agency, registry=registry, options=options) as (outbox, _):
        yield outbox


@contextlib.asynccontextmanager
async def outbox_services(
    rt: Runtime,
    agency: str,
    *,
    registry: CollectorRegistry | None = None,
    options: RelayOptions | None = None,
    store: OutboxStore | None = None,
) -> AsyncIterator[tuple[Outbox, list[asyncio.Task[None]]]]:
    """Like :func:`running_outbox`, also yielding the relay and listener tasks to watch.

    A task that ends before the block does has failed (its error is raised on exit).
    ``store`` is the agency's outbox store if the caller holds it open already (it stays
    open); otherwise it is opened here and closed on exit.
    """
    trust, contract = rt.trust(), rt.contract()
    identity = rt.identity(agency, trust)
    metrics = ProducerMetrics(registry or CollectorRegistry())
    async with contextlib.AsyncExitStack() as stack:
        if store is None:
            store = await stack.enter_async_context(await open_outbox_store(rt, agency))
        producer = await start_producer(rt.kafka)
        stack.push_async_callback(producer.stop)
        recorder = receipt_recorder(rt, store, identity, trust, contract)
        # its connector's receipts topic, or its own; in the agency's own group either way
        consumer = await start_consumer(rt.kafka, [recorder.topic], group_id=receipts_group(agency))
        stack.push_async_callback(consumer.stop)
        publisher = Publisher(
            identity=identity,
            trust=trust,
            contract=contract,
            pseudonyms=rt.pseudonyms(),
            producer=producer,
            metrics=metrics,
            connector=rt.exchange.connector,
        )
        outbox = Outbox(store, publisher, agency)
        relay = OutboxRelay(outbox, publisher, metrics=metrics, options=options)
        listener = ReceiptListener(recorder, consumer)
        async with _running(relay.run, listener.run) as tasks:
            yield outbox, tasks


async def serve_outbox(
    rt: Runtime,
    agency: str,
    stop: asyncio.Event,
    *,
    registry: CollectorRegistry | None = None,
    store: OutboxStore | None = None,
) -> None:
    """Run the relay and the receipt listener until ``stop`` is set or one of them fails."""
    async with outbox_services(rt, agency, registry=registry, store=store) as (_, tasks):
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()


_Service = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@contextlib.asynccontextmanager
async def _running(*services: _Service) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run ``services`` as tasks; on exit stop them and wait; a failed one re-raises."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(service(stop)) for service in services]
    try:
        yield tasks
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            log.error("outbox service failed: %r", failure)
    if failures:
        raise failures[0]
