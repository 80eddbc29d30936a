"""The gateway's record of consent requests and the authors' answers (shared by instances).

One row per consent request an LA made about an item the gateway delivered to it: the
item, the LA and worker asking, the author's agency asked, the recipient category and
purpose, and the restrictions the share would break. The author's answer is written on
the same row; the first answer stands (a second is refused, :mod:`gateway.consents`).
Rows are written in the gateway's batch transaction, beside the audit records that say
the same (:meth:`ConsentBook.persist`, passed to ``GatewayStore.record_places(also=...)``),
so a crashed batch replays into the same rows.

A share judged later (:mod:`gateway.shares`) asks :meth:`ConsentBook.grants` for the
consents given for that item, LA and category, and lets through only the one whose purpose
matches (:func:`sgx.domain.consent.purpose_key`).

Table (``schema`` places it in a PostgreSQL schema): ``consent_request``. Its tables are
built by the gateway database's migrations (``sgx/store/migrations/gateway``), never here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
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
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sgx.domain.consent import Grant
from sgx.store.db import (
    UtcDateTime,
    decode_strings,
    encode_strings,
    insert_ignoring_duplicates,
    metadata_for,
    read_row,
    read_rows,
)


@dataclass(frozen=True, slots=True)
class ConsentAsk:
    """A consent request as the gateway forwarded it, and its answer once given."""

    request_id: str
    notification_id: str
    local_authority: str
    requested_by: str
    author: str
    author_kind: str
    category: str
    purpose: str
    blocking: tuple[str, ...]
    requested_at: datetime
    answer: str | None = None  # GRANTED or REFUSED
    answer_id: str | None = None
    answered_by: str | None = None
    court_order: str | None = None
    reason: str | None = None
    answered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ConsentAnswered:
    """The author's answer to one request, to write on its row."""

    request_id: str
    answer: str  # GRANTED or REFUSED
    answer_id: str
    answered_by: str
    court_order: str | None
    reason: str | None
    answered_at: datetime


ConsentWrite = ConsentAsk | ConsentAnswered


def _table(metadata: MetaData) -> Table:
    return Table(
        "consent_request",
        metadata,
        Column("request_id", String(64), primary_key=True),
        Column("notification_id", String(64), nullable=False),
        Column("local_authority", String(200), nullable=False),
        Column("requested_by", String(200), nullable=False),
        Column("author", String(200), nullable=False),
        Column("author_kind", String(50), nullable=False),
        Column("category", String(30), nullable=False),
        Column("purpose", Text, nullable=False),
        Column("blocking", Text, nullable=False),
        Column("requested_at", UtcDateTime, nullable=False),
        Column("answer", String(10)),
        Column("answer_id", String(64)),
        Column("answered_by", String(200)),
        Column("court_order", Text),
        Column("reason", Text),
        Column("answered_at", UtcDateTime),
        Index("ix_consent_request_item", "notification_id", "local_authority", "category"),
        # the monitor's requests awaiting an answer, by author: the open ones only (0004)
        Index("ix_consent_request_awaiting", "answer_id", "author"),
    )


def _ask(row: RowMapping) -> ConsentAsk:
    values = dict(row)
    values["blocking"] = decode_strings(values["blocking"])
    return ConsentAsk(**values)


class ConsentBook:
    """Consent requests and answers, in the gateway's database."""

    def __init__(self, engine: AsyncEngine, *, schema: str | None = None) -> None:
        self._engine = engine
        self._metadata = metadata_for(engine, schema)
        self._table = _table(self._metadata)
        self._add = insert_ignoring_duplicates(engine, self._table, "request_id")
        t = self._table
        self._answer = (
            update(t)
            .where(t.c.request_id == bindparam("b_request"), t.c.answer_id.is_(None))
            .values(
                answer=bindparam("b_answer"),
                answer_id=bindparam("b_answer_id"),
                answered_by=bindparam("b_by"),
                court_order=bindparam("b_court_order"),
                reason=bindparam("b_reason"),
                answered_at=bindparam("b_at", type_=UtcDateTime),
            )
        )

    async def persist(self, conn: AsyncConnection, writes: Sequence[ConsentWrite]) -> None:
        """Write a batch's requests (a repeat is ignored) then answers (the first stands),
        in the caller's transaction."""
        asked = [
            {**_columns(w), "blocking": encode_strings(w.blocking)}
            for w in writes
            if isinstance(w, ConsentAsk)
        ]
        answered = [
            {"b_request": w.request_id, "b_answer": w.answer, "b_answer_id": w.answer_id,
             "b_by": w.answered_by, "b_court_order": w.court_order, "b_reason": w.reason,
             "b_at": w.answered_at}
            for w in writes
            if isinstance(w, ConsentAnswered)
        ]  # fmt: skip
        if asked:
            await conn.execute(self._add, asked)
        if answered:
            await conn.execute(self._answer, answered)

    async def request(self, request_id: str) -> ConsentAsk | None:
        """One request by id, or None if the gateway never forwarded it."""
        query = select(self._table).where(self._table.c.request_id == request_id)
        row = await read_row(self._engine, query, "read a consent request")
        return None if row is None else _ask(row)

    async def requests(self, notification_id: str, local_authority: str) -> list[ConsentAsk]:
        """Every request an LA made about one item, oldest first."""
        t = self._table
        query = (
            select(t)
            .where(t.c.notification_id == notification_id, t.c.local_authority == local_authority)
            .order_by(t.c.requested_at, t.c.request_id)
        )
        return [_ask(row) for row in await read_rows(self._engine, query, "read consent requests")]

    async def awaiting(self) -> dict[str, tuple[int, datetime]]:
        """By author: how many requests it has not answered, and when the oldest was made."""
        t = self._table
        query = (
            select(t.c.author, func.count().label("n"), func.min(t.c.requested_at).label("oldest"))
            .where(t.c.answer_id.is_(None))
            .group_by(t.c.author)
        )
        rows = await read_rows(self._engine, query, "count consent requests awaiting an answer")
        return {row["author"]: (int(row["n"]), row["oldest"]) for row in rows}

    async def grants(
        self, notification_id: str, local_authority: str, category: str
    ) -> list[Grant]:
        """The consents the author gave for this item, LA and recipient category."""
        return [
            Grant(ask.request_id, ask.purpose, ask.answered_by or "", ask.court_order)
            for ask in await self.requests(notification_id, local_authority)
            if ask.category == category and ask.answer == "GRANTED"
        ]


def _columns(ask: ConsentAsk) -> dict[str, object]:
    return {name: getattr(ask, name) for name in ConsentAsk.__dataclass_fields__}
