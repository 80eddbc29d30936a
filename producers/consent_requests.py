"""The author's side of consent: requests from local authorities, and the agency's answers.

When a local authority asks for consent to share onward something this agency wrote, the
gateway forwards the request on the agency's receipts topic (a ``ConsentRequest``,
purpose SHARE_REQUEST). The receipt listener keeps it here, in the outbox's database, in
the same transaction as the receipts it read with it (:meth:`ConsentRequests.persist`).

A person in the agency answers (``safeguard producer consent grant|refuse``, or the push
endpoint's ``/v1/consent-requests``): :meth:`ConsentRequests.answer` checks the answer,
builds a ``ConsentAnswer`` and puts it in the outbox together with the answer on the
request's row, in ONE transaction. The relay sends it like a notification (sealed and
signed by this agency, for the gateway), and the gateway's receipt says whether it was
recorded. The first answer stands: answering again is refused here
(:class:`~sgx.errors.AlreadyAnswered`), and by the gateway for an answer sent some other
way.

A grant for a recipient category that police material confidential to the proceedings
bars (``POLICE_CONFIDENTIAL_TO_PROCEEDINGS`` in the request's ``blocking``) must record
the court order directing disclosure; without it the grant is refused here, since the
gateway would still refuse the share.

Table: ``outbox_consent_request``, unique on (agency, request_id).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
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
from sgx.domain.consent import COURT_ORDER_ONLY
from sgx.errors import AlreadyAnswered, ContractError, NotFound
from sgx.store.db import (
    UtcDateTime,
    decode_strings,
    encode_strings,
    insert_ignoring_duplicates,
    metadata_for,
    read_row,
    read_rows,
    serial,
)
from sgx.wire import contract as c
from sgx.wire.ids import new_id


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """A local authority's request for this agency's consent to one onward share."""

    agency: str
    request_id: uuid.UUID
    notification_id: uuid.UUID
    local_authority: str
    requested_by: str
    category: str
    purpose: str
    blocking: tuple[str, ...]
    requested_at: datetime
    received_at: datetime
    answer: str | None = None  # GRANTED or REFUSED, once answered here
    answer_id: uuid.UUID | None = None
    answered_by: str | None = None
    court_order: str | None = None
    reason: str | None = None
    answered_at: datetime | None = None

    @classmethod
    def of(cls, agency: str, record: Mapping[str, Any], received_at: datetime) -> ConsentRequest:
        """A request as the gateway forwarded it (a decoded ``ConsentRequest``)."""
        return cls(
            agency=agency,
            request_id=uuid.UUID(str(record["request_id"])),
            notification_id=uuid.UUID(str(record["notification_id"])),
            local_authority=record["local_authority"],
            requested_by=record["requested_by"],
            category=record["category"],
            purpose=record["purpose"],
            blocking=tuple(record["blocking"]),
            requested_at=record["requested_at"],
            received_at=received_at,
        )


_COLUMNS = tuple(f.name for f in fields(ConsentRequest))
_UUIDS = ("request_id", "notification_id", "answer_id")


def _table(metadata: MetaData) -> Table:
    return Table(
        "outbox_consent_request",
        metadata,
        Column("consent_id", serial(), primary_key=True),
        Column("agency", String(200), nullable=False),
        Column("request_id", String(36), nullable=False),
        Column("notification_id", String(36), nullable=False),
        Column("local_authority", String(200), nullable=False),
        Column("requested_by", String(200), nullable=False),
        Column("category", String(30), nullable=False),
        Column("purpose", Text, nullable=False),
        Column("blocking", Text, nullable=False),
        Column("requested_at", UtcDateTime, nullable=False),
        Column("received_at", UtcDateTime, nullable=False),
        Column("answer", String(10)),
        Column("answer_id", String(36)),
        Column("answered_by", String(200)),
        Column("court_order", Text),
        Column("reason", Text),
        Column("answered_at", UtcDateTime),
        UniqueConstraint("agency", "request_id", name="uq_outbox_consent_request"),
        # the push endpoint's list of the agency's open requests, oldest first (outbox 0003)
        Index("ix_outbox_consent_request_open", "agency", "answer_id", "consent_id"),
    )


def _row(request: ConsentRequest) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(request, name) for name in _COLUMNS}
    for name in _UUIDS:
        row[name] = None if row[name] is None else str(row[name])
    row["blocking"] = encode_strings(request.blocking)
    return row


def _request(row: RowMapping) -> ConsentRequest:
    values = {name: row[name] for name in _COLUMNS}
    for name in _UUIDS:
        values[name] = None if values[name] is None else uuid.UUID(values[name])
    values["blocking"] = decode_strings(values["blocking"])
    return ConsentRequest(**values)


def court_order_needed(request: ConsentRequest) -> list[str]:
    """The restrictions on this share that only a court order lifts."""
    return [code for code in request.blocking if code in COURT_ORDER_ONLY]


class ConsentRequests:
    """The consent requests put to one or more agencies, in their outbox database."""

    def __init__(self, engine: AsyncEngine, *, schema: str | None = None) -> None:
        self._engine = engine
        self._metadata = metadata_for(engine, schema)
        self._table = _table(self._metadata)
        self._add = insert_ignoring_duplicates(engine, self._table, "agency", "request_id")

    async def persist(self, conn: AsyncConnection, requests: Sequence[ConsentRequest]) -> None:
        """Keep forwarded requests in the caller's transaction (a repeat is ignored)."""
        if requests:
            await conn.execute(self._add, [_row(r) for r in requests])

    async def list(self, agency: str, *, open_only: bool = False) -> list[ConsentRequest]:
        """The agency's requests, oldest first; only those not yet answered if ``open_only``."""
        t = self._table
        query = select(t).where(t.c.agency == agency)
        if open_only:
            query = query.where(t.c.answer_id.is_(None))
        query = query.order_by(t.c.consent_id)
        rows = await read_rows(self._engine, query, "list consent requests")
        return [_request(row) for row in rows]

    async def get(self, agency: str, request_id: uuid.UUID) -> ConsentRequest:
        """One request; NotFound if the gateway never forwarded it to this agency."""
        t = self._table
        query = select(t).where(t.c.agency == agency, t.c.request_id == str(request_id))
        row = await read_row(self._engine, query, "read a consent request")
        if row is None:
            raise NotFound(f"no consent request {request_id} has been put to {agency}")
        return _request(row)

    async def answer(
        self,
        outbox: Outbox,
        request_id: uuid.UUID,
        *,
        granted: bool,
        answered_by: str,
        reason: str | None = None,
        court_order: str | None = None,
    ) -> ConsentRequest:
        """Answer a request: the signed answer goes in the outbox and on the request's row
        in ONE transaction; returns the request as answered.

        NotFound for a request never put to this agency, AlreadyAnswered for one answered
        before, ContractError (naming the field) for an answer that cannot stand.
        """
        agency = outbox.agency
        request = await self.get(agency, request_id)
        if request.answer_id is not None:
            raise AlreadyAnswered(_answered(request))
        barred = court_order_needed(request)
        if granted and barred and not (court_order and court_order.strip()):
            raise ContractError(
                "court_order",
                f"sharing this with {request.category} is barred by {', '.join(barred)}: a "
                "grant must record the court order directing disclosure",
                schema=c.CONSENT_ANSWER,
            )
        now = datetime.now(UTC)
        record = {
            "answer_id": new_id(),
            "request_id": request.request_id,
            "notification_id": request.notification_id,
            "granted": granted,
            "answered_by": answered_by,
            "reason": reason or None,
            "court_order": court_order or None,
            "answered_at": now,
        }
        t = self._table
        mark = (
            update(t)
            .where(
                t.c.agency == agency,
                t.c.request_id == str(request_id),
                t.c.answer_id.is_(None),
            )
            .values(
                answer="GRANTED" if granted else "REFUSED",
                answer_id=str(record["answer_id"]),
                answered_by=answered_by,
                court_order=record["court_order"],
                reason=record["reason"],
                answered_at=now,
            )
        )

        async def on_the_row(conn: AsyncConnection) -> None:
            if (await conn.execute(mark)).rowcount != 1:  # answered meanwhile: keep nothing
                raise AlreadyAnswered(f"consent request {request_id} was answered meanwhile")

        await outbox.add(c.CONSENT_ANSWER, record, also=on_the_row)
        return await self.get(agency, request_id)


def _answered(request: ConsentRequest) -> str:
    when = f"{request.answered_at:%Y-%m-%d %H:%M} UTC" if request.answered_at else "earlier"
    return (
        f"consent request {request.request_id} was answered already "
        f"({(request.answer or '').lower()} by {request.answered_by}, {when}): the first "
        "answer stands"
    )


class ConsentDesk:
    """One agency's consent requests and its way to answer them (the push endpoint's)."""

    def __init__(self, book: ConsentRequests, outbox: Outbox) -> None:
        self._book = book
        self._outbox = outbox

    async def list(self, *, open_only: bool = False) -> builtins.list[ConsentRequest]:
        return await self._book.list(self._outbox.agency, open_only=open_only)

    async def answer(
        self,
        request_id: uuid.UUID,
        *,
        granted: bool,
        answered_by: str,
        reason: str | None = None,
        court_order: str | None = None,
    ) -> ConsentRequest:
        """:meth:`ConsentRequests.answer` for this desk's agency."""
        return await self._book.answer(
            self._outbox, request_id, granted=granted, answered_by=answered_by, reason=reason,
            court_order=court_order,
        )  # fmt: skip
