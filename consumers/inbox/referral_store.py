"""The LA's record of its responses to referrals, in its queue database.

One row (``inbox_referral_response``) per acknowledgement or decision a worker or system
made from the inbox about a referral the LA received: the item it was made from, the
stage and decision, the words for the referrer, the contact, who responded (the worker
id; the referrer is told ``responded_by``'s words only), when, and what became of it: sent
to the exchange (``sent_at``, once the broker has it) and the gateway's receipt (passed to
the referrer, refused, quarantined), looked up on the LA's receipts topic when the item is
shown and written here once known.

The row is written before the response is sent, like a share (:mod:`consumers.inbox.
store`), so nothing a worker decided is lost if the broker is away: an unsent response is
sent again (the same response id, which the gateway judges once) when the item is next
shown. Rows are read by notification id (``ix_inbox_referral_response_notification``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.errors import NotFound
from sgx.store.db import (
    UtcDateTime,
    insert_ignoring_duplicates,
    one_of,
    read_row,
    read_rows,
    serial,
    store_errors,
    write_transaction,
)


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    """An acknowledgement or decision the LA made about a referral, and what came of it."""

    response_row: int
    response_id: str
    item_id: int
    notification_id: str
    referrer: str
    stage: str  # ACKNOWLEDGED or DECIDED
    decision: str | None
    reasons: str | None
    next_steps: str | None
    la_contact: str
    la_reference: str | None
    responded_by: str  # the worker id (or client) who responded
    responded_as: str  # the words the referrer sees (name and role, or the team)
    responded_at: datetime
    sent_at: datetime | None  # the broker took it
    outcome: str | None  # the gateway's receipt: DELIVERED, REFUSED, QUARANTINED
    outcome_detail: str | None

    @property
    def status(self) -> str:
        """``sending`` (not on the broker yet), ``sent`` (no receipt yet), or the receipt's
        outcome in lower case (``delivered``: passed to the referrer)."""
        if self.sent_at is None:
            return "sending"
        return (self.outcome or "sent").lower()


def referral_response_table(metadata: MetaData) -> Table:
    return Table(
        "inbox_referral_response",
        metadata,
        Column("response_row", serial(), primary_key=True),
        Column("response_id", String(64), nullable=False, unique=True),
        Column("item_id", Integer, nullable=False),
        Column("notification_id", String(64), nullable=False),
        Column("referrer", String(200), nullable=False),
        Column("stage", String(20), nullable=False),
        Column("decision", String(40)),
        Column("reasons", Text),
        Column("next_steps", Text),
        Column("la_contact", Text, nullable=False),
        Column("la_reference", String(200)),
        Column("responded_by", String(200), nullable=False),
        Column("responded_as", Text, nullable=False),
        Column("responded_at", UtcDateTime, nullable=False),
        Column("sent_at", UtcDateTime),
        Column("outcome", String(20)),
        Column("outcome_detail", Text),
        Index("ix_inbox_referral_response_notification", "notification_id"),
    )


def _record(row: RowMapping) -> ResponseRecord:
    values: dict[str, Any] = dict(row)
    return ResponseRecord(**values)


class InboxReferralResponses:
    """The referral responses of one LA's inbox (a table on the inbox's metadata)."""

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        self._engine = engine
        self._table = referral_response_table(metadata)

    async def made(self, row: dict[str, Any]) -> ResponseRecord:
        """Record a response before it is sent (``row``: the table's columns but the row id
        and what came of it); returns it as recorded."""
        insert = insert_ignoring_duplicates(self._engine, self._table, "response_id")
        with store_errors("record a referral response"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(insert, [row])
        return await self.get(row["response_id"])

    async def sent(self, response_id: str) -> None:
        """The broker has the response."""
        t = self._table
        change = (
            update(t)
            .where(t.c.response_id == response_id, t.c.sent_at.is_(None))
            .values(sent_at=datetime.now(UTC))
        )
        with store_errors("record a referral response sent"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(change)

    async def receipted(self, response_id: str, outcome: str, detail: str) -> None:
        """The gateway's receipt for the response (the first stands)."""
        t = self._table
        change = (
            update(t)
            .where(t.c.response_id == response_id, t.c.outcome.is_(None))
            .values(outcome=outcome, outcome_detail=detail)
        )
        with store_errors("record a referral response's receipt"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(change)

    async def get(self, response_id: str) -> ResponseRecord:
        t = self._table
        query = select(t).where(t.c.response_id == response_id)
        row = await read_row(self._engine, query, "read a referral response")
        if row is None:
            raise NotFound(f"no referral response {response_id}")
        return _record(row)

    async def of(self, notification_ids: Sequence[str]) -> list[ResponseRecord]:
        """Every response about these referrals, oldest first."""
        if not notification_ids:
            return []
        t = self._table
        query = (
            select(t)
            .where(one_of(self._engine, t.c.notification_id, list(notification_ids)))
            .order_by(t.c.response_row)
        )
        rows = await read_rows(self._engine, query, "list referral responses")
        return [_record(r) for r in rows]
