"""Finding quarantined records and logging their replays, for every store that keeps them.

``safeguard quarantine list/show/replay`` selects rows of a quarantine table (the
gateway's or a consumer's) by id, reason, claimed sender and time range
(:class:`QuarantineQuery`), and records each replay in an append-only table beside it,
``<quarantine table>_replay`` (``gateway_quarantine_replay``, ``consumer_quarantine_replay``:
distinct names, as several stores may share a PostgreSQL schema): which row, when, and what
came of it (``sent`` to be judged again, ``delivered``, or ``still_quarantined`` with the
reason). A replay never deletes or edits a quarantine row: what is quarantined stays kept,
with its history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.errors import NotFound
from sgx.kafka.quarantine import Quarantined, quarantined_from_row
from sgx.store.db import UtcDateTime, metadata_for, serial, store_errors, write_transaction

Result = Literal["sent", "delivered", "still_quarantined"]


@dataclass(frozen=True, slots=True)
class QuarantineQuery:
    """Which quarantined rows: all of the given conditions (none given: every row)."""

    ids: tuple[int, ...] = ()
    reason: str | None = None
    sender: str | None = None  # as the envelope's header claims it
    since: datetime | None = None
    until: datetime | None = None
    topic: str | None = None  # read on this topic (the replay topic: quarantined again)
    offsets: tuple[int, ...] = ()  # ... at these offsets

    def where(self, table: Table) -> ColumnElement[bool]:
        c = table.c
        clauses: list[ColumnElement[bool]] = []
        if self.ids:
            clauses.append(c.quarantine_id.in_(self.ids))
        if self.reason:
            clauses.append(c.reason == self.reason)
        if self.sender:
            if "sender_claimed" in c:
                clauses.append(c.sender_claimed == self.sender)
            else:  # a consumer's quarantine: every envelope claims to be the gateway's
                clauses.append(c.topic.endswith(f".{self.sender}"))
        if self.since:
            clauses.append(c.quarantined_at >= self.since)
        if self.until:
            clauses.append(c.quarantined_at < self.until)
        if self.topic:
            clauses.append(c.topic == self.topic)
        if self.offsets:
            clauses.append(c.offset.in_(self.offsets))
        return and_(true(), *clauses)


@dataclass(frozen=True, slots=True)
class Held:
    """A quarantined row with its id and its replays so far."""

    quarantine_id: int
    entry: Quarantined
    replays: list[dict[str, Any]] = field(default_factory=list)


def _replay_table(metadata: MetaData, quarantine: str) -> Table:
    return Table(
        f"{quarantine}_replay",
        metadata,
        Column("replay_id", serial(), primary_key=True),
        Column("quarantine_id", Integer, nullable=False),
        Column("replayed_at", UtcDateTime, nullable=False),
        Column("replayed_by", String(200), nullable=False),
        Column("result", String(20), nullable=False),
        Column("reason", String(100)),
        Column("detail", Text, nullable=False),
        Index(f"ix_{quarantine}_replay_row", "quarantine_id"),
    )


class ReplayLog:
    """One store's quarantine table, read by query, and its replay log (its table comes
    from the store's migrations, :mod:`sgx.store.migrate`, like the store's own)."""

    def __init__(self, engine: AsyncEngine, quarantine: Table, *, schema: str | None) -> None:
        self._engine = engine
        self._quarantine = quarantine
        self._metadata = metadata_for(engine, schema)
        self._replays = _replay_table(self._metadata, quarantine.name)

    async def held(self, query: QuarantineQuery) -> list[Held]:
        """The matching rows, oldest first, each with its replays."""
        q, r = self._quarantine, self._replays
        rows_query = select(q).where(query.where(q)).order_by(q.c.quarantine_id)
        with store_errors("read the quarantine"):
            async with self._engine.connect() as conn:
                rows = (await conn.execute(rows_query)).mappings().all()
                ids = [row["quarantine_id"] for row in rows]
                replays: dict[int, list[dict[str, Any]]] = {}
                if ids:
                    found = select(r).where(r.c.quarantine_id.in_(ids)).order_by(r.c.replay_id)
                    for replay in (await conn.execute(found)).mappings():
                        replays.setdefault(replay["quarantine_id"], []).append(dict(replay))
        return [
            Held(
                row["quarantine_id"],
                quarantined_from_row(row),
                replays.get(row["quarantine_id"], []),
            )
            for row in rows
        ]

    async def one(self, quarantine_id: int) -> Held:
        found = await self.held(QuarantineQuery(ids=(quarantine_id,)))
        if not found:
            raise NotFound(f"no quarantined record {quarantine_id}")
        return found[0]

    async def record(
        self, outcomes: Sequence[tuple[int, Result, str | None, str]], *, by: str
    ) -> None:
        """Log replays: (quarantine id, result, reason, detail) each."""
        if not outcomes:
            return
        now = datetime.now(UTC)
        rows = [
            {
                "quarantine_id": qid,
                "replayed_at": now,
                "replayed_by": by,
                "result": result,
                "reason": reason,
                "detail": detail,
            }
            for qid, result, reason, detail in outcomes
        ]
        with store_errors("log quarantine replays"):
            async with write_transaction(self._engine) as conn:
                await conn.execute(self._replays.insert(), rows)
