"""The gateway's record of MASH information requests and the agencies' answers.

One row per information request the gateway forwarded: the asking LA, the agency asked,
the BRAG rating and the deadline it set, the child's pseudonym (never an identifier), the
family-informed decision the request carried; the agency's answer is written on the same
row, and the first answer closes it (:mod:`gateway.information`). Rows are written in the
gateway's batch transaction, beside the audit records that say the same
(:meth:`InformationBook.persist`, passed to ``GatewayStore.record_places(also=...)``), so a
crashed batch replays into the same rows.

:meth:`InformationBook.overdue` counts, by LA and agency, the open requests past their
deadline, for the gauge ``sgx_information_requests_overdue`` and its alert; the query
reads open rows only (an index led by the answer column).

Table (``schema`` places it in a PostgreSQL schema): ``information_request``, built by the
gateway database's migrations (``sgx/store/migrations/gateway``, 0006), never here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sgx.store.db import UtcDateTime, insert_ignoring_duplicates, metadata_for, read_row, read_rows


@dataclass(frozen=True, slots=True)
class InformationAsk:
    """An information request as the gateway forwarded it, and its answer once given."""

    request_id: str
    local_authority: str
    agency: str
    agency_kind: str
    rating: str
    deadline: datetime
    child_pseudonym: str | None
    family_told: bool
    family_exception: str | None
    requested_by: str
    requested_at: datetime
    answer_id: str | None = None
    outcome: str | None = None  # HELD, NOTHING_HELD or CANNOT_MATCH
    answered_by: str | None = None
    automatic: bool | None = None
    answered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InformationAnswered:
    """The agency's answer to one request, to write on its row (if still open)."""

    request_id: str
    answer_id: str
    outcome: str
    answered_by: str
    automatic: bool
    answered_at: datetime


InformationWrite = InformationAsk | InformationAnswered


def _table(metadata: MetaData) -> Table:
    return Table(
        "information_request",
        metadata,
        Column("request_id", String(64), primary_key=True),
        Column("local_authority", String(200), nullable=False),
        Column("agency", String(200), nullable=False),
        Column("agency_kind", String(50), nullable=False),
        Column("rating", String(10), nullable=False),
        Column("deadline", UtcDateTime, nullable=False),
        Column("child_pseudonym", String(64)),
        Column("family_told", Boolean, nullable=False),
        Column("family_exception", String(40)),
        Column("requested_by", String(200), nullable=False),
        Column("requested_at", UtcDateTime, nullable=False),
        Column("answer_id", String(64)),
        Column("outcome", String(20)),
        Column("answered_by", Text),
        Column("automatic", Boolean),
        Column("answered_at", UtcDateTime),
        # the monitor's open requests past their deadline (open rows only)
        Index("ix_information_request_open", "answer_id", "deadline"),
        Index("ix_information_request_agency", "agency", "requested_at"),
    )


class InformationBook:
    """Information requests and answers, in the gateway's database."""

    def __init__(self, engine: AsyncEngine, *, schema: str | None = None) -> None:
        self._engine = engine
        self.metadata = metadata_for(engine, schema)
        self._table = _table(self.metadata)
        self._add = insert_ignoring_duplicates(engine, self._table, "request_id")
        t = self._table
        self._answer = (
            update(t)
            .where(t.c.request_id == bindparam("b_request"), t.c.answer_id.is_(None))
            .values(
                answer_id=bindparam("b_answer_id"),
                outcome=bindparam("b_outcome"),
                answered_by=bindparam("b_by"),
                automatic=bindparam("b_automatic"),
                answered_at=bindparam("b_at", type_=UtcDateTime),
            )
        )

    async def persist(self, conn: AsyncConnection, writes: Sequence[InformationWrite]) -> None:
        """Write a batch's requests (a repeat is ignored) then answers (the first closes
        the request), in the caller's transaction."""
        asked = [
            {f.name: getattr(w, f.name) for f in fields(InformationAsk)}
            for w in writes
            if isinstance(w, InformationAsk)
        ]
        answered = [
            {"b_request": w.request_id, "b_answer_id": w.answer_id, "b_outcome": w.outcome,
             "b_by": w.answered_by, "b_automatic": w.automatic, "b_at": w.answered_at}
            for w in writes
            if isinstance(w, InformationAnswered)
        ]  # fmt: skip
        if asked:
            await conn.execute(self._add, asked)
        if answered:
            await conn.execute(self._answer, answered)

    async def request(self, request_id: str) -> InformationAsk | None:
        """One request by id, or None if the gateway never forwarded it."""
        query = select(self._table).where(self._table.c.request_id == request_id)
        row = await read_row(self._engine, query, "read an information request")
        return None if row is None else InformationAsk(**dict(row))

    async def of_agency(self, agency: str) -> list[InformationAsk]:
        """Every request put to ``agency``, oldest first."""
        t = self._table
        query = select(t).where(t.c.agency == agency).order_by(t.c.requested_at, t.c.request_id)
        rows = await read_rows(self._engine, query, "read information requests")
        return [InformationAsk(**dict(row)) for row in rows]

    async def overdue(self, now: datetime) -> dict[tuple[str, str], int]:
        """By (LA, agency): the open requests whose deadline has passed."""
        t = self._table
        query = (
            select(t.c.local_authority, t.c.agency, func.count().label("n"))
            .where(t.c.answer_id.is_(None), t.c.deadline < now)
            .group_by(t.c.local_authority, t.c.agency)
        )
        rows = await read_rows(self._engine, query, "count overdue information requests")
        return {(row["local_authority"], row["agency"]): int(row["n"]) for row in rows}
