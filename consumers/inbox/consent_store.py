"""The LA's record of the consent it asked authors for, in its queue database.

One row (``inbox_consent``) per consent request a worker or system made from the inbox
about a refused onward share: the share it came from, the item, the recipient category
and purpose (the share's), who asked and when, and the latest word on it from the
exchange (a ``ConsentOutcome``): ``ASKED`` (forwarded to the author), ``NOT_NEEDED``,
``UNKNOWN_NOTIFICATION``, then the author's ``GRANTED`` or ``REFUSED`` with who answered,
any court order recorded and the restrictions a grant still leaves in place.

The row is written before the request is published, like a share (:mod:`consumers.inbox.
store`); its state is empty until the gateway's first word is read. A final word never
gives way to an earlier one: ``ASKED`` is written only on a row with no word yet, the
author's answer only on one still waiting, so two instances reading the receipts topic
at different moments cannot move a request backwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from sgx.errors import NotFound
from sgx.store.db import (
    UtcDateTime,
    decode_strings,
    encode_strings,
    insert_ignoring_duplicates,
    one_of,
    read_row,
    read_rows,
    serial,
    store_errors,
    write_transaction,
)

WAITING = (None, "ASKED")  # no answer from the author yet: looked up again when read
FINAL = ("GRANTED", "REFUSED", "NOT_NEEDED", "UNKNOWN_NOTIFICATION")


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """A consent request the LA made, and where it stands."""

    consent_id: int
    request_id: str
    share_id: int
    item_id: int
    notification_id: str
    category: str
    purpose: str
    requested_by: str
    requested_at: datetime
    state: str | None  # None: no word from the exchange yet
    author: str | None
    answered_by: str | None
    court_order: str | None
    still_blocked: tuple[str, ...]
    reason: str | None
    decided_at: datetime | None

    @property
    def status(self) -> str:
        """The state in lower case, ``sending`` before the exchange's first word."""
        return (self.state or "sending").lower()

    @property
    def waiting(self) -> bool:
        """True while the author has not answered (nor the gateway settled it)."""
        return self.state in WAITING

    @property
    def lifts(self) -> bool:
        """True if it is a grant that leaves nothing barred: the share may be asked again."""
        return self.state == "GRANTED" and not self.still_blocked


def consent_table(metadata: MetaData) -> Table:
    return Table(
        "inbox_consent",
        metadata,
        Column("consent_id", serial(), primary_key=True),
        Column("request_id", String(64), nullable=False, unique=True),
        Column("share_id", Integer, nullable=False),
        Column("item_id", Integer, nullable=False),
        Column("notification_id", String(64), nullable=False),
        Column("category", String(50), nullable=False),
        Column("purpose", Text, nullable=False),
        Column("requested_by", String(200), nullable=False),
        Column("requested_at", UtcDateTime, nullable=False),
        Column("state", String(30)),
        Column("author", String(200)),
        Column("answered_by", String(200)),
        Column("court_order", Text),
        Column("still_blocked", Text, nullable=False),
        Column("reason", Text),
        Column("decided_at", UtcDateTime),
        Index("ix_inbox_consent_notification", "notification_id"),
    )


def _record(row: RowMapping) -> ConsentRecord:
    values: dict[str, Any] = dict(row)
    values["still_blocked"] = decode_strings(values["still_blocked"])
    return ConsentRecord(**values)


class InboxConsents:
    """The consent requests of one LA's inbox (tables built on the inbox's metadata)."""

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        self._engine = engine
        self._table = consent_table(metadata)

    async def asked(
        self,
        *,
        request_id: str,
        share_id: int,
        item_id: int,
        notification_id: str,
        category: str,
        purpose: str,
        requested_by: str,
    ) -> int:
        """Record a consent request before it is sent; returns its consent id."""
        row = {
            "request_id": request_id,
            "share_id": share_id,
            "item_id": item_id,
            "notification_id": notification_id,
            "category": category,
            "purpose": purpose,
            "requested_by": requested_by,
            "requested_at": datetime.now(UTC),
            "still_blocked": encode_strings(()),
        }
        insert = insert_ignoring_duplicates(self._engine, self._table, "request_id")
        t = self._table
        with store_errors("record a consent request"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(insert, [row])
                query = select(t.c.consent_id).where(t.c.request_id == request_id)
                return int((await conn.execute(query)).scalar_one())

    async def heard(self, outcome: dict[str, Any]) -> bool:
        """Record the exchange's word on a request (a decoded ``ConsentOutcome``), unless a
        later word is on the row already; True if it was news."""
        t = self._table
        earlier: ColumnElement[bool] = t.c.state.is_(None)
        if outcome["state"] in FINAL:
            earlier = or_(earlier, t.c.state == "ASKED")
        change = (
            update(t)
            .where(t.c.request_id == str(outcome["request_id"]), earlier)
            .values(
                state=outcome["state"],
                author=outcome["author"] or None,
                answered_by=outcome["answered_by"],
                court_order=outcome["court_order"],
                still_blocked=encode_strings(tuple(outcome["still_blocked"])),
                reason=outcome["reason"],
                decided_at=outcome["decided_at"],
            )
        )
        with store_errors("record a consent outcome"):
            async with write_transaction(self._engine) as conn:
                return (await conn.execute(change)).rowcount == 1

    async def get(self, consent_id: int) -> ConsentRecord:
        """One consent request by id; NotFound if there is none."""
        query = select(self._table).where(self._table.c.consent_id == consent_id)
        row = await read_row(self._engine, query, "read a consent request")
        if row is None:
            raise NotFound(f"no consent request {consent_id}")
        return _record(row)

    async def of(self, notification_ids: Sequence[str]) -> list[ConsentRecord]:
        """Every consent request about these notifications, oldest first."""
        if not notification_ids:
            return []
        t = self._table
        query = (
            select(t)
            .where(one_of(self._engine, t.c.notification_id, list(notification_ids)))
            .order_by(t.c.consent_id)
        )
        return [_record(r) for r in await read_rows(self._engine, query, "list consent requests")]
