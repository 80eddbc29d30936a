"""Disclosure requests under the 2013 / 2024 Protocol, and their 14-day answer deadline.

A local authority asks a police force's single point of contact (SPOC) for disclosure of
police material; the police answer with a disclosure quoting the request reference. The
gateway calls :meth:`DisclosureRequests.opened` when it routes a request and
:meth:`DisclosureRequests.answered` when it delivers the disclosure that answers it;
:meth:`DisclosureRequests.open_requests` lists what is still waiting, overdue first.

**The deadline.** The 2013 Protocol (Part A; Annex D is the local authority's request
form) has the police SPOC disclose no later than 14 days after the request. It says days,
not working days, so the deadline is 14 calendar days after ``requested_at``, to the
millisecond: :func:`deadline`. A court order for disclosure (Annex H) gives the police no
less than 28 days; that is the court's deadline and is not tracked here. The 2024 Protocol
(in force from 1 March 2024; Annex 1 is the request form) sets its own response
timescales, reported as at most 20 business days; the exchange applies the same 14
calendar days to 2024 requests, as the specification asks. That is never later than the
2024 maximum, so a late answer is never shown as in time. ``days_remaining`` counts whole
days left (rounded down): 0 on the last day, negative once the deadline has passed, which
is exactly when ``overdue`` is true.

**No child identifiers.** A request is kept with the child's pseudonym only (hex of the
HMAC, as in the audit trail), never an NHS number, UPN or name.

**Clock.** Nothing here reads the clock: ``now`` and the ``*_at`` times are passed in, so
tests and the CLI (``--now``) can move time.

Request references are unique across the exchange: the first :meth:`opened` for a
reference wins and repeats are ignored (at-least-once delivery from Kafka); the first
:meth:`answered` wins too. Table (``schema`` places it in a PostgreSQL schema):
``disclosure_request``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy import Column, MetaData, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.store.database import Database
from sgx.store.db import UtcDateTime, insert_ignoring_duplicates, store_errors, utc

ANSWER_WITHIN = timedelta(days=14)
PROTOCOLS = frozenset({"PROTOCOL_2013", "PROTOCOL_2024"})
SQLITE_FILE = "disclosure-requests.db"
_DAY = timedelta(days=1)


def deadline(requested_at: datetime) -> datetime:
    """When the police must have answered a request made at ``requested_at`` (UTC).

    14 calendar days later (2013 Protocol; see the module docstring). A naive datetime
    is a programming error (ValueError).
    """
    return utc(requested_at) + ANSWER_WITHIN


def days_remaining(due_at: datetime, now: datetime) -> int:
    """Whole days left until ``due_at`` (rounded down): 0 on the last day, <0 when overdue."""
    return (utc(due_at) - utc(now)) // _DAY


@dataclass(frozen=True)
class _Request:
    """What is kept about every request (identifiers of the child excluded by design)."""

    request_reference: str
    la_id: str
    police_id: str
    protocol: str
    requested_at: datetime
    due_at: datetime
    child_pseudonym: str | None


@dataclass(frozen=True)
class OpenRequest(_Request):
    """A disclosure request the police have not answered yet, as of some moment."""

    days_remaining: int

    @property
    def overdue(self) -> bool:
        """Past the deadline: exactly when fewer than 0 whole days remain."""
        return self.days_remaining < 0


@dataclass(frozen=True)
class RequestStatus(_Request):
    """Everything kept about one request, answered or not."""

    answered_at: datetime | None
    disclosure_id: str | None


_REQUEST_COLUMNS = tuple(f.name for f in fields(_Request))


def _table(metadata: MetaData) -> Table:
    return Table(
        "disclosure_request",
        metadata,
        Column("request_reference", String(200), primary_key=True),
        Column("la_id", String(200), nullable=False),
        Column("police_id", String(200), nullable=False),
        Column("protocol", String(20), nullable=False),
        Column("requested_at", UtcDateTime, nullable=False),
        Column("due_at", UtcDateTime, nullable=False, index=True),
        Column("child_pseudonym", String(64)),
        Column("answered_at", UtcDateTime, index=True),
        Column("disclosure_id", String(64)),
    )


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(sorted(PROTOCOLS))}: {protocol!r}")


class DisclosureRequests(Database):
    """Open and answered disclosure requests with their deadlines (SQLite or PostgreSQL)."""

    KIND = "requests"

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        super().__init__(engine, metadata)
        self._requests = _table(metadata)
        self._add = insert_ignoring_duplicates(engine, self._requests, "request_reference")

    async def opened(
        self,
        request_reference: str,
        la_id: str,
        police_id: str,
        protocol: str,
        requested_at: datetime,
        child_pseudonym: str | None,
    ) -> bool:
        """Start the clock on a request; False if the reference was already open (ignored)."""
        _check_protocol(protocol)
        row = {
            "request_reference": request_reference,
            "la_id": la_id,
            "police_id": police_id,
            "protocol": protocol,
            "requested_at": utc(requested_at),
            "due_at": deadline(requested_at),
            "child_pseudonym": child_pseudonym,
        }
        with store_errors("record a disclosure request"):
            async with self._engine.begin() as conn:
                result = await conn.execute(self._add, row)
        return result.rowcount == 1

    async def answered(
        self, request_reference: str, disclosure_id: str, answered_at: datetime
    ) -> bool:
        """Close a request with the disclosure that answers it.

        False if no such request is open (unknown reference, or already answered: the
        first answer is kept).
        """
        table = self._requests
        query = (
            update(table)
            .where(table.c.request_reference == request_reference)
            .where(table.c.answered_at.is_(None))
            .values(answered_at=utc(answered_at), disclosure_id=disclosure_id)
        )
        with store_errors("record a disclosure answer"):
            async with self._engine.begin() as conn:
                result = await conn.execute(query)
        return result.rowcount == 1

    async def open_requests(self, now: datetime, *, la_id: str | None = None) -> list[OpenRequest]:
        """Unanswered requests as of ``now``: overdue first, then by days remaining."""
        table = self._requests
        query = select(*(table.c[name] for name in _REQUEST_COLUMNS))
        query = query.where(table.c.answered_at.is_(None))
        if la_id is not None:
            query = query.where(table.c.la_id == la_id)
        # Days remaining only grow with due_at, and overdue is days remaining < 0.
        query = query.order_by(table.c.due_at, table.c.request_reference)
        with store_errors("list open disclosure requests"):
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).mappings().all()
        return [
            OpenRequest(**row, days_remaining=days_remaining(row["due_at"], now)) for row in rows
        ]

    async def status(self, request_reference: str) -> RequestStatus | None:
        """What is kept about one request, or None if it was never opened."""
        table = self._requests
        query = select(table).where(table.c.request_reference == request_reference)
        with store_errors("read a disclosure request"):
            async with self._engine.connect() as conn:
                row = (await conn.execute(query)).mappings().first()
        return None if row is None else RequestStatus(**dict(row))
