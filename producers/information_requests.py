"""The agency's side of network checks: information requests from MASHs, and the answers.

When a local authority's MASH asks this agency what it holds about a child, the gateway
forwards the request on the agency's receipts topic (an ``InformationRequest``, purpose
SHARE_REQUEST, with the deadline it set and only the identifiers this agency's kind can
match). The receipt listener keeps it here, in the outbox's database, in the same
transaction as the receipts it read with it (:meth:`InformationRequests.persist`).

A person answers (``safeguard producer information answer``), or, for a school whose
feed holds the child's attendance and the agreement allows it, the feed does
(:func:`attendance_answer`, ``automatic``). :meth:`InformationRequests.answer` builds the
``InformationAnswer`` (checked by the contract: facts when held, nothing when not) and puts
it in the outbox together with the answer on the request's row, in ONE transaction; the
relay sends it like a notification and the gateway's receipt says whether it was accepted.
The first answer stands (:class:`~sgx.errors.AlreadyAnswered` here; the gateway
quarantines a second sent some other way). A request past its deadline with no answer is
listed as overdue (and alerts, ``SgxInformationRequestOverdue``).

Table: ``outbox_information_request``, unique on (agency, request_id).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from producers.outbox import Outbox
from producers.school import Export, facts, figures, group_pupils
from sgx.errors import AlreadyAnswered, NotFound
from sgx.store.db import (
    UtcDateTime,
    insert_ignoring_duplicates,
    metadata_for,
    read_row,
    read_rows,
    serial,
)
from sgx.wire import contract as c
from sgx.wire.ids import new_id


@dataclass(frozen=True, slots=True)
class InformationRequest:
    """A MASH's request for what this agency holds about a child."""

    agency: str
    request_id: uuid.UUID
    local_authority: str
    rating: str
    deadline: datetime
    asked: str
    requested_by: str
    requested_at: datetime
    family_told: bool
    family_exception: str | None
    nhs_number: str | None
    upn: str | None
    given_name: str | None
    family_name: str | None
    date_of_birth: date | None
    postcode: str | None
    received_at: datetime
    outcome: str | None = None  # HELD, NOTHING_HELD or CANNOT_MATCH, once answered here
    answer_id: uuid.UUID | None = None
    answered_by: str | None = None
    automatic: bool | None = None
    answered_at: datetime | None = None

    @classmethod
    def of(
        cls, agency: str, record: Mapping[str, Any], received_at: datetime
    ) -> InformationRequest:
        """A request as the gateway forwarded it (a decoded ``InformationRequest``)."""
        child, informed = record["child"], record["family_informed"]
        return cls(
            agency=agency, request_id=uuid.UUID(str(record["request_id"])),
            local_authority=record["local_authority"], rating=record["rating"],
            deadline=record["deadline"], asked=record["asked"],
            requested_by=record["requested_by"], requested_at=record["requested_at"],
            family_told=bool(informed["told"]), family_exception=informed["exception"],
            nhs_number=child["nhs_number"], upn=child["upn"], given_name=child["given_name"],
            family_name=child["family_name"], date_of_birth=child["date_of_birth"],
            postcode=child["postcode"], received_at=received_at,
        )  # fmt: skip

    def overdue(self, now: datetime) -> bool:
        return self.answer_id is None and self.deadline <= now


_COLUMNS = tuple(f.name for f in fields(InformationRequest))
_UUIDS = ("request_id", "answer_id")


def _table(metadata: MetaData) -> Table:
    return Table(
        "outbox_information_request",
        metadata,
        Column("information_id", serial(), primary_key=True),
        Column("agency", String(200), nullable=False),
        Column("request_id", String(36), nullable=False),
        Column("local_authority", String(200), nullable=False),
        Column("rating", String(10), nullable=False),
        Column("deadline", UtcDateTime, nullable=False),
        Column("asked", Text, nullable=False),
        Column("requested_by", String(200), nullable=False),
        Column("requested_at", UtcDateTime, nullable=False),
        Column("family_told", Boolean, nullable=False),
        Column("family_exception", String(40)),
        Column("nhs_number", String(10)),
        Column("upn", String(13)),
        Column("given_name", String(200)),
        Column("family_name", String(200)),
        Column("date_of_birth", Date),
        Column("postcode", String(10)),
        Column("received_at", UtcDateTime, nullable=False),
        Column("outcome", String(20)),
        Column("answer_id", String(36)),
        Column("answered_by", String(200)),
        Column("automatic", Boolean),
        Column("answered_at", UtcDateTime),
        UniqueConstraint("agency", "request_id", name="uq_outbox_information_request"),
        Index("ix_outbox_information_request_open", "agency", "answer_id", "information_id"),
    )


def _row(request: InformationRequest) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(request, name) for name in _COLUMNS}
    for name in _UUIDS:
        row[name] = None if row[name] is None else str(row[name])
    return row


def _request(row: RowMapping) -> InformationRequest:
    values = {name: row[name] for name in _COLUMNS}
    for name in _UUIDS:
        values[name] = None if values[name] is None else uuid.UUID(values[name])
    return InformationRequest(**values)


class InformationRequests:
    """The information requests put to one or more agencies, in their outbox database."""

    def __init__(self, engine: AsyncEngine, *, schema: str | None = None) -> None:
        self._engine = engine
        self.metadata = metadata_for(engine, schema)
        self._table = _table(self.metadata)
        self._add = insert_ignoring_duplicates(engine, self._table, "agency", "request_id")

    async def persist(self, conn: AsyncConnection, requests: Sequence[InformationRequest]) -> None:
        """Keep forwarded requests in the caller's transaction (a repeat is ignored)."""
        if requests:
            await conn.execute(self._add, [_row(r) for r in requests])

    async def list(self, agency: str, *, open_only: bool = False) -> list[InformationRequest]:
        """The agency's requests, oldest first; only those not yet answered if ``open_only``."""
        t = self._table
        query = select(t).where(t.c.agency == agency)
        if open_only:
            query = query.where(t.c.answer_id.is_(None))
        rows = await read_rows(
            self._engine, query.order_by(t.c.information_id), "list information requests"
        )
        return [_request(row) for row in rows]

    async def get(self, agency: str, request_id: uuid.UUID) -> InformationRequest:
        """One request; NotFound if the gateway never forwarded it to this agency."""
        t = self._table
        query = select(t).where(t.c.agency == agency, t.c.request_id == str(request_id))
        row = await read_row(self._engine, query, "read an information request")
        if row is None:
            raise NotFound(f"no information request {request_id} has been put to {agency}")
        return _request(row)

    async def answer(
        self,
        outbox: Outbox,
        request_id: uuid.UUID,
        *,
        outcome: str,
        answered_by: str,
        facts: str | None = None,
        opinion: str | None = None,
        restrictions: builtins.list[dict[str, str]] | None = None,
        automatic: bool = False,
    ) -> InformationRequest:
        """Answer a request: the signed answer goes in the outbox and on the request's row
        in ONE transaction. NotFound for a request never put to this agency,
        AlreadyAnswered for one answered before, ContractError (naming the field) for an
        answer the contract refuses."""
        agency = outbox.agency
        request = await self.get(agency, request_id)
        if request.answer_id is not None:
            raise AlreadyAnswered(
                f"information request {request_id} was answered already "
                f"({(request.outcome or '').lower()} by {request.answered_by})"
            )
        now = datetime.now(UTC)
        record = {
            "answer_id": new_id(), "request_id": request.request_id,
            "local_authority": request.local_authority, "outcome": outcome,
            "facts": facts or None, "professional_opinion": opinion or None,
            "restrictions": restrictions or [], "answered_by": answered_by,
            "automatic": automatic, "answered_at": now,
        }  # fmt: skip
        t = self._table
        mark = (
            update(t)
            .where(t.c.agency == agency, t.c.request_id == str(request_id),
                   t.c.answer_id.is_(None))
            .values(outcome=outcome, answer_id=str(record["answer_id"]),
                    answered_by=answered_by, automatic=automatic, answered_at=now)
        )  # fmt: skip

        async def on_the_row(conn: AsyncConnection) -> None:
            if (await conn.execute(mark)).rowcount != 1:  # answered meanwhile: keep nothing
                raise AlreadyAnswered(f"information request {request_id} was answered meanwhile")

        await outbox.add(c.INFORMATION_ANSWER, record, also=on_the_row)
        return await self.get(agency, request_id)


def attendance_answer(request: InformationRequest, export: Export) -> tuple[str, str | None]:
    """A school feed's answer from the attendance export it holds, without a person:
    (HELD, the pupil's figures in words) for a pupil the request's UPN names, else
    (CANNOT_MATCH, None). A request naming no UPN cannot be matched by a register; the
    figures are facts, so the answer carries no professional opinion."""
    if not request.upn:
        return "CANNOT_MATCH", None
    wanted = request.upn.strip().upper()
    for pupil in group_pupils(export):
        if pupil.upn == wanted and pupil.marks:
            return "HELD", "Attendance register: " + facts(figures(pupil.marks, pupil.unreadable))
    return "CANNOT_MATCH", None
