"""Writing one batch into a queue: its rows, the deliveries they name (each once) and its
quarantine, in ONE transaction of a few driver calls (:mod:`sgx.store.driver`).

1. (PostgreSQL) the queue's advisory lock, so item ids follow commit order
   (:mod:`consumers.queue`);
2. the rows, one per addressee, unique on (notification, recipient): a row already
   queued is ignored;
3. the sealed deliveries the rows name, one each: all of the batch's when every row was
   new (the usual case); else only those a stored row of the batch's notifications
   names, so a delivery the gateway published again after a crash (sealed anew, its
   addressees already queued with the first copy) is not kept beside it;
4. the network checks' rows the batch brought (:mod:`consumers.information_rows`): the
   gateway's word on each request and the link from a request to the item answering it,
   each once (a redelivered one is ignored);
5. the gateway's answers the batch brought from the LA's receipts topic
   (:mod:`consumers.answer_rows`), each once (a redelivered one is ignored);
6. the records quarantined.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.answer_rows import (
    ANSWER_COLUMNS as GATEWAY_ANSWER_COLUMNS,
)
from consumers.answer_rows import (
    RECEIPT_COLUMNS,
    AnswerRows,
    GatewayAnswer,
    GatewayReceipt,
)
from consumers.information_rows import (
    ANSWER_COLUMNS,
    STATUS_COLUMNS,
    AnswerLink,
    InformationRows,
    InformationStatusRow,
)
from sgx.kafka.quarantine import Quarantined
from sgx.store.db import encode_strings
from sgx.store.driver import BulkInsert, Driver, Row, Tx, sql_in

if TYPE_CHECKING:
    from consumers.queue import QueueEntry

# PostgreSQL advisory lock key the queue's writers share ("sgxqueue" as a 64-bit integer)
WRITE_LOCK = 0x7367_7871_7565_7565
ITEM_COLUMNS = (
    "notification_id", "recipient_id", "recipient_role", "team", "route_reason",
    "notification_type", "urgency", "sender_agency", "authored_at", "routed_at",
    "restrictions", "withheld", "delivery_id", "source_offset", "queued_at", "status",
)  # fmt: skip
QUARANTINE_COLUMNS = (
    "message_id", "topic", "partition", "offset", "item", "reason", "detail", "raw",
    "quarantined_at",
)  # fmt: skip
_ID_CHUNK = 500


def delivery_id(entry: QueueEntry) -> str:
    """The id its envelope is kept under: the delivery's message id, or (an entry made
    without one) a digest of its bytes."""
    if entry.delivery_id is not None:
        return entry.delivery_id
    return hashlib.sha256(entry.envelope).hexdigest()[:32]


class QueueWrites:
    """A queue's batch writes (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        items: Table,
        deliveries: Table,
        quarantine: Table,
        information: InformationRows,
        answered: AnswerRows,
    ) -> None:
        self.driver = Driver(engine)
        self._items = BulkInsert(
            engine, items, ITEM_COLUMNS, ignoring=("notification_id", "recipient_id")
        )
        self._deliveries = BulkInsert(
            engine, deliveries, ("delivery_id", "envelope"), ignoring=("delivery_id",)
        )
        where_read = ("topic", "partition", "offset", "item")
        self._quarantine = BulkInsert(engine, quarantine, QUARANTINE_COLUMNS, ignoring=where_read)
        self._information = information
        self._statuses = BulkInsert(
            engine, information.statuses, STATUS_COLUMNS, ignoring=("request_id",)
        )
        self._answers = BulkInsert(
            engine, information.answers, ANSWER_COLUMNS, ignoring=("request_id",)
        )
        self._answered = answered
        self._gateway_answers = BulkInsert(
            engine, answered.answers, GATEWAY_ANSWER_COLUMNS,
            ignoring=("request_id", "kind", "state"),
        )  # fmt: skip
        self._receipts = BulkInsert(
            engine, answered.receipts, RECEIPT_COLUMNS, ignoring=("message_id",)
        )
        table = engine.dialect.identifier_preparer.format_table(items)
        self._named = f"SELECT DISTINCT delivery_id FROM {table} WHERE "

    async def close(self) -> None:
        await self.driver.close()

    async def store(
        self,
        entries: Sequence[QueueEntry],
        quarantined: Sequence[Quarantined],
        at: datetime,
        statuses: Sequence[InformationStatusRow] = (),
        answers: Sequence[AnswerLink] = (),
        gateway: Sequence[GatewayAnswer | GatewayReceipt] = (),
    ) -> int:
        """Write the batch; how many rows were new."""
        times: dict[datetime, Any] = {}  # an addressee's times are its delivery's: once each

        def stamp(value: datetime) -> Any:
            known = times.get(value)
            if known is None:
                known = times[value] = self._items.timestamp(value)
            return known

        queued = stamp(at)
        ids = [delivery_id(e) for e in entries]
        rows = [
            (
                e.notification_id, e.recipient_id, e.recipient_role, e.team, e.route_reason,
                e.notification_type, e.urgency, e.sender_agency, stamp(e.authored_at),
                stamp(e.routed_at), encode_strings(e.restrictions), encode_strings(e.withheld),
                named, e.source_offset, queued, "unread",
            )
            for e, named in zip(entries, ids, strict=True)
        ]  # fmt: skip
        envelopes = dict(zip(ids, (e.envelope for e in entries), strict=True))
        bad = [
            (q.message_id, q.topic, q.partition, q.offset, q.item, q.reason, q.detail, q.raw,
             stamp(q.quarantined_at))
            for q in quarantined
        ]  # fmt: skip
        async with self.driver.transaction() as tx:
            if not tx.sqlite:
                await tx.execute("SELECT pg_advisory_xact_lock($1)", (WRITE_LOCK,))
            inserted = await self._items.run(tx, rows)
            if inserted < len(rows):
                envelopes = await self._still_named(tx, entries, envelopes)
            await self._deliveries.run(tx, list(envelopes.items()))
            await self._statuses.run(
                tx, [self._information.status_values(row, stamp) for row in statuses]
            )
            await self._answers.run(
                tx,
                [(a.request_id, a.notification_id, a.recipient_id, a.source_offset)
                 for a in answers],
            )  # fmt: skip
            await self._gateway_answers.run(
                tx,
                [self._answered.answer_values(g, stamp) for g in gateway
                 if isinstance(g, GatewayAnswer)],
            )  # fmt: skip
            await self._receipts.run(
                tx,
                [self._answered.receipt_values(g, stamp) for g in gateway
                 if isinstance(g, GatewayReceipt)],
            )  # fmt: skip
            await self._quarantine.run(tx, bad)
        return inserted

    async def _still_named(
        self, tx: Tx, entries: Sequence[QueueEntry], envelopes: dict[str, bytes]
    ) -> dict[str, bytes]:
        """The deliveries a stored row of the batch's notifications names."""
        notifications = sorted({e.notification_id for e in entries})
        named: set[str] = set()
        for start in range(0, len(notifications), _ID_CHUNK):
            chunk = notifications[start : start + _ID_CHUNK]
            where, array = sql_in(tx.sqlite, "notification_id", len(chunk))
            found: Sequence[Row] = await tx.fetch(self._named + where, [chunk] if array else chunk)
            named.update(str(row[0]) for row in found)
        return {key: value for key, value in envelopes.items() if key in named}
