"""An exchange under test: a fresh real broker, trust directory, gateway and consumer.

The broker is chosen by ``SGX_TEST_BROKER``: ``kafka`` (the default, what production
runs) is the flow tests' Apache Kafka (``tests/kafka_broker.py``), started once per
session and emptied of every topic before each test; ``tansu`` gives each test an embedded
Tansu broker of its own. Either way topics, offsets and queues never leak between tests,
and if the broker cannot start, the test fails. A test of the embedded default itself (the
demo path, a broker outage) asks for ``broker="tansu"``.
The local authority's consumer starts by default; a school's (key adult) or a police
force's (SPOC) with ``start_consumer(party=...)``. Queue helpers take ``party`` (default:
the LA).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from consumers.reader import QueueView
from gateway.store import GatewayStore
from safeguard.parties import DEMO_CONNECTORS, DEMO_PARTIES, LA
from safeguard.runtime import Runtime, create_topics, publisher, run_consumer, run_gateway
from sgx.kafka.embedded import EmbeddedBroker
from sgx.kafka.wiring import GATEWAY_GROUP, delivery_group
from sgx.keys.connectors import Connector
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import PartySpec
from sgx.settings import ExchangeSettings, KafkaSettings, StoreSettings
from tests.conftest import kafka_test_settings
from tests.kafka_broker import broker_kind, emptied, flow_kafka

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 30.0
) -> None:
    """Wait until ``check()`` (a coroutine function, or a plain predicate) holds."""
    deadline = time.monotonic() + timeout

    async def holds() -> bool:
        result = check()
        return await result if inspect.isawaitable(result) else result

    while not await holds():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Exchange:
    rt: Runtime
    broker: EmbeddedBroker | None = None  # the broker running_exchange started for it
    gateway_metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    consumer_metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    party_metrics: dict[str, CollectorRegistry] = field(default_factory=dict)
    # each party's own broker settings (its SCRAM principal), where the broker checks who
    # connects (tests/integration/test_secured_flow.py); None: everyone shares rt.kafka
    principals: Callable[[str], KafkaSettings] | None = None
    _stops: dict[str, asyncio.Event] = field(default_factory=dict)
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _background: list[asyncio.Task[Any]] = field(default_factory=list)

    def kafka_env(self) -> dict[str, str]:
        """:func:`kafka_env` of this exchange's broker, for a child process or CliRunner."""
        return kafka_env(self.rt.kafka.bootstrap_servers, idempotence=self.rt.kafka.idempotence)

    def as_principal(self, principal: str) -> Runtime:
        """The runtime as ``principal`` connects: its own broker settings, if any."""
        if self.principals is None:
            return self.rt
        return dataclasses.replace(self.rt, kafka=self.principals(principal))

    def _with_port(self, port: int, principal: str) -> Runtime:
        rt = self.as_principal(principal)
        exchange = rt.exchange.model_copy(update={"metrics_port": port})
        return dataclasses.replace(rt, exchange=exchange)

    async def start_gateway(
        self,
        metrics_port: int = -1,
        name: str = "gateway",
        registry: CollectorRegistry | None = None,
    ) -> None:
        """Start a gateway instance: ``name`` and ``registry`` for a second one in the group."""
        rt = self._with_port(metrics_port, GATEWAY_GROUP)  # its principal is named so too
        metrics = self.gateway_metrics if registry is None else registry
        await self._start(name, lambda stop, ready: run_gateway(rt, stop, metrics, ready))

    async def start_consumer(
        self, metrics_port: int = -1, party: str = LA, principal: str | None = None
    ) -> None:
        """Start ``party``'s consumer: named "consumer" for the LA, else "consumer:<party>".
        It connects as ``principal`` (a carried party's connector), else as its own."""
        rt = self._with_port(metrics_port, principal or delivery_group(party))
        if party == LA:
            name, registry = "consumer", self.consumer_metrics
        else:
            name = f"consumer:{party}"
            registry = self.party_metrics.setdefault(party, CollectorRegistry())
        await self._start(name, lambda stop, ready: run_consumer(rt, party, stop, registry, ready))

    async def _start(
        self, name: str, run: Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]]
    ) -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run(stop, ready))
        self._stops[name], self._tasks[name] = stop, task
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            del self._stops[name], self._tasks[name]  # it stopped: nothing to stop later
            task.result()  # re-raise why it stopped
        assert waiter in done, f"{name} did not become ready"

    async def stop(self, name: str) -> None:
        self._stops[name].set()
        await self._tasks.pop(name)

    async def ended(self, name: str, timeout: float = 30) -> None:
        """Wait for ``name`` to end by itself (a crash the test caused): re-raises why."""
        task = self._tasks[name]
        await asyncio.wait({task}, timeout=timeout)
        assert task.done(), f"{name} did not end within {timeout:g}s"
        del self._stops[name], self._tasks[name]
        task.result()

    def background(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``work`` (a publisher, say) beside the test; cancelled when the exchange
        ends, so a test that fails first leaves nothing publishing into the next test's
        broker (a publisher left running once filled the next tests' topics in CI)."""
        task = asyncio.create_task(work)
        self._background.append(task)
        return task

    async def stop_all(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        for name in list(self._tasks):
            await self.stop(name)

    async def publish(self, agency: str, name: str, record: dict[str, Any]) -> uuid.UUID:
        async with publisher(self.as_principal(agency), agency) as pub:
            return await pub.publish(name, record)

    async def publish_request(self, record: dict[str, Any], la: str = LA) -> uuid.UUID:
        async with publisher(self.as_principal(la), la) as pub:
            return await pub.publish_request(record)

    async def allocate(self, update: dict[str, Any], sender: str | None = None) -> None:
        """Publish an allocation update (as its own LA unless ``sender``) and wait until the
        gateway has judged it (applied, or refused)."""

        def judged_count() -> float:
            return sum(self.gateway_count("allocation_update", o) for o in ("applied", "refused"))

        before = judged_count()
        la = sender or str(update["la_id"])
        async with publisher(self.as_principal(la), la) as pub:
            await pub.publish_allocations(update)

        async def judged() -> bool:
            return judged_count() > before

        await eventually(judged, "the gateway to judge allocations")

    def gateway_count(self, type_: str, outcome: str) -> float:
        value = self.gateway_metrics.get_sample_value(
            "sgx_gateway_notifications_total", {"type": type_, "outcome": outcome}
        )
        return value or 0.0

    def quarantined(self, reason: str) -> float:
        return (
            self.gateway_metrics.get_sample_value(
                "sgx_gateway_quarantined_total", {"reason": reason}
            )
            or 0.0
        )

    async def queue(self, worker: str, party: str = LA) -> list[QueueView]:
        async with await self.rt.queue_store(party) as store:
            reader = await self.rt.queue_reader(party, store)
            return await reader.list(worker, include_acked=True)

    async def queue_rows(self, party: str = LA) -> int:
        async with await self.rt.queue_store(party) as store:
            return await store.count()

    async def wait_rows(self, n: int, timeout: float = 30.0, party: str = LA) -> None:
        async def enough() -> bool:
            return await self.queue_rows(party) >= n

        await eventually(enough, f"{n} queue rows of {party}", timeout)

    async def wait_items(self, worker: str, n: int, party: str = LA) -> list[QueueView]:
        """``worker``'s queue (of ``party``) once it holds at least ``n`` items."""

        async def arrived() -> bool:
            return len(await self.queue(worker, party)) >= n

        await eventually(arrived, f"{n} items in {worker}'s queue")
        return await self.queue(worker, party)

    @asynccontextmanager
    async def gateway_store(self) -> AsyncIterator[GatewayStore]:
        async with await self.rt.gateway_store() as store:
            yield store


def agreement_with_defaults(folder: Path, default_las: dict[str, list[str]]) -> Path:
    """The repository's partnership-wide agreement with these senders' default LAs (for
    parties other than the demo's, whose defaults the repository's file names)."""
    text = ExchangeSettings().agreement_file.read_text(encoding="utf-8")
    text = text[: text.index("[default_las]")]
    lines = [f"{sender} = {json.dumps(las)}" for sender, las in default_las.items()]
    path = folder / "agreement.toml"
    path.write_text(text + "[default_las]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_runtime(
    home: Path,
    bootstrap: str,
    dsn: str | None = None,
    schema: str | None = None,
    agreement: Path | None = None,
    idempotence: bool = True,
) -> Runtime:
    exchange = ExchangeSettings(home=home, metrics_port=-1)
    if agreement is not None:
        exchange = exchange.model_copy(update={"agreement_file": agreement})
    return Runtime(
        exchange=exchange,
        kafka=kafka_test_settings(bootstrap, idempotence=idempotence),
        store=StoreSettings(dsn=SecretStr(dsn) if dsn else None, pg_schema=schema),
    )


def kafka_env(bootstrap: str, *, idempotence: bool | None = None) -> dict[str, str]:
    """``SGX_*`` variables giving a child process or CliRunner the test broker and timings
    (``idempotence`` off for the embedded broker; by default as ``SGX_TEST_BROKER`` says).

    The timings are those of :func:`tests.conftest.kafka_test_settings`; metrics are off.
    """
    kafka = kafka_test_settings(bootstrap)
    return {
        "SGX_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "SGX_KAFKA_IDEMPOTENCE": str(
            broker_kind() == "kafka" if idempotence is None else idempotence
        ).lower(),
        "SGX_KAFKA_FETCH_MAX_WAIT_MS": str(kafka.fetch_max_wait_ms),
        "SGX_KAFKA_SESSION_TIMEOUT_MS": str(kafka.session_timeout_ms),
        "SGX_KAFKA_HEARTBEAT_INTERVAL_MS": str(kafka.heartbeat_interval_ms),
        "SGX_METRICS_PORT": "-1",
    }


_on_kafka: list[Path] = []  # the home of the exchange running on the shared Apache Kafka


@asynccontextmanager
async def empty_broker(
    home: Path, kind: str | None = None
) -> AsyncIterator[tuple[str, EmbeddedBroker | None]]:
    """(bootstrap, the embedded broker if one was started) of an empty broker."""
    if broker_kind(kind) == "tansu":
        async with EmbeddedBroker(home) as embedded:
            yield embedded.bootstrap_servers, embedded
        return
    if _on_kafka:
        raise AssertionError(
            "a second exchange on the shared Apache Kafka while one runs there (a module's "
            'world?): they would share topics and groups; give it broker="tansu"'
        )
    kafka = await asyncio.to_thread(flow_kafka)
    await emptied(kafka.plaintext)
    _on_kafka.append(home)
    try:
        yield kafka.plaintext, None
    finally:
        _on_kafka.remove(home)


@asynccontextmanager
async def running_exchange(
    home: Path,
    *,
    dsn: str | None = None,
    schema: str | None = None,
    consumer: bool = True,
    parties: Sequence[PartySpec] = DEMO_PARTIES,
    connectors: Sequence[Connector] | None = None,
    metrics_ports: tuple[int, int] = (-1, -1),
    agreement: Path | None = None,
    broker: str | None = None,
) -> AsyncIterator[Exchange]:
    """A broker, trust directory, topics, gateway and (optionally) consumer, stopped on exit.

    ``metrics_ports``: where the gateway and the consumer serve /metrics (-1: nowhere).
    ``agreement``: the agreement file, if not the repository's (which names the demo
    parties' default LAs). ``broker``: ``kafka`` or ``tansu``, if not ``SGX_TEST_BROKER``'s.
    ``connectors``: the trust directory's (default: the demo's, with the demo parties).
    """
    gateway_port, consumer_port = metrics_ports
    if connectors is None:
        connectors = DEMO_CONNECTORS if parties is DEMO_PARTIES else ()
    init_trust(home / "trust", parties, connectors)
    async with empty_broker(home, broker) as (bootstrap, embedded):
        rt = make_runtime(home, bootstrap, dsn, schema, agreement, idempotence=embedded is None)
        exchange = Exchange(rt, broker=embedded)
        await create_topics(exchange.rt)
        try:
            await exchange.start_gateway(gateway_port)
            if consumer:
                await exchange.start_consumer(consumer_port)
            yield exchange
        finally:
            await exchange.stop_all()
