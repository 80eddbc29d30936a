"""The full exchange: producer → gateway → consumer(s) → queue, in separate OS processes.

* **throughput**: a school's producer validates, encodes, seals and publishes ``--count``
  attendance updates as fast as it can; the gateway verifies, opens, validates, routes
  (each child is allocated, so every notification goes to a worker AND a supervisor),
  minimises, audits and re-seals; the consumer opens and inserts into the SQLite queue.
  Rate = notifications / (first publish → the consumer's commit of the last queue row).
* **latency**: the same, paced at ``--rate`` notifications/s; latency per queue row is
  queued_at - authored_at as the queue records them (same machine clock).

What flows is a :class:`Flow`: the parties, the allocations the LAs publish before the
timed phase, the notifications and the queue rows each receiving LA expects.
:class:`SingleLA` is the demo partnership's Camden with one school serving it only;
:mod:`benchmarks.partnership` has a partnership of many LAs on the same machinery.

Each stage's CPU per notification counts from the moment every stage is ready to its
"done" report: the gateway has applied every allocation update (and its CPU with no
traffic has been measured for :data:`IDLE_S`), each consumer has joined its group, and
the producer has built its records and connected; then the producer is told to start.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import operator
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from benchmarks.common import (
    Report,
    Result,
    Stages,
    broker_cpu_s,
    broker_cpu_used,
    cpu_per_message,
    host_cpu_s,
    paced,
    percentile,
    phase_broker,
)
from safeguard import samples
from safeguard.parties import DEMO_PARTIES, LA, SCHOOL
from safeguard.runtime import Runtime, create_topics, publisher, run_consumer, run_gateway
from sgx.domain.identifiers import make_nhs_number
from sgx.keys.connectors import Connector
from sgx.keys.key_admin import init_trust
from sgx.keys.trust import PartySpec
from sgx.settings import ExchangeSettings, KafkaSettings
from sgx.store.db import UtcDateTime
from sgx.wire import contract as c

CHILDREN = 1_000
CHUNK = 2_000  # the producer awaits acks every this many notifications
AGREEMENT_FILE = "agreement.toml"  # each phase's agreement, in its home directory
GATEWAY_NOTIFICATIONS = "sgx_gateway_notifications_total"
ALLOCATION_RECORDS = "sgx_gateway_allocation_records_total"
CONSUMER_NOTIFICATIONS = "sgx_consumer_notifications_total"
# How often a stage reads its metric to see whether it is done: the consumers' last
# report times the phase; the gateway's only stops it (and its polls are gateway CPU).
CONSUMER_POLL_S = 0.002
GATEWAY_POLL_S = 0.01
WAITING_REPORT_S = 5.0  # how often a stage not yet ready says what it waits for
IDLE_S = 2.0  # the gateway's CPU with no traffic is measured this long before "ready"
# Several gateways: the group's rebalances after the last one joined settle this long
# before the producer starts (and before CPU is counted).
REBALANCE_S = 4.0
APPLIED = {"type": "allocation_update", "outcome": "applied"}
DELIVERED = {"type": "attendance_update", "outcome": "delivered"}
QUEUED = {"type": "attendance_update", "outcome": "queued"}


# Called on a phase's home and runtime once it is prepared, before any stage starts (it may
# fill the stores with history: benchmarks.history); what it returns goes in the result.
History = Callable[[Path, Runtime], Awaitable[dict[str, Any]]]


class Flow(Protocol):
    """What one pipeline phase carries; picklable (each stage process gets a copy)."""

    @property
    def parties(self) -> tuple[PartySpec, ...]: ...

    @property
    def sender(self) -> str:
        """The school whose producer publishes the timed notifications."""
        ...

    @property
    def receivers(self) -> tuple[str, ...]:
        """The LAs that receive them, each with its consumer running."""
        ...

    def agreement(self) -> str:
        """The agreement file's text (its [default_las] must fit the parties)."""
        ...

    def allocation_updates(self) -> list[tuple[str, dict[str, Any]]]:
        """(sending LA, AllocationUpdate), published and applied before the timed phase."""
        ...

    def notifications(self, count: int) -> list[dict[str, Any]]:
        """The ``count`` attendance updates the sender publishes, in order."""
        ...

    def rows(self, count: int) -> dict[str, int]:
        """Queue rows each receiving LA holds once ``count`` notifications are routed."""
        ...


@dataclass(frozen=True)
class SingleLA:
    """Camden's 1,000 allocated children; Hillside Primary (serving Camden only) sends."""

    parties: tuple[PartySpec, ...] = DEMO_PARTIES
    sender: str = SCHOOL
    receivers: tuple[str, ...] = (LA,)

    def agreement(self) -> str:
        return ExchangeSettings().agreement_file.read_text(encoding="utf-8")

    def allocation_updates(self) -> list[tuple[str, dict[str, Any]]]:
        entries = [
            (child["nhs_number"], None, f"sw-{i % 10}", "Assessment", f"tm-{i % 3}")
            for i, child in enumerate(_children())
        ]
        return [(LA, samples.allocation_update(entries))]

    def notifications(self, count: int) -> list[dict[str, Any]]:
        children = _children()
        return [samples.attendance_update(children[i % CHILDREN]) for i in range(count)]

    def rows(self, count: int) -> dict[str, int]:
        return {LA: count * 2}  # the allocated worker and the supervisor


def phase_runtime(home: Path, settings: KafkaSettings) -> Runtime:
    """A stage's runtime over a phase's home (metrics off, the phase's agreement)."""
    exchange = ExchangeSettings(home=home, metrics_port=-1, agreement_file=home / AGREEMENT_FILE)
    return Runtime(exchange=exchange, kafka=settings)


def _children() -> list[dict[str, Any]]:
    return [samples.child(make_nhs_number(50_000 + i)) for i in range(CHILDREN)]


def consumer_name(flow: Flow, la: str) -> str:
    """The stage name of ``la``'s consumer ("consumer" when it is the only one)."""
    return "consumer" if len(flow.receivers) == 1 else f"consumer-{la}"


def sample_value(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    """One sample's value (0 if absent), collecting only the metric that holds it: a
    service's whole registry (lag per partition, key expiry per party) grows with the
    partnership, and collecting it all every poll would be counted as the service's CPU."""
    for metric in registry.restricted_registry([name]).collect():
        for sample in metric.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


async def _reached(
    registry: CollectorRegistry,
    name: str,
    labels: dict[str, str],
    target: float,
    poll_s: float = CONSUMER_POLL_S,
    report: Report | None = None,
) -> None:
    """Wait until the metric reaches ``target``; every few seconds, ``report`` what it
    has, so a stage that never gets ready says what it is waiting for."""
    said = time.monotonic()
    while (have := sample_value(registry, name, labels)) < target:
        if report is not None and time.monotonic() - said >= WAITING_REPORT_S:
            report("waiting", metric=name, labels=labels, have=have, want=target)
            said = time.monotonic()
        await asyncio.sleep(poll_s)


async def _watch(
    registry: CollectorRegistry,
    name: str,
    labels: dict[str, str],
    target: float,
    stop: asyncio.Event,
    report: Report,
    extra: Callable[[], dict[str, Any]] = dict,
    poll_s: float = CONSUMER_POLL_S,
) -> None:
    await _reached(registry, name, labels, target, poll_s)
    report("done", last_ns=time.time_ns(), **extra())
    stop.set()


class GcTime:
    """CPU seconds the cyclic garbage collector has taken since :meth:`reset`."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._started

    def reset(self) -> None:
        self.seconds = 0.0


async def _serve(
    report: Report,
    run: Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]],
    watcher: Callable[[asyncio.Event], Awaitable[None]],
    settled: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run a service; report "ready" once it has joined its group (and ``settled``)."""
    stop, ready = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(run(stop, ready))
    started = asyncio.ensure_future(ready.wait())
    await asyncio.wait([service, started], return_when=asyncio.FIRST_COMPLETED)
    if not started.done():  # the service ended before it was ready: say why, not hang
        started.cancel()
        await service
        raise RuntimeError("the service stopped before it was ready")
    await asyncio.sleep(1.5)  # the first group join (half the session timeout) happens here
    if settled is not None:
        waiting = asyncio.ensure_future(settled())
        await asyncio.wait([service, waiting], return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            await service  # the service ended first: raise why
            raise RuntimeError("the service stopped before it settled")
    report("ready", at_ns=time.time_ns())
    await asyncio.gather(service, watcher(stop))


async def gateway_stage(
    report: Report,
    home: str,
    settings: KafkaSettings,
    count: int,
    updates: int = 0,
    idle_s: float = 0.0,
    finish: EventType | None = None,
) -> None:
    """The gateway: "ready" once ``updates`` allocation updates are applied (so applying
    them is not counted) and, if ``idle_s``, its CPU measured for that long with no
    traffic; "done" once ``count`` notifications are delivered.

    One of several instances in the group (``finish`` given): "ready" once its directory
    holds the ``updates`` (the allocation topics' owner audits them, unseen here), and
    "done" when ``finish`` is set, with the notifications it delivered itself."""
    rt, registry, collector = phase_runtime(Path(home), settings), CollectorRegistry(), GcTime()
    idle: dict[str, Any] = {}

    async def settled() -> None:
        if finish is None:
            await _reached(
                registry, GATEWAY_NOTIFICATIONS, APPLIED, updates, GATEWAY_POLL_S, report
            )
        else:
            await _reached(registry, ALLOCATION_RECORDS, {}, updates, GATEWAY_POLL_S, report)
        if idle_s:
            cpu_s = time.process_time()
            await asyncio.sleep(idle_s)
            idle["idle_cpu_ms_per_s"] = round((time.process_time() - cpu_s) / idle_s * 1e3, 1)
        collector.reset()

    def extra() -> dict[str, Any]:
        return {"gc_s": collector.seconds, **idle}

    async def finished(stop: asyncio.Event) -> None:
        assert finish is not None
        await asyncio.to_thread(finish.wait)
        delivered = sample_value(registry, GATEWAY_NOTIFICATIONS, DELIVERED)
        report("done", last_ns=time.time_ns(), delivered=delivered, **extra())
        stop.set()

    def watcher(stop: asyncio.Event) -> Awaitable[None]:
        if finish is not None:
            return finished(stop)
        return _watch(
            registry, GATEWAY_NOTIFICATIONS, DELIVERED, count, stop, report, extra, GATEWAY_POLL_S
        )

    await _serve(
        report, lambda stop, ready: run_gateway(rt, stop, registry, ready), watcher, settled
    )


async def consumer_stage(
    report: Report, home: str, settings: KafkaSettings, rows: int, party: str = LA
) -> None:
    rt, registry = phase_runtime(Path(home), settings), CollectorRegistry()
    await _serve(
        report,
        lambda stop, ready: run_consumer(rt, party, stop, registry, ready),
        lambda stop: _watch(registry, CONSUMER_NOTIFICATIONS, QUEUED, rows, stop, report),
    )


async def consumers_stage(
    report: Report, home: str, settings: KafkaSettings, rows: dict[str, int]
) -> None:
    """The consumers of several LAs in one process, each its own service as in
    :func:`consumer_stage`; "done" once every LA's queue holds its rows."""
    rt = phase_runtime(Path(home), settings)
    registries = {la: CollectorRegistry() for la in rows}

    async def run(stop: asyncio.Event, ready: asyncio.Event) -> None:
        readies = {la: asyncio.Event() for la in rows}

        async def all_ready() -> None:
            await asyncio.gather(*(event.wait() for event in readies.values()))
            ready.set()

        services = [run_consumer(rt, la, stop, registries[la], readies[la]) for la in rows]
        await asyncio.gather(all_ready(), *services)

    async def watcher(stop: asyncio.Event) -> None:
        for la, expected in rows.items():
            await _reached(registries[la], CONSUMER_NOTIFICATIONS, QUEUED, expected)
        report("done", last_ns=time.time_ns())
        stop.set()

    await _serve(report, run, watcher)


async def producer_stage(
    report: Report,
    home: str,
    settings: KafkaSettings,
    count: int,
    rate: float | None,
    flow: Flow | None = None,
    go: EventType | None = None,
) -> None:
    """The sender: builds its records and connects, reports "ready", and publishes once
    ``go`` is set (so the other stages do not idle, counted, while it starts)."""
    rt = phase_runtime(Path(home), settings)
    flow = flow or SingleLA()
    records = flow.notifications(count)
    async with publisher(rt, flow.sender) as school:
        report("ready")
        if go is not None:
            await asyncio.to_thread(go.wait)
        cpu_start_s = time.process_time()
        first_ns = time.time_ns()
        if rate is None:
            for start in range(0, count, CHUNK):
                await school.publish_many(
                    [(c.ATTENDANCE_UPDATE, r) for r in records[start : start + CHUNK]]
                )
        else:
            sent = 0
            async for due in paced(rate, count):
                batch = records[sent : sent + due]
                now = datetime.now(UTC)
                for record in batch:
                    record["authored_at"] = now
                await school.publish_many([(c.ATTENDANCE_UPDATE, r) for r in batch])
                sent += due
        report("done", first_ns=first_ns, acked_ns=time.time_ns(), cpu_start_s=cpu_start_s)


async def prepare_home(
    home: Path,
    settings: KafkaSettings,
    parties: Sequence[PartySpec],
    agreement: str,
    connectors: Sequence[Connector] = (),
) -> Runtime:
    """A phase's home: trust directory (with ``connectors``), agreement file and every
    topic the parties and connectors use."""
    init_trust(home / "trust", parties, connectors)
    (home / AGREEMENT_FILE).write_text(agreement, encoding="utf-8")
    rt = phase_runtime(home, settings)
    await create_topics(rt)
    return rt


async def publish_allocations(rt: Runtime, updates: Iterable[tuple[str, dict[str, Any]]]) -> int:
    """Publish each (LA, AllocationUpdate) as that LA, one publisher per run of one LA's
    updates (made one at a time, so a million entries are never all held); the count."""
    sent = 0
    for la, run in itertools.groupby(updates, key=operator.itemgetter(0)):
        async with publisher(rt, la) as authority:
            for _, update in run:
                await authority.publish_allocations(update)
                sent += 1
    return sent


async def _prepare(home: Path, settings: KafkaSettings, flow: Flow) -> tuple[Runtime, int]:
    """Trust directory, agreement, topics; the LAs' allocations published (not yet
    applied: the gateway has not started). Returns the runtime and the updates sent."""
    rt = await prepare_home(home, settings, flow.parties, flow.agreement())
    return rt, await publish_allocations(rt, flow.allocation_updates())


async def run_pipeline_phase(
    run_settings: KafkaSettings,
    name: str,
    count: int,
    rate: float | None,
    limit_s: float,
    flow: Flow | None = None,
    *,
    one_process: bool = False,
    idle_s: float = IDLE_S,
    gateways: int = 1,
    history: History | None = None,
) -> Result:
    """One phase of ``count`` notifications of ``flow`` (paced at ``rate``, or flat out);
    ``one_process``: the receiving LAs' consumers run in one process, not one each;
    ``gateways``: instances in the gateway group, each its own process; ``history``:
    called once the home is prepared, before any stage starts (its result in
    ``extra["history"]``; its time is not counted in ``gateway_ready_s``)."""
    flow = flow or SingleLA()
    rows = flow.rows(count)
    by_stage = {consumer_name(flow, la): la for la in flow.receivers}
    consumers = ["consumers"] if one_process else list(by_stage)
    names = gateway_names(gateways)
    # on the embedded Tansu a broker of the phase's own (benchmarks.common.phase_broker)
    async with phase_broker(run_settings) as settings:
        with tempfile.TemporaryDirectory(prefix="sgx-bench-pipeline-") as tmp:
            home = Path(tmp)
            started_ns = time.time_ns()
            rt, updates = await _prepare(home, settings, flow)
            prepared_ns = time.time_ns()
            filled = await history(home, rt) if history is not None else None
            filled_ns = time.time_ns()
            async with Stages() as stages:
                go, finish = stages.event(), (stages.event() if gateways > 1 else None)
                for stage in names:
                    stages.spawn(
                        stage, gateway_stage, str(home), settings, count, updates, idle_s, finish
                    )
                if one_process:
                    stages.spawn("consumers", consumers_stage, str(home), settings, rows)
                else:
                    for stage, la in by_stage.items():
                        stages.spawn(stage, consumer_stage, str(home), settings, rows[la], la)
                stages.spawn("producer", producer_stage, str(home), settings, count, rate, flow, go)
                ready = await stages.expect("ready", [*names, *consumers, "producer"], limit_s)
                if finish is not None:
                    await asyncio.sleep(REBALANCE_S)
                # CPU counts from here, when every stage is ready, not from each one's report:
                # a consumer ready before the gateway has applied the allocations waits idle.
                # (The producer counts its own, from the moment it starts publishing.)
                start = {name: {"cpu_s": stages.cpu_s(name)} for name in [*names, *consumers]}
                broker_start, host_start = broker_cpu_s(), host_cpu_s()
                go.set()
                if finish is None:
                    done = await stages.expect("done", ["producer", *names, *consumers], limit_s)
                else:
                    done = await stages.expect("done", ["producer", *consumers], limit_s)
                    finish.set()  # the gateways stop once the queues hold every row
                    done |= await stages.expect("done", names, limit_s)
                broker_used, host_used = broker_cpu_used(broker_start), host_cpu_s() - host_start
            since = datetime.fromtimestamp(started_ns / 1e9, UTC)  # not the history's rows
            latencies = await _latencies(rt, flow.receivers, since) if rate else []
            routes = await _route_reasons(rt, flow.receivers, since)
    cpu = cpu_per_message(done, count, start, broker_used)
    if gateways > 1:
        cpu["gateways"] = round(sum(cpu[name] for name in names), 1)
    last_ns = max(done[stage]["last_ns"] for stage in consumers)
    seconds = (last_ns - done["producer"]["first_ns"]) / 1e9
    produce_s = (done["producer"]["acked_ns"] - done["producer"]["first_ns"]) / 1e9
    return Result(
        name=name,
        messages=count,
        seconds=seconds,
        per_second=count / seconds,
        p50_ms=percentile(latencies, 50) if rate else None,
        p99_ms=percentile(latencies, 99) if rate else None,
        extra={
            "queue_rows": sum(rows.values()),
            "queue_rows_by_la": rows,
            "route_reasons": routes,
            "allocation_updates": updates,
            "prepare_s": round((prepared_ns - started_ns) / 1e9, 1),
            "gateway_ready_s": round(
                (max(ready[name]["at_ns"] for name in names) - filled_ns) / 1e9, 1
            ),
            "producer_msgs_per_s": round(count / produce_s),
            "max_ms": round(max(latencies), 1) if latencies else None,
            "cpu_us_per_message": cpu,
            # the machine's CPU in the phase that no stage nor the broker used: this
            # process, the kernel, and anything else running (other work on the host)
            "other_cpu_us_per_message": round(host_used / count * 1e6 - cpu["total"], 1),
            "gateways": gateways,
            "gateway_gc_us_per_message": round(
                sum(done[name]["gc_s"] for name in names) / count * 1e6, 1
            ),
            "gateway_idle_cpu_ms_per_s": _sum_or_none(
                done[name].get("idle_cpu_ms_per_s") for name in names
            ),
            "delivered_by_gateway": {name: done[name].get("delivered", count) for name in names},
            **({} if filled is None else {"history": filled}),
        },
    )


def gateway_names(gateways: int) -> list[str]:
    """The gateway stages' names: "gateway" alone, or "gateway-1" ... "gateway-N"."""
    return ["gateway"] if gateways == 1 else [f"gateway-{n}" for n in range(1, gateways + 1)]


def gateway_cpu_us(result: Result) -> float:
    """CPU per notification of every gateway instance of the phase, together."""
    cpu = result.extra["cpu_us_per_message"]
    return float(cpu["gateways"] if "gateways" in cpu else cpu["gateway"])


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), 1) if known else None


def _queued_since(query: str, since: datetime) -> sa.TextClause:
    """``query`` over the queue rows queued at or after ``since`` (``:since``, bound as the
    queue stores it), so rows a history fill put there before the phase are left out."""
    return sa.text(query).bindparams(sa.bindparam("since", since, type_=UtcDateTime))


async def _latencies(rt: Runtime, receivers: tuple[str, ...], since: datetime) -> list[float]:
    """queued_at - authored_at of every queue row queued since ``since``, in ms (read
    straight from the queues)."""
    pairs = []
    query = _queued_since(
        "SELECT authored_at, queued_at FROM queue_item WHERE queued_at >= :since", since
    )
    for la in receivers:
        async with await rt.queue_store(la) as store, store.engine.connect() as conn:
            rows = await conn.execute(query)
            pairs += [(_utc(a), _utc(q)) for a, q in rows]
    return [(q - a).total_seconds() * 1000 for a, q in pairs]


async def _route_reasons(
    rt: Runtime, receivers: tuple[str, ...], since: datetime
) -> dict[str, int]:
    """Queue rows queued since ``since`` by route reason over the receiving LAs (what the
    routing decided)."""
    reasons: Counter[str] = Counter()
    query = _queued_since(
        "SELECT route_reason, COUNT(*) FROM queue_item WHERE queued_at >= :since"
        " GROUP BY route_reason",
        since,
    )
    for la in receivers:
        async with await rt.queue_store(la) as store, store.engine.connect() as conn:
            reasons.update({str(reason): int(n) for reason, n in await conn.execute(query)})
    return dict(sorted(reasons.items()))


def _utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
