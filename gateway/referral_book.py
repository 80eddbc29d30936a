"""The gateway's record of referrals: who referred, which LA received it, and its clock.

One row per referral and receiving LA (a child open to two LAs is referred to both, and
each answers on its own): the referrer (the agency that wrote it, the only one the LA's
acknowledgement and decision go back to), the child's pseudonym (never an identifier),
when the gateway routed it, and when the LA must acknowledge it and decide its response
(working days under the LA's agreement, :mod:`sgx.domain.working_days`). The LA's
responses (:mod:`gateway.referral_responses`) stamp the row: the first acknowledgement,
the first decision (which acknowledges too) and the latest decision in force.

:meth:`ReferralBook.overdue` counts, by LA, the referrals past a deadline with nothing
recorded against it, for the gauge ``sgx_referrals_overdue`` and its alerts; the
queries read the open rows only (an index on each deadline's answer column).

Rows are written while the batch is judged, like disclosure requests
(:class:`gateway.requests.DisclosureRequests`, in the same database): a repeat of a
routed referral (a replayed batch) is ignored, a response stamps a row only where that
stage is still open. Table: ``referral``, built by the ``requests`` migrations.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import (
    Column,
    Index,
    MetaData,
    String,
    Table,
    func,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.store.db import (
    UtcDateTime,
    insert_ignoring_duplicates,
    metadata_for,
    read_row,
    read_rows,
    store_errors,
    utc,
)

STAGES = ("acknowledgement", "decision")  # the ``stage`` label of the overdue gauge


@dataclass(frozen=True, slots=True)
class ReferralReceived:
    """A referral the gateway routed to one LA, with that LA's deadlines."""

    referral_id: str
    la_id: str
    referrer: str
    referrer_kind: str
    child_pseudonym: str | None
    received_at: datetime
    acknowledge_due: datetime
    decide_due: datetime


@dataclass(frozen=True, slots=True)
class ReferralState(ReferralReceived):
    """A referral as it stands: what the LA has said of it so far."""

    acknowledged_at: datetime | None = None
    decided_at: datetime | None = None  # the first decision
    decision: str | None = None  # the decision in force (the latest)


_RECEIVED = tuple(f.name for f in fields(ReferralReceived))


def _table(metadata: MetaData) -> Table:
    return Table(
        "referral",
        metadata,
        Column("referral_id", String(36), primary_key=True),
        Column("la_id", String(200), primary_key=True),
        Column("referrer", String(200), nullable=False),
        Column("referrer_kind", String(50), nullable=False),
        Column("child_pseudonym", String(64)),
        Column("received_at", UtcDateTime, nullable=False),
        Column("acknowledge_due", UtcDateTime, nullable=False),
        Column("decide_due", UtcDateTime, nullable=False),
        Column("acknowledged_at", UtcDateTime),
        Column("decided_at", UtcDateTime),
        Column("decision", String(40)),
        # the monitor's open referrals by deadline: only rows not yet answered match
        Index("ix_referral_unacknowledged", "acknowledged_at", "acknowledge_due"),
        Index("ix_referral_undecided", "decided_at", "decide_due"),
    )


def _state(row: RowMapping) -> ReferralState:
    return ReferralState(**dict(row))


class ReferralBook:
    """Referrals and their deadlines, in the gateway's requests database."""

    def __init__(self, engine: AsyncEngine, *, schema: str | None = None) -> None:
        self._engine = engine
        self._metadata = metadata_for(engine, schema)
        self._table = _table(self._metadata)
        self._add = insert_ignoring_duplicates(engine, self._table, "referral_id", "la_id")

    @property
    def metadata(self) -> MetaData:
        return self._metadata

    async def received(self, referrals: list[ReferralReceived]) -> None:
        """Start the clocks of referrals routed to LAs (a repeat is ignored)."""
        if not referrals:
            return
        rows = [{name: getattr(r, name) for name in _RECEIVED} for r in referrals]
        with store_errors("record referrals"):
            async with self._engine.begin() as conn:
                await conn.execute(self._add, rows)

    async def get(self, referral_id: str, la_id: str) -> ReferralState | None:
        """One referral as received by one LA, or None if the gateway routed it no such."""
        t = self._table
        query = select(t).where(t.c.referral_id == referral_id, t.c.la_id == la_id)
        row = await read_row(self._engine, query, "read a referral")
        return None if row is None else _state(row)

    async def responded(
        self, referral_id: str, la_id: str, at: datetime, decision: str | None
    ) -> None:
        """Stamp an LA's response: the first acknowledgement, and for a decision its first
        time and the decision now in force."""
        t = self._table
        mine = (t.c.referral_id == referral_id, t.c.la_id == la_id)
        when = utc(at)
        with store_errors("record a referral response"):
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(t)
                    .where(*mine, t.c.acknowledged_at.is_(None))
                    .values(acknowledged_at=when)
                )
                if decision is not None:
                    await conn.execute(
                        update(t).where(*mine, t.c.decided_at.is_(None)).values(decided_at=when)
                    )
                    await conn.execute(update(t).where(*mine).values(decision=decision))

    async def overdue(self, now: datetime) -> Counter[tuple[str, str]]:
        """(LA, stage) → referrals past that stage's deadline with nothing recorded for it."""
        t, counts = self._table, Counter[tuple[str, str]]()
        for stage, answered, due in (
            ("acknowledgement", t.c.acknowledged_at, t.c.acknowledge_due),
            ("decision", t.c.decided_at, t.c.decide_due),
        ):
            query = (
                select(t.c.la_id, func.count().label("n"))
                .where(answered.is_(None), due < utc(now))
                .group_by(t.c.la_id)
            )
            for row in await read_rows(self._engine, query, "count overdue referrals"):
                counts[row["la_id"], stage] = int(row["n"])
        return counts
