"""The full exchange: producer → gateway → consumer → queue, in three OS processes.

* **throughput**: a school's producer validates, encodes, seals and publishes ``--count``
  attendance updates as fast as it can; the gateway verifies, opens, validates, routes
  (each child is allocated, so every notification goes to a worker AND a supervisor),
  minimises, audits and re-seals; the consumer opens and inserts into the SQLite queue.
  Rate = notifications / (first publish → the consumer's commit of the last queue row).
* **latency**: the same, paced at ``--rate`` notifications/s; latency per queue row is
  queued_at - authored_at as the queue records them (same machine clock).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from benchmarks.common import (
    Report,
    Result,
    Stages,
    broker_cpu_s,
    broker_cpu_used,
    cpu_per_message,
    paced,
    percentile,
)
from safeguard import samples
from safeguard.parties import DEMO_PARTIES, LA, SCHOOL
from safeguard.runtime import Runtime, create_topics, publisher, run_consumer, run_gateway
from sgx import contract as c
from sgx.identifiers import make_nhs_number
from sgx.settings import ExchangeSettings, KafkaSettings
from sgx.trust import init_trust

CHILDREN = 1_000
CHUNK = 2_000  # the producer awaits acks every this many notifications


def _runtime(home: Path, settings: KafkaSettings) -> Runtime:
    return Runtime(exchange=ExchangeSettings(home=home, metrics_port=-1), kafka=settings)


def _children() -> list[dict[str, Any]]:
    return [samples.child(make_nhs_number(50_000 + i)) for i in range(CHILDREN)]


async def _watch(
    registry: CollectorRegistry,
    name: str,
    labels: dict[str, str],
    target: float,
    stop: asyncio.Event,
    report: Report,
    **extra: Any,
) -> None:
    while (registry.get_sample_value(name, labels) or 0) < target:  # noqa: ASYNC110 - polls a metric
        await asyncio.sleep(0.002)
    report("done", last_ns=time.time_ns(), **extra)
    stop.set()


async def _serve(
    report: Report,
    run: Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]],
    watcher: Callable[[asyncio.Event], Awaitable[None]],
) -> None:
    stop, ready = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(run(stop, ready))
    await ready.wait()
    await asyncio.sleep(1.5)  # the first group join (half the session timeout) happens here
    report("ready")
    await asyncio.gather(service, watcher(stop))


async def gateway_stage(report: Report, home: str, settings: KafkaSettings, count: int) -> None:
    rt, registry = _runtime(Path(home), settings), CollectorRegistry()
    labels = {"type": "attendance_update", "outcome": "delivered"}
    await _serve(
        report,
        lambda stop, ready: run_gateway(rt, stop, registry, ready),
        lambda stop: _watch(
            registry, "sgx_gateway_notifications_total", labels, count, stop, report
        ),
    )


async def consumer_stage(report: Report, home: str, settings: KafkaSettings, rows: int) -> None:
    rt, registry = _runtime(Path(home), settings), CollectorRegistry()
    labels = {"type": "attendance_update", "outcome": "queued"}
    await _serve(
        report,
        lambda stop, ready: run_consumer(rt, LA, stop, registry, ready),
        lambda stop: _watch(
            registry, "sgx_consumer_notifications_total", labels, rows, stop, report
        ),
    )


async def producer_stage(
    report: Report, home: str, settings: KafkaSettings, count: int, rate: float | None
) -> None:
    rt = _runtime(Path(home), settings)
    children = _children()
    records = [samples.attendance_update(children[i % CHILDREN]) for i in range(count)]
    async with publisher(rt, SCHOOL) as school:
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


async def _prepare(home: Path, settings: KafkaSettings) -> Runtime:
    init_trust(home / "trust", DEMO_PARTIES)
    rt = _runtime(home, settings)
    await create_topics(rt)
    allocations = samples.allocation_update(
        [
            (child["nhs_number"], None, f"sw-{i % 10}", "Assessment", f"tm-{i % 3}")
            for i, child in enumerate(_children())
        ]
    )
    async with publisher(rt, LA) as camden:
        await camden.publish_allocations(allocations)
    return rt


async def run_pipeline_phase(
    settings: KafkaSettings, name: str, count: int, rate: float | None, limit_s: float
) -> Result:
    with tempfile.TemporaryDirectory(prefix="sgx-bench-pipeline-") as tmp:
        home = Path(tmp)
        rt = await _prepare(home, settings)
        async with Stages() as stages:
            stages.spawn("gateway", gateway_stage, str(home), settings, count)
            stages.spawn("consumer", consumer_stage, str(home), settings, count * 2)
            ready = await stages.expect("ready", ["gateway", "consumer"], limit_s)
            broker_start = broker_cpu_s()
            stages.spawn("producer", producer_stage, str(home), settings, count, rate)
            done = await stages.expect("done", ["producer", "gateway", "consumer"], limit_s)
            broker_used = broker_cpu_used(broker_start)
        latencies = await _latencies(rt) if rate else []
    seconds = (done["consumer"]["last_ns"] - done["producer"]["first_ns"]) / 1e9
    produce_s = (done["producer"]["acked_ns"] - done["producer"]["first_ns"]) / 1e9
    return Result(
        name=name,
        messages=count,
        seconds=seconds,
        per_second=count / seconds,
        p50_ms=percentile(latencies, 50) if rate else None,
        p99_ms=percentile(latencies, 99) if rate else None,
        extra={
            "queue_rows": count * 2,
            "producer_msgs_per_s": round(count / produce_s),
            "max_ms": round(max(latencies), 1) if latencies else None,
            "cpu_us_per_message": cpu_per_message(done, count, ready, broker_used),
        },
    )


async def _latencies(rt: Runtime) -> list[float]:
    """queued_at - authored_at of every queue row, in ms (read straight from the queue)."""
    async with await rt.queue_store(LA) as store, store.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT authored_at, queued_at FROM queue_item"))
        pairs = [(_utc(a), _utc(q)) for a, q in rows]
    return [(q - a).total_seconds() * 1000 for a, q in pairs]


def _utc(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
