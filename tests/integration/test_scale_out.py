"""Several gateways and consumers on one broker: kill -9, a zombie, a restart with a
backlog, a replayed envelope.

Gateways and consumers run as real processes (``python -m safeguard.cli``) sharing one
home (one SQLite gateway database, one queue per LA) and one consumer group per role, on
a real broker. Every notification must end up exactly once in each recipient's queue,
every audit chain must verify (``safeguard audit verify``), and nobody may receive a
notification twice or from a judgement made twice.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from safeguard import samples
from safeguard.parties import LA, SCHOOL
from safeguard.runtime import publisher
from sgx.kafka.wiring import inbound_topic, read_topic
from sgx.wire import contract as c
from tests.conftest_db import PG_DSN, drop_schema
from tests.integration.harness import Exchange, eventually, running_exchange
from tests.integration.processes import (
    Service,
    allocated_children,
    assert_once_per_recipient,
    publish_until,
    service,
)

pytestmark = pytest.mark.broker

CHILDREN, ALLOCATE = allocated_children(8300)


async def rows_grow(ex: Exchange, by: int, timeout: float = 90.0) -> None:
    await ex.wait_rows(await ex.queue_rows() + by, timeout=timeout)


async def audit_verify(ex: Exchange) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "safeguard.cli", "audit", "verify",
        "--home", str(ex.rt.exchange.home), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    return await process.wait(), out.decode()


async def exactly_once(ex: Exchange, sent: list[str]) -> None:
    """Each notification in the queue once per recipient (worker and supervisor), and in
    the audit trail two deliveries, never judged twice."""
    await assert_once_per_recipient(ex, sent)
    async with ex.gateway_store() as store:
        delivered = [a for a in await store.audit_records() if a.decision == "delivered"]
    assert len(delivered) == 2 * len(sent)


async def test_three_gateways_and_two_consumers_survive_two_kills_and_a_fresh_start(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path, consumer=False) as ex:
        await ex.allocate(ALLOCATE)
        await ex.stop("gateway")  # from here every gateway is a process of its own
        stop = asyncio.Event()
        async with AsyncExitStack() as stack:
            gateways = [
                await stack.enter_async_context(service(ex, "gateway", "run")) for _ in range(3)
            ]
            consumers = [
                await stack.enter_async_context(service(ex, "consumer", "run", "--la", LA))
                for _ in range(2)
            ]
            sending = ex.background(publish_until(ex, CHILDREN, stop))
            await rows_grow(ex, 100)
            await gateways[0].kill()  # SIGKILL mid-stream: its batch in hand is lost
            await rows_grow(ex, 100)
            await gateways[1].kill()
            await rows_grow(ex, 100)
            await stack.enter_async_context(service(ex, "gateway", "run"))  # a fresh one
            await rows_grow(ex, 100)
            stop.set()
            sent = await sending
            await ex.wait_rows(2 * len(sent), timeout=120)
            await asyncio.sleep(1.5)  # a duplicate would arrive now
            for consumer in consumers:
                assert await consumer.metric("sgx_consumer_quarantine_size") == 0
        await exactly_once(ex, sent)
        status, said = await audit_verify(ex)
        assert status == 0, said
        assert "audit verified" in said


def owned_by(owner: str, service: Service) -> bool:
    return owner.startswith(f"{socket.gethostname()}-{service.process.pid}-")


async def test_a_zombie_gateway_writes_nothing_and_delivers_nothing_twice(
    tmp_path: Path,
) -> None:
    """On PostgreSQL, as in production: a zombie paused inside a transaction holds row
    locks until the server ends its idle session (``sgx.store.db.IDLE_IN_TRANSACTION_MS``); a
    shared SQLite file would stay locked until the zombie resumed."""
    schema = f"sgx_zombie_{uuid.uuid4().hex[:10]}_{{party}}"  # a schema per party
    try:
        await _zombie(tmp_path, schema)
    finally:
        await drop_schema(PG_DSN, schema)


async def _zombie(tmp_path: Path, schema: str) -> None:
    async with running_exchange(tmp_path, dsn=PG_DSN, schema=schema) as ex:
        await ex.allocate(ALLOCATE)
        await ex.stop("gateway")
        stop = asyncio.Event()
        async with (
            service(ex, "gateway", "run") as zombie,
            service(ex, "gateway", "run") as survivor,
        ):
            sending = ex.background(publish_until(ex, CHILDREN, stop, pause=0.005))
            await rows_grow(ex, 200)
            zombie.pause()  # SIGSTOP, most likely with a batch in hand, past its session
            await rows_grow(ex, 400)  # the survivor has taken over all its partitions

            async def survivor_owns_every_written_chain() -> bool:
                async with ex.gateway_store() as store:
                    heads = await store.chain_heads()
                return all(owned_by(h.owner, survivor) for h in heads.values() if h.sequence)

            await eventually(survivor_owns_every_written_chain, "the survivor to own the chains")
            zombie.resume()  # SIGCONT: it finishes the batch it held, and must be fenced
            await rows_grow(ex, 200)
            stop.set()
            sent = await sending
            await ex.wait_rows(2 * len(sent), timeout=120)
            await asyncio.sleep(1.5)
        await exactly_once(ex, sent)
        status, said = await audit_verify(ex)
        assert status == 0, said


async def test_allocations_published_while_the_gateway_is_down_apply_before_its_backlog(
    tmp_path: Path,
) -> None:
    """A restart with a backlog: the LA reallocates one child and closes another while the
    gateway is down, then the school writes about both; every notification is judged under
    the change, whatever fetch or partition it arrives in."""
    moved, closed = CHILDREN[0], CHILDREN[1]
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        await ex.stop("gateway")
        async with publisher(ex.rt, LA) as authority:
            reallocation = samples.allocation_update(
                [(moved["nhs_number"], None, "sw-new", "Team", "tm-1")],
                ended=[(closed["nhs_number"], None)],
            )
            await authority.publish_allocations(reallocation)
        about = {moved["nhs_number"]: [], closed["nhs_number"]: []}  # type: dict[str, list[str]]
        async with publisher(ex.rt, SCHOOL) as school:
            for _ in range(30):
                for child in (moved, closed):
                    record = samples.attendance_update(child)
                    await school.publish(c.ATTENDANCE_UPDATE, record)
                    about[child["nhs_number"]].append(str(record["notification_id"]))
        ex.gateway_metrics = CollectorRegistry()  # a new process, as it were
        await ex.start_gateway()
        await ex.wait_rows(30 * 2 + 30, timeout=60)  # worker and supervisor, and MASH
        new_worker = {v.item.notification_id for v in await ex.queue("sw-new")}
        mash = {v.item.notification_id for v in await ex.queue("mash:" + LA)}
        old_worker = {v.item.notification_id for v in await ex.queue("sw-0")}
        assert new_worker == set(about[moved["nhs_number"]])
        assert mash == set(about[closed["nhs_number"]])
        assert not old_worker & (new_worker | mash)


async def test_a_replayed_envelope_reaches_no_new_recipient(tmp_path: Path) -> None:
    child = CHILDREN[0]
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        record = samples.attendance_update(child)
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, record)
        await ex.wait_rows(2)
        # the child is reallocated; then the very same bytes arrive again
        await ex.allocate(
            samples.allocation_update([(child["nhs_number"], None, "sw-9", "Team", "tm-9")])
        )
        (original,) = await read_topic(ex.rt.kafka, inbound_topic(SCHOOL))
        producer = AIOKafkaProducer(bootstrap_servers=ex.rt.kafka.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(inbound_topic(SCHOOL), original.value, key=original.key)
        finally:
            await producer.stop()

        async def judged_as_duplicate() -> bool:
            return ex.gateway_count("attendance_update", "duplicate") == 1

        await eventually(judged_as_duplicate, "the gateway to judge the copy")
        await asyncio.sleep(0.5)
        assert await ex.queue("sw-9") == []
        assert [v.item.notification_id for v in await ex.queue("sw-0")] == [
            str(record["notification_id"])
        ]
        async with ex.gateway_store() as store:
            audit = await store.audit_records(message_id=str(record["notification_id"]))
        assert sorted(a.decision for a in audit) == ["delivered", "delivered", "duplicate"]
        (copy,) = [a for a in audit if a.decision == "duplicate"]
        assert "its recipients stand" in copy.detail
