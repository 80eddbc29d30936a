"""A local authority's durable queue: one row per (notification, recipient), in SQLite or
PostgreSQL.

The consumer stores each polled batch with :meth:`QueueStore.store_batch` in ONE
transaction — the queue entries and the records it had to quarantine — and commits its
Kafka offsets only afterwards. After a crash Kafka redelivers the batch and the queue
ignores rows it already holds (unique on ``notification_id, recipient_id``), so every
notification ends up exactly once in each recipient's queue.

Item ids are handed out in commit order (SQLite has one writer; on PostgreSQL every
batch takes the same transaction-scoped advisory lock before it inserts), so a reader
that pages with "items after id N" (:meth:`QueueStore.select`, the inbox's cursor) never
misses a row that a slower concurrent transaction commits later with a smaller id.

The sealed delivery is kept exactly as it came off the topic, ONCE however many
addressees it names (``queue_delivery``, by the envelope's message id; each addressee's row
names it, ``delivery_id``): the queue keeps it encrypted at rest, and the reader opens it
with the local authority's key. Rows queued before queue 0006 hold their envelope in their
own ``envelope`` column, and are read as they are. The other columns are routing facts
the queue needs to list and count items (ids, type, urgency, restriction codes); no
child identifier is among them.

A batch is one transaction of a few driver calls (:mod:`sgx.store.driver`): the rows,
the deliveries they name, the quarantine. A delivery is kept only if one of its rows is:
a delivery whose every addressee is already queued (the gateway published it again
after a crash, sealed anew) is not kept a second time.

Tables (``schema`` places them in a PostgreSQL schema):

* ``queue_item`` — item_id (serial), the :class:`QueueEntry` fields (the envelope as
  ``delivery_id``; ``envelope`` only in rows of queue 0005 and before), queued_at, status
  (``unread`` | ``acked``), acked_at, acked_by; unique (notification_id, recipient_id).
* ``queue_delivery`` — delivery_id (the sealed delivery's message id), envelope.
* ``known_schema`` — writer schemas of a newer release the consumer learned from the
  schema registry (fingerprint, type, canonical form), so every process reading this queue
  can open what it holds (:mod:`sgx.wire.schema_registry`).
* ``information_status``, ``information_answer`` — the MASH's network checks: the
  gateway's word on each request, and which item answers it
  (:mod:`consumers.information_rows`).
* ``gateway_answer``, ``gateway_receipt`` — the gateway's answers on the LA's receipts
  topic: share decisions and consent outcomes by request, receipts by message
  (:mod:`consumers.answer_rows`).
* ``consumer_quarantine`` — the :class:`~sgx.kafka.quarantine.Quarantined` fields but
  ``sender_claimed``; unique (topic, partition, offset, item), so a redelivered bad
  envelope is kept once.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    Column,
    ColumnElement,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.answer_rows import AnswerRows, GatewayAnswer, GatewayReceipt
from consumers.information_rows import AnswerLink, InformationRows, InformationStatusRow
from consumers.queue_writes import QueueWrites
from sgx.errors import NotFound
from sgx.kafka.quarantine import Quarantined, quarantined_from_row
from sgx.store.database import Database
from sgx.store.db import (
    UtcDateTime,
    decode_strings,
    insert_ignoring_duplicates,
    quarantine_columns,
    serial,
    store_errors,
    write_transaction,
)

QueueStatus = Literal["unread", "acked"]
STATUSES: tuple[QueueStatus, ...] = get_args(QueueStatus)


@dataclass(frozen=True)
class QueueSelection:
    """Which rows a reader may see: addressed to one of ``recipients``, or (a supervisor's
    view) to anyone in one of ``teams``. An empty selection selects nothing."""

    recipients: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    everything: bool = False  # a case-management system scoped to the whole LA's queue


@dataclass(frozen=True)
class QueueEntry:
    """One delivery for one recipient, as the consumer inserts it."""

    notification_id: str
    recipient_id: str
    recipient_role: str
    team: str | None
    route_reason: str
    notification_type: str
    urgency: str
    sender_agency: str
    authored_at: datetime
    routed_at: datetime
    restrictions: tuple[str, ...]
    withheld: tuple[str, ...]
    envelope: bytes
    source_offset: str
    # the sealed delivery's message id, under which the queue keeps its envelope once for
    # all its addressees (None: one is made from the envelope's bytes); None in a row
    # queued before queue 0006, which holds its envelope itself
    delivery_id: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class QueueItem(QueueEntry):
    """A queue row: the entry plus what the queue adds."""

    item_id: int
    queued_at: datetime
    status: QueueStatus
    acked_at: datetime | None
    acked_by: str | None


_STRING_TUPLES = ("restrictions", "withheld")


def _item_table(metadata: MetaData) -> Table:
    return Table(
        "queue_item",
        metadata,
        Column("item_id", serial(), primary_key=True),
        Column("notification_id", String(64), nullable=False),
        Column("recipient_id", String(200), nullable=False),
        Column("recipient_role", String(100), nullable=False),
        Column("team", String(200)),
        Column("route_reason", String(100), nullable=False),
        Column("notification_type", String(200), nullable=False),
        Column("urgency", String(50), nullable=False),
        Column("sender_agency", String(200), nullable=False),
        Column("authored_at", UtcDateTime, nullable=False),
        Column("routed_at", UtcDateTime, nullable=False),
        Column("restrictions", Text, nullable=False),
        Column("withheld", Text, nullable=False),
        Column("envelope", LargeBinary),  # rows of queue 0005 and before
        Column("delivery_id", String(64)),  # queue_delivery's, for rows since queue 0006
        Column("source_offset", String(300), nullable=False),
        Column("queued_at", UtcDateTime, nullable=False),
        Column("status", String(10), nullable=False),
        Column("acked_at", UtcDateTime),
        Column("acked_by", String(200)),
        UniqueConstraint("notification_id", "recipient_id", name="uq_queue_item_delivery"),
        Index("ix_queue_item_recipient", "recipient_id", "status", "item_id"),
        # a team's rows by status (a supervisor's queue, a team-scoped API client), as
        # by recipient above, and the monitor's unread rows by team: each reads its own
        # rows, not the queue's history (queue 0004)
        Index("ix_queue_item_status", "status", "team", "item_id"),
    )


def _delivery_table(metadata: MetaData) -> Table:
    """Each sealed delivery once, by its message id, for every addressee's row naming it."""
    return Table(
        "queue_delivery",
        metadata,
        Column("delivery_id", String(64), primary_key=True),
        Column("envelope", LargeBinary, nullable=False),
    )


def _schema_table(metadata: MetaData) -> Table:
    return Table(
        "known_schema",
        metadata,
        Column("fingerprint", String(16), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("schema", Text, nullable=False),
        Column("learned_at", UtcDateTime, nullable=False),
    )


def _quarantine_table(metadata: MetaData) -> Table:
    return Table(
        "consumer_quarantine",
        metadata,
        Column("quarantine_id", serial(), primary_key=True),
        Column("message_id", String(300)),
        *quarantine_columns("uq_consumer_quarantine_offset"),
    )


def _covers(items: Table, selection: QueueSelection) -> ColumnElement[bool]:
    if selection.everything:
        return true()
    clauses: builtins.list[ColumnElement[bool]] = []
    if selection.recipients:
        clauses.append(items.c.recipient_id.in_(sorted(selection.recipients)))
    if selection.teams:
        clauses.append(items.c.team.in_(sorted(selection.teams)))
    return or_(*clauses) if clauses else false()


def _item(row: RowMapping) -> QueueItem:
    values = dict(row)
    for name in _STRING_TUPLES:
        values[name] = decode_strings(values[name])
    return QueueItem(**values)


class QueueStore(Database):
    """The durable queue of one local authority's recipients (SQLite or PostgreSQL)."""

    KIND = "queue"

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        super().__init__(engine, metadata)
        self._items = _item_table(metadata)
        self._deliveries = _delivery_table(metadata)
        self._quarantine = _quarantine_table(metadata)
        self._schemas = _schema_table(metadata)
        self.information = InformationRows(engine, metadata)
        self.answered = AnswerRows(engine, metadata)
        self._writes = QueueWrites(
            engine, self._items, self._deliveries, self._quarantine, self.information,
            self.answered,
        )  # fmt: skip
        items, deliveries = self._items, self._deliveries
        # a row with its envelope: its own (before queue 0006) or its delivery's
        self._rows = select(
            *(c for c in items.c if c.name != "envelope"),
            func.coalesce(items.c.envelope, deliveries.c.envelope).label("envelope"),
        ).select_from(items.outerjoin(deliveries, items.c.delivery_id == deliveries.c.delivery_id))

    async def close(self) -> None:
        await self._writes.close()
        await super().close()

    async def store_batch(
        self,
        entries: Sequence[QueueEntry],
        quarantined: Sequence[Quarantined] = (),
        *,
        statuses: Sequence[InformationStatusRow] = (),
        answers: Sequence[AnswerLink] = (),
        gateway: Sequence[GatewayAnswer | GatewayReceipt] = (),
    ) -> int:
        """Store a batch in ONE transaction; return how many queue rows were new.

        Entries already queued (same notification and recipient), records already
        quarantined (same topic, partition and offset), network-check rows already kept
        (same request) and gateway answers already kept (same request and state; a receipt
        for the same message) are ignored.
        """
        if not (entries or quarantined or statuses or answers or gateway):
            return 0
        with store_errors("store a queue batch"):
            return await self._writes.store(
                entries, quarantined, datetime.now(UTC), statuses, answers, gateway
            )

    async def list(
        self, recipient_id: str, *, include_acked: bool = False
    ) -> builtins.list[QueueItem]:
        """The recipient's items, oldest first; unread ones only unless ``include_acked``."""
        query = self._rows.where(self._items.c.recipient_id == recipient_id)
        if not include_acked:
            query = query.where(self._items.c.status == "unread")
        with store_errors("list a queue"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query.order_by(self._items.c.item_id))
                return [_item(row) for row in result.mappings()]

    async def select(
        self,
        selection: QueueSelection,
        *,
        after: int = 0,
        limit: int | None = None,
        include_acked: bool = True,
        notification_ids: Sequence[str] | None = None,
    ) -> builtins.list[QueueItem]:
        """Rows ``selection`` covers with ids above ``after``, in id (= commit) order."""
        c = self._items.c
        query = self._rows.where(_covers(self._items, selection), c.item_id > after)
        # naming every status lets the (recipient or team, status, item_id) indexes range
        # over item_id for each status, instead of reading the recipient's whole history
        query = query.where(c.status.in_(STATUSES if include_acked else ("unread",)))
        if notification_ids is not None:
            query = query.where(c.notification_id.in_(list(notification_ids)))
        query = query.order_by(c.item_id)
        if limit is not None:
            query = query.limit(limit)
        with store_errors("select queue items"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query)
                return [_item(row) for row in result.mappings()]

    async def newest(
        self, selection: QueueSelection, status: QueueStatus, *, before: int | None, limit: int
    ) -> builtins.list[QueueItem]:
        """Up to ``limit`` rows of ``status`` that ``selection`` covers, newest first, below
        ``before`` if given. Each recipient and each team is read on its own index range,
        ``limit`` rows at most, and the ranges merged: what a page costs does not grow with
        the queue's history, a supervisor's team included."""
        c = self._items.c
        ranges: builtins.list[ColumnElement[bool]]
        if selection.everything:
            ranges = [true()]
        else:
            ranges = [c.recipient_id == r for r in sorted(selection.recipients)]
            ranges += [c.team == t for t in sorted(selection.teams)]
        found: dict[int, QueueItem] = {}
        with store_errors("select queue items"):
            async with self._engine.connect() as conn:
                for one in ranges:
                    query = self._rows.where(one, c.status == status)
                    if before is not None:
                        query = query.where(c.item_id < before)
                    query = query.order_by(c.item_id.desc()).limit(limit)
                    for row in (await conn.execute(query)).mappings():
                        item = _item(row)
                        found[item.item_id] = item
        return sorted(found.values(), key=lambda i: -i.item_id)[:limit]

    async def get(self, item_id: int) -> QueueItem:
        """One item by id; NotFound if there is none."""
        with store_errors("read a queue item"):
            async with self._engine.connect() as conn:
                return await self._fetch(conn, item_id)

    async def answering(self, request_ids: Sequence[str]) -> dict[str, int]:
        """The queue item (its id) answering each of these information requests that has
        an answer: the request's link row, then the item by its unique (notification,
        recipient)."""
        links, items = self.information.answers, self._items
        query = select(links.c.request_id, items.c.item_id).select_from(
            links.join(
                items,
                (items.c.notification_id == links.c.notification_id)
                & (items.c.recipient_id == links.c.recipient_id),
            )
        )
        found: dict[str, int] = {}
        with store_errors("read the answers to information requests"):
            async with self._engine.connect() as conn:
                for start in range(0, len(request_ids), 500):
                    chunk = list(request_ids[start : start + 500])
                    result = await conn.execute(query.where(links.c.request_id.in_(chunk)))
                    found.update({str(r): int(i) for r, i in result.all()})
        return found

    async def _fetch(self, conn: AsyncConnection, item_id: int) -> QueueItem:
        query = self._rows.where(self._items.c.item_id == item_id)
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise NotFound(f"no queue item {item_id}")
        return _item(row)

    async def ack(self, item_id: int, by: str) -> QueueItem:
        """Mark an item read by ``by``; acking it again keeps the first acknowledgement."""
        change = (
            update(self._items)
            .where(self._items.c.item_id == item_id, self._items.c.status == "unread")
            .values(status="acked", acked_at=datetime.now(UTC), acked_by=by)
        )
        with store_errors("acknowledge a queue item"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(change)
                return await self._fetch(conn, item_id)

    async def count(self, recipient_id: str | None = None, *, unread_only: bool = False) -> int:
        """How many rows the queue holds (for one recipient if given; unread only if asked)."""
        query = select(func.count()).select_from(self._items)
        if recipient_id is not None:
            query = query.where(self._items.c.recipient_id == recipient_id)
        if unread_only:
            query = query.where(self._items.c.status == "unread")
        return await self._scalar(query, "count queue items")

    async def rows_per_notification(self) -> dict[tuple[str, str], int]:
        """Rows per (notification_id, recipient_id): every value is 1 unless something broke."""
        key = (self._items.c.notification_id, self._items.c.recipient_id)
        query = select(*key, func.count()).group_by(*key)
        with store_errors("count queue rows per notification"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query)
                return {(row[0], row[1]): row[2] for row in result}

    async def remember_schemas(self, learned: Sequence[tuple[str, str, str]]) -> None:
        """Keep learned writer schemas: (fingerprint hex, type name, canonical form)."""
        if not learned:
            return
        now = datetime.now(UTC)
        rows = [
            {"fingerprint": f, "name": n, "schema": s, "learned_at": now} for f, n, s in learned
        ]
        insert = insert_ignoring_duplicates(self._engine, self._schemas, "fingerprint")
        with store_errors("remember learned schemas"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(insert, rows)

    async def known_schemas(self) -> builtins.list[tuple[str, str]]:
        """Every learned writer schema: (fingerprint hex, canonical form)."""
        query = select(self._schemas.c.fingerprint, self._schemas.c.schema)
        with store_errors("read learned schemas"):
            async with self._engine.connect() as conn:
                return [(row[0], row[1]) for row in await conn.execute(query)]

    @property
    def quarantine_table(self) -> Table:
        """The consumer's quarantine table (for :mod:`sgx.kafka.quarantine_replay`)."""
        return self._quarantine

    async def quarantine_list(self) -> builtins.list[Quarantined]:
        """Every quarantined delivery record, in the order they were kept."""
        query = select(self._quarantine).order_by(self._quarantine.c.quarantine_id)
        with store_errors("list the consumer quarantine"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query)
                return [quarantined_from_row(row) for row in result.mappings()]

    async def _scalar(self, query: Any, action: str) -> int:
        with store_errors(action):
            async with self._engine.connect() as conn:
                return int((await conn.execute(query)).scalar_one())
