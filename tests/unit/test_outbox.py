"""The producer outbox: its store (SQLite and PostgreSQL), the relay's retries, receipts, CLI.

The message flow through a real broker is in tests/integration/test_outbox.py; here the
relay's sender is a stand-in so that failures can be made to order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from producers.outbox import Outbox, OutboxStore, ReceiptUpdate
from producers.publisher import Prepared, Publisher
from producers.receipts import ReceiptListener, ReceiptRecorder
from producers.relay import OutboxRelay, RelayOptions
from safeguard import samples
from safeguard.cli_producer import producer, receipts_table
from safeguard.parties import DEMO_PARTIES, HEALTH, SCHOOL
from safeguard.runtime import Runtime
from sgx.domain.identifiers import make_nhs_number
from sgx.errors import ConfigError, ContractError, NotFound, TransportError
from sgx.kafka.backoff import Backoff
from sgx.kafka.quarantine import Quarantined
from sgx.keys.key_admin import init_trust
from sgx.ops.metrics import ProducerMetrics
from sgx.settings import ExchangeSettings
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose, Sealer, pack
from tests.conftest_db import BACKENDS, Backend, backend

CHILD = samples.child(make_nhs_number(501))


def prepared(n: int, name: str = c.ATTENDANCE_UPDATE) -> Prepared:
    return Prepared(uuid.UUID(int=n), name, bytes([n % 256]) * 16, b"\xc3\x01plain-%d" % n)


def receipt(n: int, outcome: Any = "DELIVERED", reason: str = "delivered") -> ReceiptUpdate:
    return ReceiptUpdate(
        uuid.UUID(int=n), outcome, reason, "" if outcome == "DELIVERED" else "why", _AT
    )


_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


# -- the store ----------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


@pytest.fixture
async def store(db: Backend) -> AsyncIterator[OutboxStore]:
    async with await OutboxStore.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="agency-test"
    ) as opened:
        yield opened


async def test_insert_is_idempotent_on_the_message_id(store: OutboxStore) -> None:
    assert await store.insert(SCHOOL, [prepared(1), prepared(2)]) == 2
    changed = Prepared(uuid.UUID(int=2), c.HEALTH_UPDATE, b"k", b"other")
    assert await store.insert(SCHOOL, [changed, prepared(3)]) == 1
    pending = await store.pending(SCHOOL, 10)
    assert [p.prepared for p in pending] == [prepared(1), prepared(2), prepared(3)]
    assert await store.insert(HEALTH, [prepared(1)]) == 1, "each agency has its own entries"


async def test_pending_is_oldest_first_and_limited(store: OutboxStore) -> None:
    await store.insert(SCHOOL, [prepared(n) for n in (5, 3, 9, 1)])
    first = await store.pending(SCHOOL, 2)
    assert [p.prepared.message_id.int for p in first] == [5, 3]
    await store.mark_sent(SCHOOL, [p.entry_id for p in first])
    rest = await store.pending(SCHOOL, 10)
    assert [p.prepared.message_id.int for p in rest] == [9, 1]
    assert await store.pending(HEALTH, 10) == []


async def test_mark_sent_counts_attempts_and_keeps_a_receipt_that_came_first(
    store: OutboxStore,
) -> None:
    await store.insert(SCHOOL, [prepared(1), prepared(2)])
    ids = [p.entry_id for p in await store.pending(SCHOOL, 10)]
    await store.note_failure(SCHOOL, ids)
    await store.apply_receipts(SCHOOL, [receipt(2)])  # the gateway answered before the mark
    await store.mark_sent(SCHOOL, ids)
    one, two = await store.entries(SCHOOL)
    assert (one.status, one.attempts, one.receipt_outcome) == ("SENT", 2, None)
    assert one.sent_at is not None
    assert (two.status, two.attempts, two.receipt_outcome) == ("DELIVERED", 2, "DELIVERED")


async def test_receipts_are_matched_to_entries_of_the_agency(store: OutboxStore) -> None:
    await store.insert(SCHOOL, [prepared(n) for n in (1, 2, 3, 4)])
    await store.insert(HEALTH, [prepared(3)])
    await store.mark_sent(SCHOOL, [p.entry_id for p in await store.pending(SCHOOL, 10)])
    refused = receipt(2, "REFUSED", "not_permitted_by_agreement")
    await store.apply_receipts(
        SCHOOL, [receipt(1), refused, receipt(3, "QUARANTINED", "author_mismatch"), receipt(77)]
    )
    await store.apply_receipts(SCHOOL, [refused])  # a replayed receipt changes nothing
    by_id = {e.message_id.int: e for e in await store.entries(SCHOOL)}
    assert {n: e.status for n, e in by_id.items()} == {
        1: "DELIVERED",
        2: "REFUSED",
        3: "QUARANTINED",
        4: "SENT",
    }
    assert by_id[2].receipt_reason == "not_permitted_by_agreement"
    assert by_id[2].receipt_detail == "why"
    assert by_id[2].receipt_at == _AT
    assert [e.message_id.int for e in await store.entries(SCHOOL, awaiting_only=True)] == [4]
    assert (await store.get(HEALTH, uuid.UUID(int=3))).status == "PENDING"
    with pytest.raises(NotFound, match="no message"):
        await store.get(SCHOOL, uuid.UUID(int=77))


async def test_unreadable_receipts_are_kept_once(store: OutboxStore) -> None:
    bad = Quarantined("sgx.receipts.x", 0, 7, 1, "bad_signature", "no", b"\xc3\x01", _AT)
    await store.apply_receipts(SCHOOL, [], [bad])
    await store.apply_receipts(SCHOOL, [], [bad])
    assert await store.quarantine_list(SCHOOL) == [bad]


async def test_depth_counts_what_the_broker_has_not_acknowledged(store: OutboxStore) -> None:
    empty = await store.depth(SCHOOL)
    assert (empty.pending, empty.oldest, empty.oldest_age(_AT)) == (0, None, 0.0)
    before = datetime.now(UTC)
    await store.insert(SCHOOL, [prepared(1), prepared(2)])
    await store.mark_sent(SCHOOL, [(await store.pending(SCHOOL, 1))[0].entry_id])
    depth = await store.depth(SCHOOL)
    assert depth.pending == 1
    assert depth.oldest is not None
    assert before <= depth.oldest <= datetime.now(UTC)
    assert depth.oldest_age(depth.oldest + timedelta(seconds=90)) == 90.0


# -- the outbox facade and the relay ------------------------------------------------------


@dataclass
class Agency:
    rt: Runtime
    publisher: Publisher
    outbox: Outbox


@pytest.fixture
async def agency(tmp_path: Path) -> AsyncIterator[Agency]:
    """A school's outbox on SQLite, with a real publisher whose producer is never started."""
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    rt = Runtime(exchange=ExchangeSettings(home=tmp_path, metrics_port=-1))
    trust = rt.trust()
    kafka = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    publisher = Publisher(
        identity=rt.identity(SCHOOL, trust),
        trust=trust,
        contract=rt.contract(),
        pseudonyms=rt.pseudonyms(),
        producer=kafka,
        metrics=ProducerMetrics(CollectorRegistry()),
    )
    try:
        async with await OutboxStore.open(
            None, tmp_path / "outbox.db", owner="agency-test"
        ) as store:
            yield Agency(rt, publisher, Outbox(store, publisher, SCHOOL))
    finally:
        await kafka.stop()


async def test_add_validates_before_anything_is_kept(agency: Agency) -> None:
    good = samples.attendance_update(CHILD)
    bad = samples.attendance_update(CHILD, urgency="WHENEVER")
    with pytest.raises(ContractError) as caught:
        await agency.outbox.add_many([(c.ATTENDANCE_UPDATE, good), (c.ATTENDANCE_UPDATE, bad)])
    assert caught.value.path == "urgency"
    assert await agency.outbox.store.entries(SCHOOL) == []
    assert not agency.outbox.added.is_set()


async def test_add_keeps_the_prepared_notification_once(agency: Agency) -> None:
    record = samples.attendance_update(CHILD)
    message_id = await agency.outbox.add(c.ATTENDANCE_UPDATE, record)
    assert message_id == record["notification_id"]
    assert agency.outbox.added.is_set()
    agency.outbox.added.clear()
    assert await agency.outbox.add(c.ATTENDANCE_UPDATE, record) == message_id
    assert not agency.outbox.added.is_set(), "nothing new: the relay need not wake"
    (pending,) = await agency.outbox.store.pending(SCHOOL, 10)
    assert pending.prepared == agency.publisher.prepare(c.ATTENDANCE_UPDATE, record)
    assert CHILD["nhs_number"].encode() not in pending.prepared.key


class FlakySender:
    """Fails its first ``failures`` sends with ``error``; records what it was given."""

    def __init__(self, failures: int, error: Exception | None = None, hang: bool = False):
        self.failures = failures
        self.error = error or TransportError("publish to sgx.inbound.x: broker unreachable")
        self.hang = hang
        self.calls: list[list[uuid.UUID]] = []

    async def send(self, items: Sequence[Prepared]) -> None:
        self.calls.append([p.message_id for p in items])
        if len(self.calls) <= self.failures:
            if self.hang:
                await asyncio.sleep(60)
            raise self.error


FAST = RelayOptions(batch_size=2, send_timeout=0.2, poll_interval=0.05, backoff_initial=0.01)


async def _add(outbox: Outbox, count: int) -> list[uuid.UUID]:
    return await outbox.add_many(
        [(c.ATTENDANCE_UPDATE, samples.attendance_update(CHILD)) for _ in range(count)]
    )


async def _run_until_sent(relay: OutboxRelay, expected: int) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        async with asyncio.timeout(10):
            while relay.sent < expected:  # noqa: ASYNC110 (the relay offers no event)
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task


async def test_relay_sends_oldest_first_in_batches_and_marks_them_sent(agency: Agency) -> None:
    ids = await _add(agency.outbox, 5)
    sender = FlakySender(0)
    registry = CollectorRegistry()
    relay = OutboxRelay(agency.outbox, sender, metrics=ProducerMetrics(registry), options=FAST)
    await _run_until_sent(relay, 5)
    assert sender.calls == [ids[0:2], ids[2:4], ids[4:5]]
    entries = await agency.outbox.store.entries(SCHOOL)
    assert {(e.status, e.attempts) for e in entries} == {("SENT", 1)}
    assert registry.get_sample_value("sgx_producer_outbox_depth") == 0.0
    assert registry.get_sample_value("sgx_producer_outbox_oldest_age_seconds") == 0.0


async def test_relay_retries_a_broker_failure_until_acked_and_drops_nothing(
    agency: Agency,
) -> None:
    ids = await _add(agency.outbox, 2)
    sender = FlakySender(3)
    relay = OutboxRelay(agency.outbox, sender, options=FAST)
    await _run_until_sent(relay, 2)
    assert sender.calls == [ids] * 4
    assert relay.failures == 3
    entries = await agency.outbox.store.entries(SCHOOL)
    assert [(e.message_id, e.status, e.attempts) for e in entries] == [
        (ids[0], "SENT", 4),
        (ids[1], "SENT", 4),
    ]


async def test_relay_treats_a_missing_ack_as_a_failure_and_resends(agency: Agency) -> None:
    ids = await _add(agency.outbox, 1)
    sender = FlakySender(1, hang=True)
    relay = OutboxRelay(agency.outbox, sender, options=FAST)
    await _run_until_sent(relay, 1)
    assert sender.calls == [ids, ids]
    assert (await agency.outbox.store.get(SCHOOL, ids[0])).status == "SENT"


async def test_relay_wakes_for_new_entries_and_reports_depth_while_failing(
    agency: Agency,
) -> None:
    registry = CollectorRegistry()
    sender = FlakySender(10**6)  # the broker never answers
    relay = OutboxRelay(agency.outbox, sender, metrics=ProducerMetrics(registry), options=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await _add(agency.outbox, 3)
        async with asyncio.timeout(10):
            while len(sender.calls) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task
    assert registry.get_sample_value("sgx_producer_outbox_depth") == 3.0
    age = registry.get_sample_value("sgx_producer_outbox_oldest_age_seconds")
    assert age is not None
    assert 0 < age < 10
    assert {e.status for e in await agency.outbox.store.entries(SCHOOL)} == {"PENDING"}


async def test_relay_stops_on_an_error_a_retry_cannot_fix(agency: Agency) -> None:
    await _add(agency.outbox, 1)
    sender = FlakySender(1, error=ConfigError("recipient 'gateway' is not in the trust directory"))
    relay = OutboxRelay(agency.outbox, sender, options=FAST)
    with pytest.raises(ConfigError, match="gateway"):
        await relay.run(asyncio.Event())
    assert {e.status for e in await agency.outbox.store.entries(SCHOOL)} == {"PENDING"}


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(initial=1.0, cap=8.0)
    delays = [backoff.next_delay() for _ in range(200)]
    for n, delay in enumerate(delays[:4]):
        assert 2**n / 2 <= delay <= 2**n
    assert all(4.0 <= d <= 8.0 for d in delays[4:])
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


# -- receipts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes


class CommitLog:
    """Stands in for the consumer: counts commits (the order against the store is the point)."""

    def __init__(self) -> None:
        self.commits = 0

    async def commit(self) -> None:
        self.commits += 1


async def test_listener_records_receipts_skips_share_decisions_and_keeps_bad_records(
    agency: Agency,
) -> None:
    rt, store = agency.rt, agency.outbox.store
    ids = await _add(agency.outbox, 2)
    trust, contract = rt.trust(), rt.contract()
    gateway = Sealer(rt.identity("gateway", trust), trust, SCHOOL)
    impostor = Sealer(rt.identity(HEALTH, trust), trust, SCHOOL)
    batch = contract.encode(
        c.RECEIPT_BATCH,
        {
            "receipts": [
                {"message_id": ids[0], "outcome": "DELIVERED", "reason": "delivered",
                 "detail": "", "decided_at": _AT},
                {"message_id": ids[1], "outcome": "REFUSED", "reason": "not_permitted",
                 "detail": "a school may not", "decided_at": _AT},
            ]
        },
    )  # fmt: skip
    good = gateway.seal(Purpose.RECEIPTS, uuid.uuid4(), batch)
    forged = impostor.seal(Purpose.RECEIPTS, uuid.uuid4(), batch)
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    decision = gateway.seal(Purpose.SHARE_DECISION, uuid.uuid4(), b"not for the outbox")
    topic = "sgx.receipts.school-hillside"
    commits = CommitLog()
    recorder = ReceiptRecorder(
        store=store, agency=SCHOOL, opener=Opener(rt.identity(SCHOOL, trust), trust),
        contract=contract,
    )  # fmt: skip
    listener = ReceiptListener(recorder, commits)
    await listener.process(
        [
            Record(topic, 0, 0, decision),
            Record(topic, 0, 1, pack([forged, good])),
            Record(topic, 0, 2, tampered),
            Record(topic, 0, 3, b"junk"),
        ]
    )
    assert commits.commits == 1
    assert listener.received == 2
    first, second = await store.entries(SCHOOL)
    assert (first.status, first.receipt_reason) == ("DELIVERED", "delivered")
    assert (second.status, second.receipt_detail) == ("REFUSED", "a school may not")
    kept = [(q.offset, q.item, q.reason) for q in await store.quarantine_list(SCHOOL)]
    assert kept == [
        (1, 0, "not_from_gateway"),
        (2, 0, "tampered_ciphertext"),
        (3, 0, "malformed_envelope"),
    ]


# -- the command line ---------------------------------------------------------------------


async def _filled_home(home: Path) -> list[uuid.UUID]:
    rt = Runtime(exchange=ExchangeSettings(home=home))
    async with await OutboxStore.open(
        None, rt.sqlite(f"outbox-{SCHOOL}.db"), owner=SCHOOL
    ) as store:
        await store.insert(SCHOOL, [prepared(1), prepared(2, c.HEALTH_UPDATE), prepared(3)])
        await store.mark_sent(SCHOOL, [p.entry_id for p in await store.pending(SCHOOL, 2)])
        await store.apply_receipts(
            SCHOOL, [receipt(1), receipt(2, "REFUSED", "not_permitted_by_agreement")]
        )
    return [uuid.UUID(int=n) for n in (1, 2, 3)]


async def test_receipts_command_lists_status_and_receipt(tmp_path: Path) -> None:
    ids = await _filled_home(tmp_path)
    runner = CliRunner()
    args = ["receipts", "--home", str(tmp_path), "--agency", SCHOOL]
    # the command runs its own event loop, so it gets a thread of its own
    everything = await asyncio.to_thread(runner.invoke, producer, args)
    assert everything.exit_code == 0, everything.output
    header, *rows, total = everything.output.splitlines()
    assert header.split()[:3] == ["MESSAGE", "ID", "TYPE"]
    assert [r.split()[0] for r in rows] == [str(i) for i in ids]
    assert rows[0].split()[1] == "attendance_update"
    assert rows[0].split()[4:] == ["DELIVERED", "DELIVERED", "delivered"]
    assert rows[1].split()[4:] == ["REFUSED", "REFUSED", "not_permitted_by_agreement:", "why"]
    assert rows[2].split()[4:] == ["PENDING", "-"]
    assert total == "3 entries, 1 awaiting"
    pending = await asyncio.to_thread(runner.invoke, producer, [*args, "--pending"])
    assert pending.exit_code == 0, pending.output
    assert [r.split()[0] for r in pending.output.splitlines()[1:-1]] == [str(ids[2])]


def test_receipts_table_of_an_empty_outbox() -> None:
    assert receipts_table([])[-1] == "0 entries, 0 awaiting"
