"""The social worker's durable queue, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from consumers.queue import QueueEntry, QueueItem, QueueSelection, QueueStore
from consumers.service import DeliveryConsumer
from safeguard.parties import DEMO_PARTIES, LA, SCHOOL
from safeguard.runtime import Runtime
from sgx.errors import ConfigError, NotFound, StoreError
from sgx.kafka.quarantine import Quarantined
from sgx.keys.key_admin import init_trust
from sgx.ops.metrics import ConsumerMetrics
from sgx.settings import ExchangeSettings
from sgx.wire import contract as c
from sgx.wire.contract import default_contract
from sgx.wire.envelope import Opener, Purpose, Sealer, pack
from tests import samples
from tests.conftest_db import BACKENDS, Backend, backend

AUTHORED = datetime(2024, 3, 1, 9, 15, 30, 123456, tzinfo=timezone(timedelta(hours=1)))


def entry(n: int, recipient: str = "sw-anna", **changes: object) -> QueueEntry:
    made = QueueEntry(
        notification_id=f"00000000-0000-4000-8000-{n:012d}",
        recipient_id=recipient,
        recipient_role="social_worker",
        team="east",
        route_reason="allocated",
        notification_type="org.safeguarding.exchange.AttendanceUpdate",
        urgency="routine",
        sender_agency="school-oakfield",
        authored_at=AUTHORED,
        routed_at=AUTHORED + timedelta(seconds=1),
        restrictions=("THIRD_PARTY_AUTHOR_CONSENT",),
        withheld=("child.address", "child.date_of_birth"),
        envelope=bytes([n % 256]) * 700 + b"\x00\xff",
        source_offset=f"sgx.delivery.la-north/0/{n}",
        delivery_id=f"delivery-{n}",
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def bad_record(offset: int, **changes: object) -> Quarantined:
    made = Quarantined(
        topic="sgx.delivery.la-north",
        partition=1,
        offset=offset,
        item=0,
        reason="tampered_ciphertext",
        detail="GCM tag did not verify",
        raw=b"\xc3\x01garbage",
        message_id=None,
        quarantined_at=datetime(2024, 3, 1, 9, 0, tzinfo=UTC),
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def as_entry(item: QueueItem) -> QueueEntry:
    names = [f.name for f in dataclasses.fields(QueueEntry)]
    return QueueEntry(**{name: getattr(item, name) for name in names})


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


@pytest.fixture
async def store(db: Backend) -> AsyncIterator[QueueStore]:
    async with await QueueStore.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="la-test"
    ) as opened:
        yield opened


async def test_store_batch_is_idempotent(store: QueueStore) -> None:
    first = [entry(1), entry(2), entry(3)]
    assert await store.store_batch(first) == 3
    assert await store.store_batch([*first, entry(4)]) == 1
    assert await store.count() == 4
    assert set((await store.rows_per_notification()).values()) == {1}


async def test_duplicates_within_one_batch_are_stored_once(store: QueueStore) -> None:
    assert await store.store_batch([entry(1), entry(1), entry(1, source_offset="x/0/9")]) == 1
    assert await store.count() == 1


async def test_one_notification_for_two_recipients_is_two_rows(store: QueueStore) -> None:
    assert await store.store_batch([entry(1), entry(1, recipient="sw-ben")]) == 2
    rows = await store.rows_per_notification()
    assert rows == {
        (entry(1).notification_id, "sw-anna"): 1,
        (entry(1).notification_id, "sw-ben"): 1,
    }


async def _deliveries_kept(store: QueueStore) -> list[str]:
    async with store.engine.connect() as conn:
        query = text(f"SELECT delivery_id FROM {_table(store, 'queue_delivery')} ORDER BY 1")
        return [str(row[0]) for row in await conn.execute(query)]


def _table(store: QueueStore, name: str) -> str:
    return f'"{store.schema}"."{name}"' if store.schema else f'"{name}"'


async def test_a_delivery_for_two_addressees_is_kept_once(store: QueueStore) -> None:
    shared = b"sealed once" * 70
    both = [entry(1, who, envelope=shared, delivery_id="d-1") for who in ("sw-anna", "tm-jo")]
    assert await store.store_batch(both) == 2
    assert await _deliveries_kept(store) == ["d-1"]
    items = await store.select(QueueSelection(everything=True))
    assert [(i.recipient_id, i.envelope, i.delivery_id) for i in items] == [
        ("sw-anna", shared, "d-1"), ("tm-jo", shared, "d-1"),
    ]  # fmt: skip


async def test_a_delivery_sealed_again_for_rows_already_queued_is_not_kept(
    store: QueueStore,
) -> None:
    """The gateway publishes a batch again after a crash, each delivery sealed anew (a new
    message id): its rows are already queued, so its envelope would be named by none."""
    first = [entry(1, who, envelope=b"first" * 100, delivery_id="d-1") for who in ("a", "b")]
    await store.store_batch(first)
    again = [entry(1, who, envelope=b"again" * 100, delivery_id="d-2") for who in ("a", "b")]
    assert await store.store_batch(again) == 0
    assert await _deliveries_kept(store) == ["d-1"]
    # a row of it that is new (an addressee not queued the first time) keeps it
    grown = [entry(1, who, envelope=b"grown" * 100, delivery_id="d-3") for who in ("a", "c")]
    assert await store.store_batch(grown) == 1
    assert await _deliveries_kept(store) == ["d-1", "d-3"]
    everything = await store.select(QueueSelection(everything=True))
    items = {i.recipient_id: i.envelope for i in everything}
    assert items == {"a": b"first" * 100, "b": b"first" * 100, "c": b"grown" * 100}


async def test_a_batch_is_the_same_few_driver_calls_for_one_row_or_four_hundred(
    store: QueueStore,
) -> None:
    from tests.unit.test_audit_writer import counted

    calls = []
    for first, count in ((1, 1), (1000, 200)):
        batch = [entry(n, who) for n in range(first, first + count) for who in ("a", "b")]
        with counted() as made:
            assert await store.store_batch(batch, [bad_record(first)]) == len(batch)
        calls.append(made)
    assert calls[0] == calls[1]
    assert calls[0].count("transaction") == 1
    # (PostgreSQL: the queue's lock) the rows, their deliveries, the quarantine
    assert len(calls[0]) == (4 if store.engine.dialect.name == "sqlite" else 5), calls[0]


async def test_failing_batch_leaves_nothing(store: QueueStore) -> None:
    broken = bad_record(7, topic=cast("str", None))  # NOT NULL violated after the entries
    with pytest.raises(StoreError) as caught:
        await store.store_batch([entry(1), entry(2)], [bad_record(6), broken])
    assert caught.value.retriable
    assert await store.count() == 0
    assert await store.quarantine_list() == []
    assert await store.store_batch([entry(1), entry(2)], [bad_record(6)]) == 2


async def test_entries_round_trip_oldest_first(store: QueueStore) -> None:
    batch = [entry(3), entry(1, team=None, restrictions=(), withheld=()), entry(2, "sw-ben")]
    await store.store_batch(batch)
    items = await store.list("sw-anna")
    assert [as_entry(item) for item in items] == [batch[0], batch[1]]
    assert [item.item_id for item in items] == sorted(item.item_id for item in items)
    assert all(item.status == "unread" and item.acked_at is None for item in items)
    assert items[0].authored_at.tzinfo == UTC
    assert items[0].queued_at.tzinfo == UTC


async def test_get_returns_the_item(store: QueueStore) -> None:
    await store.store_batch([entry(1)])
    (item,) = await store.list("sw-anna")
    assert await store.get(item.item_id) == item
    assert item.envelope == entry(1).envelope


async def test_ack_marks_read_and_keeps_the_first_acknowledgement(store: QueueStore) -> None:
    await store.store_batch([entry(1), entry(2)])
    first, second = await store.list("sw-anna")
    acked = await store.ack(first.item_id, "anna")
    assert (acked.status, acked.acked_by) == ("acked", "anna")
    assert acked.acked_at is not None
    assert acked.acked_at.tzinfo == UTC
    again = await store.ack(first.item_id, "ben")
    assert again == acked
    assert await store.list("sw-anna") == [second]
    assert [i.item_id for i in await store.list("sw-anna", include_acked=True)] == [
        first.item_id,
        second.item_id,
    ]
    assert await store.count("sw-anna", unread_only=True) == 1


async def test_unknown_item_is_not_found(store: QueueStore) -> None:
    with pytest.raises(NotFound):
        await store.get(424242)
    with pytest.raises(NotFound):
        await store.ack(424242, "anna")


async def test_count_per_recipient(store: QueueStore) -> None:
    await store.store_batch([entry(1), entry(2), entry(3, "sw-ben")])
    assert await store.count("sw-anna") == 2
    assert await store.count("sw-ben") == 1
    assert await store.count("sw-nobody") == 0


async def test_quarantine_is_idempotent_on_offset(store: QueueStore) -> None:
    assert await store.store_batch([], [bad_record(5), bad_record(5, detail="again")]) == 0
    await store.store_batch([], [bad_record(5, reason="other"), bad_record(6)])
    kept = await store.quarantine_list()
    assert kept == [bad_record(5), bad_record(6)]


async def test_rows_survive_reopening(db: Backend) -> None:
    async with await QueueStore.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="la-test"
    ) as first:
        await first.store_batch([entry(1)])
    async with await QueueStore.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="la-test"
    ) as second:
        assert await second.store_batch([entry(1), entry(2)]) == 1
        assert await second.count() == 2


async def test_naive_datetime_is_a_programming_error(store: QueueStore) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        await store.store_batch([entry(1, authored_at=datetime(2024, 3, 1))])
    assert await store.count() == 0


async def test_schema_on_sqlite_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        await QueueStore.open(None, tmp_path / "q.db", schema="nope", owner="la-test")


async def test_unreachable_postgres_is_a_store_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dsn = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test"
    with pytest.raises(StoreError) as caught:
        await QueueStore.open(dsn, tmp_path / "unused.db", owner="la-test")
    assert caught.value.retriable


# -- the delivery consumer: each envelope queued or kept, never dropped ------------------


class _Commits:
    """Stands in for the Kafka consumer, assigned ``assigned``: keeps the offsets each
    commit names."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


@dataclasses.dataclass(frozen=True)
class _Record:
    topic: str
    partition: int
    offset: int
    value: bytes


def _delivery(n: int, *addressees: str) -> dict[str, object]:
    return {
        "notification_id": uuid.UUID(int=n),
        "recipients": [
            {"id": who, "role": "SOCIAL_WORKER", "team": "east", "name": None,
             "route_reason": "ALLOCATED_WORKER", "audit_sequence": n}
            for who in addressees
        ],
        "sender_agency": SCHOOL,
        "sender_kind": "school",
        "notification_type": c.ATTENDANCE_UPDATE,
        "urgency": "ROUTINE",
        "authored_at": AUTHORED,
        "routed_at": AUTHORED,
        "restrictions": [],
        "onward_consent": [],
        "withheld": [],
        "notification": default_contract().encode(c.ATTENDANCE_UPDATE, samples.attendance_update()),
    }  # fmt: skip


async def test_consumer_queues_each_addressee_and_keeps_what_it_cannot_trust(
    store: QueueStore, tmp_path: Path
) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    rt = Runtime(exchange=ExchangeSettings(home=tmp_path, metrics_port=-1))
    trust, contract = rt.trust(), rt.contract()
    gateway = Sealer(rt.identity("gateway", trust), trust, LA)
    impostor = Sealer(rt.identity(SCHOOL, trust), trust, LA)
    good = [
        gateway.seal(Purpose.DELIVERY, uuid.uuid4(), contract.encode(c.DELIVERY, d))
        for d in (_delivery(1, "sw-anna", "tm-jones"), _delivery(2, "sw-ben"))
    ]
    forged = impostor.seal(
        Purpose.DELIVERY, uuid.uuid4(), contract.encode(c.DELIVERY, _delivery(3, "sw-anna"))
    )
    tampered = good[1][:-1] + bytes([good[1][-1] ^ 1])
    topic = f"sgx.delivery.{LA}"
    commits = _Commits({TopicPartition(topic, p) for p in range(3)})
    consumer = DeliveryConsumer(
        opener=Opener(rt.identity(LA, trust), trust),
        contract=contract,
        store=store,
        consumer=cast("AIOKafkaConsumer", commits),
        metrics=ConsumerMetrics(CollectorRegistry()),
    )
    await consumer.process(
        [
            _Record(topic, 0, 0, pack([good[0], forged])),
            _Record(topic, 0, 1, tampered),
            _Record(topic, 1, 0, b"junk"),
            _Record(topic, 1, 1, good[1]),
        ]
    )
    # one commit, after the batch, of the two partitions it read (not the idle third)
    assert commits.commits == [{TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 2}]
    assert consumer.queued == 3
    queued = {(i.recipient_id, i.notification_id, i.source_offset) for i in await _all(store)}
    assert queued == {
        ("sw-anna", str(uuid.UUID(int=1)), f"{topic}/0/0/0"),
        ("tm-jones", str(uuid.UUID(int=1)), f"{topic}/0/0/0"),
        ("sw-ben", str(uuid.UUID(int=2)), f"{topic}/1/1/0"),
    }
    kept = [(q.partition, q.offset, q.item, q.reason) for q in await store.quarantine_list()]
    assert kept == [
        (0, 0, 1, "not_from_gateway"),
        (0, 1, 0, "tampered_ciphertext"),
        (1, 0, 0, "malformed_envelope"),
    ]
    held = await store.quarantine_list()
    assert [q.raw for q in held] == [forged, tampered, b"junk"]  # kept whole, not dropped
    assert [q.message_id is not None for q in held] == [True, True, False]


async def _all(store: QueueStore) -> list[QueueItem]:
    return [i for who in ("sw-anna", "tm-jones", "sw-ben") for i in await store.list(who)]


async def test_select_pages_a_selection_after_a_cursor(store: QueueStore) -> None:
    from consumers.queue import QueueSelection

    await store.store_batch(
        [entry(1, "sw-anna"), entry(2, "sw-bo", team="west"), entry(3, "tm-cat"),
         entry(4, "mash:la-north", team="MASH"), entry(5, "sw-anna")]
    )  # fmt: skip
    anna = QueueSelection(recipients=frozenset({"sw-anna"}))
    assert [i.notification_id[-1] for i in await store.select(anna)] == ["1", "5"]
    east = QueueSelection(teams=frozenset({"east"}))
    ids = [i.item_id for i in await store.select(east)]
    assert len(ids) == 3
    assert [i.item_id for i in await store.select(east, after=ids[0], limit=1)] == [ids[1]]
    assert await store.select(QueueSelection()) == []
    assert len(await store.select(QueueSelection(everything=True))) == 5
    await store.ack(ids[0], "sw-anna")
    unread = await store.select(east, include_acked=False)
    assert [i.item_id for i in unread] == ids[1:]


@pytest.mark.postgres
async def test_queue_writers_take_turns_on_postgres_so_ids_follow_commit_order(
    tmp_path: Path,
) -> None:
    """A batch waits while another writer holds the queue's lock: an id handed out later is
    committed later, so a reader paging by id misses nothing (see consumers.queue)."""
    import asyncio

    from sqlalchemy import text

    from consumers.queue_writes import WRITE_LOCK as _WRITE_LOCK

    async with backend("postgres", tmp_path) as db, await QueueStore.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="la-test"
    ) as queue:  # fmt: skip
        async with queue.engine.connect() as holder:
            await holder.execute(text(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK})"))
            writing = asyncio.create_task(queue.store_batch([entry(1)]))
            await asyncio.sleep(0.5)
            assert not writing.done(), "a second writer went ahead while the lock was held"
            await holder.commit()
        assert await asyncio.wait_for(writing, 10) == 1


async def test_acknowledged_rows_come_newest_first_a_page_at_a_time(store: QueueStore) -> None:
    """What the queue page's "acknowledged too" lists: each recipient and team read on its
    own index range, merged, newest first, no row twice, paged below a cursor."""
    rows = [entry(n, recipient="sw-anna" if n % 3 else "sw-ben", team="east") for n in range(12)]
    rows += [entry(n, recipient="sw-cara", team="west") for n in range(100, 104)]
    await store.store_batch(rows)
    items = await store.select(QueueSelection(everything=True))
    for item in items:
        if item.notification_id[-3:] not in ("011", "103"):  # two left unread
            await store.ack(item.item_id, "someone")
    anna = QueueSelection(recipients=frozenset({"sw-anna"}))
    team = QueueSelection(recipients=frozenset({"sw-anna"}), teams=frozenset({"east"}))
    page = await store.newest(anna, "acked", before=None, limit=3)
    mine = sorted((i.item_id for i in items if i.recipient_id == "sw-anna"), reverse=True)
    assert [i.item_id for i in page] == [i for i in mine if i != mine[0]][:3], "11 is unread"
    seen: list[int] = []
    before = None
    while chunk := await store.newest(team, "acked", before=before, limit=4):
        seen += [i.item_id for i in chunk]
        before = chunk[-1].item_id
    east = [i.item_id for i in items if i.team == "east" and not i.notification_id.endswith("011")]
    assert seen == sorted(east, reverse=True), "every acknowledged row of the team, once, in order"
