"""The producer outbox: every notification is kept on the agency's own disk before it is sent.

:meth:`Outbox.add` validates and encodes a notification (:meth:`Publisher.prepare`, which
names a wrong field in a ContractError) and inserts it in ONE durable transaction; only
then does it return the notification id. The relay (``producers/relay.py``) publishes
pending entries oldest first and marks them ``SENT`` once the broker has acknowledged
them; the receipt listener (``producers/receipts.py``) records the gateway's answer on
each entry (``DELIVERED``, ``REFUSED`` or ``QUARANTINED``, with reason and detail). A
crash between the broker's ack and the mark makes the relay send the entry again; the
gateway's audit trail and the social worker's queue are idempotent on the notification
id, so a resend never becomes a second queue row.

Entry status::

    PENDING ──broker ack──▶ SENT ──receipt──▶ DELIVERED | REFUSED | QUARANTINED
       └──────────────── receipt (it raced the mark) ───────────┘

**What is kept, and why the plaintext.** An entry holds the fields of a
:class:`~producers.publisher.Prepared`: message id, schema name, Kafka key (the child's
pseudonym, never an identifier) and the validated Avro plaintext. The plaintext is the
agency's own record on the agency's own machine, held like the agency's case system holds
it. It is sealed only when it is sent, so an entry resent after a long outage gets a
fresh data key within its one-hour limit and the current keys of the trust directory,
rather than an envelope sealed hours earlier under a data key that has expired or a key
that has since been rotated or revoked.

**Idempotence.** An entry is unique on (agency, message id): adding a notification whose
id the outbox already holds keeps the first copy and changes nothing, so an agency system
that re-submits after its own crash cannot send a notification twice.

Tables (``schema`` places them in a PostgreSQL schema; one agency per SQLite file, but
every row names its agency so several agencies can share a PostgreSQL schema):

* ``outbox_entry`` — entry_id (serial, the send order), agency, message_id, schema_name,
  kafka_key, plaintext, created_at, status, attempts, sent_at, and the receipt's
  outcome, reason, detail and decision time.
* ``outbox_receipt_quarantine`` — receipt records that could not be opened or read, kept
  with their reason; unique on (topic, partition, offset, item).
"""

from __future__ import annotations

import asyncio
import builtins
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from sqlalchemy import (
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    func,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from producers.publisher import Prepared
from sgx.errors import NotFound
from sgx.kafka.quarantine import Quarantined, quarantine_row, quarantined_from_row
from sgx.store.database import Database
from sgx.store.db import (
    UtcDateTime,
    insert_ignoring_duplicates,
    quarantine_columns,
    serial,
    store_errors,
    write_transaction,
)

Also = Callable[[AsyncConnection], Awaitable[None]]  # more writes in a store's transaction
EntryStatus = Literal["PENDING", "SENT", "DELIVERED", "REFUSED", "QUARANTINED"]
RECEIPT_OUTCOMES: tuple[EntryStatus, ...] = ("DELIVERED", "REFUSED", "QUARANTINED")
AWAITING: tuple[EntryStatus, ...] = ("PENDING", "SENT")  # no receipt yet


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One outbox entry as listed (without its plaintext)."""

    entry_id: int
    agency: str
    message_id: uuid.UUID
    schema_name: str
    created_at: datetime
    status: EntryStatus
    attempts: int
    sent_at: datetime | None
    receipt_outcome: str | None
    receipt_reason: str | None
    receipt_detail: str | None
    receipt_at: datetime | None


@dataclass(frozen=True, slots=True)
class Pending:
    """An entry the broker has not acknowledged yet, ready to send."""

    entry_id: int
    prepared: Prepared


@dataclass(frozen=True, slots=True)
class ReceiptUpdate:
    """The gateway's answer about one message, as read off the receipts topic."""

    message_id: uuid.UUID
    outcome: EntryStatus  # one of RECEIPT_OUTCOMES
    reason: str
    detail: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class Depth:
    """How far the outbox is behind the broker: unacknowledged entries, the oldest's time."""

    pending: int
    oldest: datetime | None

    def oldest_age(self, now: datetime) -> float:
        return 0.0 if self.oldest is None else max((now - self.oldest).total_seconds(), 0.0)


_LISTED = (
    "entry_id", "agency", "message_id", "schema_name", "created_at", "status", "attempts",
    "sent_at", "receipt_outcome", "receipt_reason", "receipt_detail", "receipt_at",
)  # fmt: skip


def _entry_table(metadata: MetaData) -> Table:
    return Table(
        "outbox_entry",
        metadata,
        Column("entry_id", serial(), primary_key=True),
        Column("agency", String(200), nullable=False),
        Column("message_id", String(36), nullable=False),
        Column("schema_name", String(200), nullable=False),
        Column("kafka_key", LargeBinary, nullable=False),
        Column("plaintext", LargeBinary, nullable=False),
        Column("created_at", UtcDateTime, nullable=False),
        Column("status", String(12), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("sent_at", UtcDateTime),
        Column("receipt_outcome", String(12)),
        Column("receipt_reason", String(100)),
        Column("receipt_detail", Text),
        Column("receipt_at", UtcDateTime),
        UniqueConstraint("agency", "message_id", name="uq_outbox_entry_message"),
        Index("ix_outbox_entry_status", "agency", "status", "entry_id"),
    )


def _quarantine_table(metadata: MetaData) -> Table:
    return Table(
        "outbox_receipt_quarantine",
        metadata,
        Column("quarantine_id", serial(), primary_key=True),
        Column("agency", String(200), nullable=False),
        *quarantine_columns("uq_outbox_receipt_offset"),
    )


def _listed(row: RowMapping) -> OutboxEntry:
    values = dict(row)
    values["message_id"] = uuid.UUID(values["message_id"])
    return OutboxEntry(**values)


class OutboxStore(Database):
    """The durable outbox of one or more agencies (SQLite or PostgreSQL)."""

    KIND = "outbox"

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        super().__init__(engine, metadata)
        self._entries = _entry_table(metadata)
        self._quarantine = _quarantine_table(metadata)
        self._add = insert_ignoring_duplicates(engine, self._entries, "agency", "message_id")
        self._add_quarantine = insert_ignoring_duplicates(
            engine, self._quarantine, "topic", "partition", "offset", "item"
        )
        t = self._entries
        self._receipt = (
            update(t)
            .where(t.c.agency == bindparam("b_agency"), t.c.message_id == bindparam("b_message"))
            .values(
                status=bindparam("b_outcome"),
                receipt_outcome=bindparam("b_outcome"),
                receipt_reason=bindparam("b_reason"),
                receipt_detail=bindparam("b_detail"),
                receipt_at=bindparam("b_decided", type_=UtcDateTime),
            )
        )

    async def insert(
        self, agency: str, items: Sequence[Prepared], *, also: Also | None = None
    ) -> int:
        """Keep ``items`` as PENDING in ONE transaction; return how many were new.

        ``also`` writes more in the same transaction (an author's answer on its consent
        request); if it raises, nothing is kept.
        """
        now = datetime.now(UTC)
        rows = [self._row(agency, item, now) for item in items]
        if not rows:
            return 0
        with store_errors("add to the outbox"):
            async with write_transaction(self._engine) as conn:
                result = await conn.execute(self._add.returning(self._entries.c.entry_id), rows)
                if also is not None:
                    await also(conn)
                return len(result.all())

    @staticmethod
    def _row(agency: str, item: Prepared, now: datetime) -> dict[str, Any]:
        return {
            "agency": agency,
            "message_id": str(item.message_id),
            "schema_name": item.name,
            "kafka_key": item.key,
            "plaintext": item.plaintext,
            "created_at": now,
            "status": "PENDING",
            "attempts": 0,
        }

    async def pending(self, agency: str, limit: int) -> list[Pending]:
        """Up to ``limit`` entries the broker has not acknowledged, oldest first."""
        t = self._entries
        query = (
            select(t.c.entry_id, t.c.message_id, t.c.schema_name, t.c.kafka_key, t.c.plaintext)
            .where(t.c.agency == agency, t.c.status == "PENDING")
            .order_by(t.c.entry_id)
            .limit(limit)
        )
        with store_errors("read pending outbox entries"):
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
        return [
            Pending(row[0], Prepared(uuid.UUID(row[1]), row[2], bytes(row[3]), bytes(row[4])))
            for row in rows
        ]

    async def mark_sent(self, agency: str, entry_ids: Sequence[int]) -> None:
        """Record the broker's ack for ``entry_ids`` in ONE transaction.

        A receipt that arrived before this mark (the gateway can be that quick) is kept:
        only PENDING entries become SENT.
        """
        t = self._entries
        change = (
            update(t)
            .where(t.c.agency == agency, t.c.entry_id.in_(list(entry_ids)))
            .values(
                status=case((t.c.status == "PENDING", "SENT"), else_=t.c.status),
                sent_at=func.coalesce(t.c.sent_at, bindparam("now", type_=UtcDateTime)),
                attempts=t.c.attempts + 1,
            )
        )
        await self._write(change, {"now": datetime.now(UTC)}, "mark outbox entries sent")

    async def note_failure(self, agency: str, entry_ids: Sequence[int]) -> None:
        """Count a failed send of ``entry_ids``; they stay PENDING."""
        t = self._entries
        change = (
            update(t)
            .where(t.c.agency == agency, t.c.entry_id.in_(list(entry_ids)))
            .values(attempts=t.c.attempts + 1)
        )
        await self._write(change, {}, "count a failed outbox send")

    async def _write(self, statement: Any, params: dict[str, Any], action: str) -> None:
        with store_errors(action):
            async with write_transaction(self._engine) as conn:
                await conn.execute(statement, params)

    async def apply_receipts(
        self,
        agency: str,
        receipts: Sequence[ReceiptUpdate],
        quarantined: Sequence[Quarantined] = (),
        *,
        also: Also | None = None,
    ) -> None:
        """Record receipts on their entries and keep unreadable records, in ONE transaction
        (with ``also``: the consent requests read beside them).

        A receipt for a message this outbox does not hold (published some other way)
        changes nothing; a repeated receipt writes the same answer again.
        """
        updates = [_receipt_params(agency, r) for r in receipts]
        bad = [{"agency": agency, **quarantine_row(q, self._quarantine)} for q in quarantined]
        if not updates and not bad and also is None:
            return
        with store_errors("record receipts in the outbox"):
            async with write_transaction(self._engine) as conn:
                if updates:
                    await conn.execute(self._receipt, updates)
                if bad:
                    await conn.execute(self._add_quarantine, bad)
                if also is not None:
                    await also(conn)

    async def entries(self, agency: str, *, awaiting_only: bool = False) -> list[OutboxEntry]:
        """The agency's entries, oldest first; only those with no receipt if ``awaiting_only``."""
        t = self._entries
        query = select(*(t.c[name] for name in _LISTED)).where(t.c.agency == agency)
        if awaiting_only:
            query = query.where(t.c.status.in_(AWAITING))
        with store_errors("list the outbox"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query.order_by(t.c.entry_id))
                return [_listed(row) for row in result.mappings()]

    async def get(self, agency: str, message_id: uuid.UUID) -> OutboxEntry:
        """One entry by message id; NotFound if the outbox does not hold it."""
        t = self._entries
        query = select(*(t.c[name] for name in _LISTED)).where(
            t.c.agency == agency, t.c.message_id == str(message_id)
        )
        with store_errors("read an outbox entry"):
            async with self._engine.connect() as conn:
                row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"the outbox of {agency} holds no message {message_id}")
        return _listed(row)

    async def depth(self, agency: str) -> Depth:
        """How many entries await the broker's ack, and when the oldest was added."""
        t = self._entries
        query = select(func.count(), func.min(t.c.created_at)).where(
            t.c.agency == agency, t.c.status == "PENDING"
        )
        with store_errors("measure the outbox"):
            async with self._engine.connect() as conn:
                count, oldest = (await conn.execute(query)).one()
        return Depth(int(count), oldest)

    async def quarantine_list(self, agency: str) -> builtins.list[Quarantined]:
        """Receipt records that could not be read, in the order they were kept."""
        q = self._quarantine
        query = select(q).where(q.c.agency == agency).order_by(q.c.quarantine_id)
        with store_errors("list the receipt quarantine"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query)
                return [quarantined_from_row(row) for row in result.mappings()]


def _receipt_params(agency: str, receipt: ReceiptUpdate) -> dict[str, Any]:
    return {
        "b_agency": agency,
        "b_message": str(receipt.message_id),
        "b_outcome": receipt.outcome,
        "b_reason": receipt.reason,
        "b_detail": receipt.detail,
        "b_decided": receipt.decided_at,
    }


class Prepares(Protocol):
    """What the outbox needs of a publisher: validation and encoding, no I/O."""

    def prepare(self, name: str, record: Mapping[str, Any]) -> Prepared: ...


class Outbox:
    """An agency's outbox: validate, keep durably, and wake the relay.

    ``added`` is set whenever new entries were committed, so a relay in the same process
    sends them at once instead of at its next poll.
    """

    def __init__(self, store: OutboxStore, publisher: Prepares, agency: str) -> None:
        self.store = store
        self.agency = agency
        self.added = asyncio.Event()
        self._publisher = publisher

    async def add(
        self, name: str, record: Mapping[str, Any], *, also: Also | None = None
    ) -> uuid.UUID:
        """Validate ``record`` and keep it durably; return its notification id.

        Raises ContractError (naming the field) before anything is written. Adding an id
        the outbox already holds changes nothing. ``also`` writes more in the same
        transaction.
        """
        (message_id,) = await self.add_many([(name, record)], also=also)
        return message_id

    async def add_many(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], *, also: Also | None = None
    ) -> builtins.list[uuid.UUID]:
        """Validate every item first (all or nothing), then keep them in ONE transaction."""
        prepared = [self._publisher.prepare(name, record) for name, record in items]
        if await self.store.insert(self.agency, prepared, also=also):
            self.added.set()
        return [p.message_id for p in prepared]
