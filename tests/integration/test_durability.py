"""Nothing lost, nothing doubled: a consumer killed mid-stream, and the PostgreSQL path."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from safeguard import samples
from safeguard.parties import LA, SCHOOL
from safeguard.runtime import publisher
from sgx.domain.identifiers import make_nhs_number
from sgx.wire import contract as c
from tests.conftest_db import PG_DSN, drop_schema
from tests.integration.harness import Exchange, running_exchange

pytestmark = pytest.mark.broker

CHILDREN = [samples.child(make_nhs_number(7000 + i)) for i in range(20)]
ALLOCATE = samples.allocation_update(
    [(ch["nhs_number"], None, f"sw-{i % 4}", "Team", "tm-1") for i, ch in enumerate(CHILDREN)]
)


async def _publish(ex: Exchange, count: int, chunk: int = 50, pause: float = 0.0) -> list[str]:
    records = [samples.attendance_update(CHILDREN[i % len(CHILDREN)]) for i in range(count)]
    async with publisher(ex.rt, SCHOOL) as school:
        for start in range(0, count, chunk):
            await school.publish_many(
                [(c.ATTENDANCE_UPDATE, r) for r in records[start : start + chunk]]
            )
            await asyncio.sleep(pause)
    return [str(r["notification_id"]) for r in records]


async def _spawn_consumer(ex: Exchange) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        **ex.kafka_env(),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safeguard.cli", "consumer", "run",
        "--home", str(ex.rt.exchange.home), "--la", LA, env=env,
    )  # fmt: skip


async def test_consumer_killed_mid_stream_leaves_exactly_one_row_per_delivery(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path, consumer=False) as ex:
        await ex.allocate(ALLOCATE)
        consumer = await _spawn_consumer(ex)
        publishing = None
        try:
            early = await _publish(ex, 10)
            await ex.wait_rows(20, timeout=60)  # the consumer has joined and is delivering
            # Small publishes while it runs: many records, so the kill lands mid-stream.
            publishing = asyncio.create_task(_publish(ex, 590, chunk=5, pause=0.01))
            await ex.wait_rows(80, timeout=60)
            consumer.send_signal(signal.SIGKILL)  # no chance to finish the batch or commit
            await consumer.wait()
        finally:
            if consumer.returncode is None:
                consumer.kill()
        assert publishing is not None
        first = early + await publishing
        rows_at_kill = await ex.queue_rows()
        assert rows_at_kill < 1200, "the kill must land mid-stream for this test to mean anything"
        second = await _publish(ex, 100)  # traffic keeps arriving while the consumer is down

        consumer = await _spawn_consumer(ex)
        try:
            await ex.wait_rows(1400, timeout=90)
            await asyncio.sleep(1.0)  # any duplicate would arrive now
            consumer.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(consumer.wait(), 30) == 0
        finally:
            if consumer.returncode is None:
                consumer.kill()

        async with await ex.rt.queue_store(LA) as store:
            per_delivery = await store.rows_per_notification()
        assert len(per_delivery) == 1400
        assert set(per_delivery.values()) == {1}
        assert {n for n, _ in per_delivery} == set(first + second)


async def test_postgresql_path_end_to_end(tmp_path: Path) -> None:
    schema = f"sgx_e2e_{uuid.uuid4().hex[:10]}_{{party}}"  # a schema per party
    try:
        async with running_exchange(tmp_path, dsn=PG_DSN, schema=schema) as ex:
            assert ex.rt.dsn is not None
            await ex.allocate(ALLOCATE)
            sent = await _publish(ex, 30)
            await ex.wait_rows(60)
            worker = await ex.queue("sw-0")
            assert {v.item.notification_id for v in worker} <= set(sent)
            assert len(worker) == len([i for i in range(30) if i % 20 % 4 == 0])
            async with ex.gateway_store() as store:
                count = sum(n for n, _ in (await store.verify_chains()).values())
            assert count == 61  # 60 deliveries and the allocation update's record
        assert not (tmp_path / "queue-la-camden.db").exists(), (
            "PostgreSQL, not SQLite, held the queue"
        )
        assert not (tmp_path / "gateway.db").exists()
    finally:
        await drop_schema(PG_DSN, schema)
