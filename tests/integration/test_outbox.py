"""The producer outbox through a real broker: receipts, a broker outage, a killed producer."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from producers.outbox import Outbox, OutboxEntry, OutboxStore
from producers.relay import RelayOptions
from safeguard import samples
from safeguard.cli_producer import producer
from safeguard.outbox_wiring import open_outbox_store, running_outbox
from safeguard.parties import HEALTH, SCHOOL
from safeguard.runtime import publisher
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import StoreError
from sgx.wire import contract as c
from tests.integration import outbox_producer
from tests.integration.harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.broker

AMIRA = samples.child(make_nhs_number(61), make_upn(61), given="Amira", family="Zephyrine")
CHILDREN = [samples.child(make_nhs_number(9100 + i)) for i in range(20)]
ALLOCATE = samples.allocation_update(
    [(AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", "Assessment Team 1", "tm-jones")]
    + [(ch["nhs_number"], None, f"sw-{i % 4}", "Team", "tm-1") for i, ch in enumerate(CHILDREN)]
)


async def _entries(outbox: Outbox) -> dict[uuid.UUID, OutboxEntry]:
    return {e.message_id: e for e in await outbox.store.entries(SCHOOL)}


async def _all_receipted(store: OutboxStore, count: int) -> bool:
    entries = await store.entries(SCHOOL)
    return len(entries) == count and all(e.receipt_outcome is not None for e in entries)


async def _exactly_one_row_each(ex: Exchange, ids: list[uuid.UUID], per: int) -> None:
    await ex.wait_rows(len(ids) * per)
    await asyncio.sleep(1.0)  # a duplicate would land now
    async with await ex.rt.queue_store("la-camden") as store:
        rows = await store.rows_per_notification()
    assert set(rows.values()) == {1}
    assert len(rows) == len(ids) * per
    assert {n for n, _ in rows} == {str(i) for i in ids}


# -- 1. receipts --------------------------------------------------------------------------


async def test_outbox_delivers_and_records_each_receipt_outcome(tmp_path: Path) -> None:
    started = time.monotonic()
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        refused = samples.health_update(AMIRA)  # a school may not send health updates
        refused["author"] = dict(refused["author"], agency_id=SCHOOL)
        forged = samples.attendance_update(AMIRA)  # authored in another agency's name
        forged["author"] = dict(forged["author"], agency_id=HEALTH)
        async with running_outbox(ex.rt, SCHOOL) as outbox:
            sent = await outbox.add(c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
            await outbox.add(c.HEALTH_UPDATE, refused)
            await outbox.add(c.ATTENDANCE_UPDATE, forged)
            await ex.wait_rows(2)
            await eventually(lambda: _all_receipted(outbox.store, 3), "three receipts")
            entries = await _entries(outbox)
        assert [v.item.notification_id for v in await ex.queue("sw-amara")] == [str(sent)]
        assert [v.item.notification_id for v in await ex.queue("tm-jones")] == [str(sent)]
        assert await ex.queue_rows() == 2

    delivered = entries[sent]
    assert (delivered.status, delivered.receipt_reason) == ("DELIVERED", "delivered")
    assert delivered.sent_at is not None
    no = entries[refused["notification_id"]]
    assert (no.status, no.receipt_reason) == ("REFUSED", "not_permitted_by_agreement")
    assert no.receipt_detail == (
        "a school may not send health_update under the receiving LA's agreement"
    )
    kept = entries[forged["notification_id"]]
    assert (kept.status, kept.receipt_reason) == ("QUARANTINED", "author_mismatch")

    args = ["receipts", "--home", str(tmp_path), "--agency", SCHOOL]
    shown = await asyncio.to_thread(CliRunner().invoke, producer, args)
    assert shown.exit_code == 0, shown.output
    lines = {line.split()[0]: line for line in shown.output.splitlines()[1:-1]}
    assert "REFUSED not_permitted_by_agreement: a school may not send" in lines[str(no.message_id)]
    assert "QUARANTINED author_mismatch" in lines[str(kept.message_id)]
    assert shown.output.splitlines()[-1] == "3 entries, 0 awaiting"
    print(f"receipts test: {time.monotonic() - started:.1f}s")


# -- 2. broker outage ---------------------------------------------------------------------

OUTAGE_S = 3.0
OUTAGE_OPTIONS = RelayOptions(
    batch_size=20, send_timeout=1.0, poll_interval=0.2, backoff_initial=0.1, backoff_cap=1.0
)


def _notifications(start: int, count: int) -> list[tuple[str, dict[str, object]]]:
    return [
        (c.ATTENDANCE_UPDATE, samples.attendance_update(CHILDREN[i % len(CHILDREN)]))
        for i in range(start, start + count)
    ]


async def _feed(outbox: Outbox, start: int, count: int) -> list[uuid.UUID]:
    """Add notifications five at a time, as an agency system trickling them in."""
    ids: list[uuid.UUID] = []
    for first in range(start, start + count, 5):
        ids += await outbox.add_many(_notifications(first, 5))
        await asyncio.sleep(0.02)
    return ids


async def _acked(outbox: Outbox) -> int:
    return sum(1 for e in await outbox.store.entries(SCHOOL) if e.status != "PENDING")


async def test_broker_outage_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    # a broker of its own to kill: the embedded one (the shared Apache Kafka serves others)
    async with running_exchange(tmp_path, broker="tansu") as ex:
        assert ex.broker is not None  # this test's own broker
        broker_pid = ex.broker.pid
        assert broker_pid is not None
        await ex.allocate(ALLOCATE)
        async with running_outbox(ex.rt, SCHOOL, options=OUTAGE_OPTIONS) as outbox:
            feeding = asyncio.create_task(_feed(outbox, 0, 100))
            paused = False
            try:
                await eventually(lambda: _has_acked(outbox, 20), "the first broker acks")
                os.kill(broker_pid, signal.SIGSTOP)  # memory-only: pause it, never kill it
                paused = True
                acked_at_pause = await _acked(outbox)
                during = await outbox.add_many(_notifications(100, 50))
                await asyncio.sleep(OUTAGE_S)
                stuck = await outbox.store.depth(SCHOOL)
                os.kill(broker_pid, signal.SIGCONT)
                paused = False
            finally:
                if paused:
                    os.kill(broker_pid, signal.SIGCONT)
            ids = await feeding + during
            resumed = time.monotonic()
            await eventually(lambda: _all_receipted(outbox.store, 150), "150 receipts", 60)
            recovered = time.monotonic() - resumed
            entries = await _entries(outbox)
        await _exactly_one_row_each(ex, ids, per=2)

    assert acked_at_pause < 150, "the outage must start mid-stream"
    assert stuck.pending >= 50, "what was added during the outage waited in the outbox"
    assert {e.status for e in entries.values()} == {"DELIVERED"}
    assert max(e.attempts for e in entries.values()) > 1, "the relay resent during the outage"
    print(
        f"outage test: {time.monotonic() - started:.1f}s; {acked_at_pause} acked at pause, "
        f"{stuck.pending} pending after {OUTAGE_S:g}s, all receipted {recovered:.1f}s after resume"
    )


async def _has_acked(outbox: Outbox, count: int) -> bool:
    return await _acked(outbox) >= count


# -- 3. producer killed -------------------------------------------------------------------

KILL_COUNT = 200


async def _spawn_producer(ex: Exchange) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.outbox_producer",
        str(ex.rt.exchange.home), ex.rt.kafka.bootstrap_servers, str(KILL_COUNT),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, **ex.kafka_env()},
    )  # fmt: skip


async def _outbox_counts(home: Path) -> tuple[int, int]:
    """(entries, entries the broker acknowledged) in the school's outbox file."""
    async with await OutboxStore.open(None, home / f"outbox-{SCHOOL}.db", owner=SCHOOL) as store:
        entries = await store.entries(SCHOOL)
    return len(entries), sum(1 for e in entries if e.status != "PENDING")


async def test_producer_killed_mid_stream_loses_nothing_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(outbox_producer.ALLOCATE)
        first = await _spawn_producer(ex)
        try:

            async def some_acked() -> bool:
                try:
                    return (await _outbox_counts(tmp_path))[1] >= 40
                except StoreError:  # the producer may be creating the tables right now
                    return False

            await eventually(some_acked, "40 broker acks in the first run")
            first.send_signal(signal.SIGKILL)  # no chance to mark, commit or finish
            await first.wait()
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()
        at_kill = await _outbox_counts(tmp_path)
        assert at_kill[1] < KILL_COUNT, "the kill must land mid-stream"

        second = await _spawn_producer(ex)
        try:
            out, _ = await asyncio.wait_for(second.communicate(), 60)
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()
        assert second.returncode == 0
        assert out.decode().split() == ["added", "delivered"]
        ids = [outbox_producer.notification_id(i) for i in range(KILL_COUNT)]
        await _exactly_one_row_each(ex, ids, per=2)
        async with await OutboxStore.open(
            None, tmp_path / f"outbox-{SCHOOL}.db", owner=SCHOOL
        ) as store:
            entries = await store.entries(SCHOOL)
    assert [e.message_id for e in entries] == ids
    assert {e.status for e in entries} == {"DELIVERED"}
    print(
        f"kill test: {time.monotonic() - started:.1f}s; at kill {at_kill[0]} added, "
        f"{at_kill[1]} acked"
    )


# -- the relay command --------------------------------------------------------------------


async def test_relay_command_sends_what_another_process_added(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(ALLOCATE)
        async with publisher(ex.rt, SCHOOL) as pub, await open_outbox_store(ex.rt, SCHOOL) as s:
            outbox = Outbox(s, pub, SCHOOL)  # no relay in this process
            ids = await outbox.add_many(_notifications(0, 10))
        env = {
            **os.environ,
            **ex.kafka_env(),
        }
        relay = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from safeguard.cli_producer import producer; producer()",
            "relay", "--home", str(tmp_path), "--agency", SCHOOL, env=env,
        )  # fmt: skip
        try:
            await _exactly_one_row_each(ex, ids, per=2)
            async with await open_outbox_store(ex.rt, SCHOOL) as store:
                await eventually(lambda: _all_receipted(store, 10), "ten receipts")
            relay.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(relay.wait(), 30) == 0
        finally:
            if relay.returncode is None:
                relay.kill()
                await relay.wait()
