"""The LA's record of what it disclosed about children and whether each family was told,
in its queue database (beside the inbox's other tables).

Two tables (``schema`` places them in a PostgreSQL schema):

* ``family_disclosure`` — one row per **disclosure** the family should hear of, whatever
  made it: ``kind`` (``onward_share``, ``network_check``) and ``ref`` (the id the maker
  gave it: an inbox share id; a network check's id) name it, unique together; the queue
  item it came from, to whom (name, category), why, who asked and when; ``made`` (None
  while the exchange has not answered, True once it was made: the exchange allowed the
  share, or the request was sent; False if it was refused, so nothing was disclosed) and
  when; and ``decision_id``, the family-informed decision in force (None: outstanding).
  An onward share is registered when it is asked (:meth:`FamilyStore.register_share`, in
  the inbox's own transaction) so a decision can be recorded with the request, before
  the exchange answers.
* ``family_decision`` — every family-informed decision recorded, append only: the
  decision's fields (:class:`sgx.domain.family.FamilyDecision`), who recorded it (a
  worker or a system) and when, and the decision it superseded. Nothing is updated or
  deleted: the table is the audit of the decisions, and the professional record keeps
  an exception even after the family is told.

What is outstanding (made, no decision) is an index range (``decision_id, made,
made_at``), read with the queue rows it came from so each caller sees the disclosures of
the items they may see (the queue's own rule, :class:`consumers.queue.QueueSelection`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    column,
    false,
    func,
    or_,
    select,
    table,
    true,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select

from consumers.queue import QueueSelection
from sgx.domain.family import DisclosureKind, FamilyDecision, FamilyException, InformMethod
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

OUTSTANDING_LIMIT = 500  # rows of one caller's outstanding list


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A family-informed decision as recorded: the decision, who recorded it, when."""

    decision_id: int
    disclosure_id: int
    decision: FamilyDecision
    recorded_by: str
    recorder_kind: str
    recorded_at: datetime
    supersedes: int | None


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A disclosure the family should hear of, with the decision in force (if any)."""

    disclosure_id: int
    kind: DisclosureKind
    ref: str
    item_id: int
    notification_id: str
    to_name: str
    to_category: str
    purpose: str
    asked_by: str
    asked_at: datetime
    made: bool | None
    made_at: datetime | None
    decision: DecisionRecord | None

    @property
    def outstanding(self) -> bool:
        """Made, and nobody has recorded whether the family was told."""
        return bool(self.made) and self.decision is None


@dataclass(frozen=True, slots=True)
class Pending:
    """An outstanding disclosure with the routing facts of the queue row it came from."""

    disclosure: Disclosure
    recipient_id: str
    team: str  # the row's team, else its recipient role (as the queue gauges label it)


def _tables(metadata: MetaData) -> tuple[Table, Table]:
    disclosures = Table(
        "family_disclosure",
        metadata,
        Column("disclosure_id", serial(), primary_key=True),
        Column("kind", String(20), nullable=False),
        Column("ref", String(64), nullable=False),
        Column("item_id", Integer, nullable=False),
        Column("notification_id", String(64), nullable=False),
        Column("to_name", String(300), nullable=False),
        Column("to_category", String(50), nullable=False),
        Column("purpose", Text, nullable=False),
        Column("asked_by", String(200), nullable=False),
        Column("asked_at", UtcDateTime, nullable=False),
        Column("made", Boolean),
        Column("made_at", UtcDateTime),
        Column("decision_id", Integer),
        UniqueConstraint("kind", "ref", name="uq_family_disclosure_ref"),
        Index("ix_family_disclosure_outstanding", "decision_id", "made", "made_at"),
        Index("ix_family_disclosure_notification", "notification_id"),
    )
    decisions = Table(
        "family_decision",
        metadata,
        Column("decision_id", serial(), primary_key=True),
        Column("disclosure_id", Integer, nullable=False),
        Column("informed", Boolean, nullable=False),
        Column("informed_at", UtcDateTime),
        Column("informed_by", String(200)),
        Column("method", String(20)),
        Column("family_member", String(200)),
        Column("exception", String(50)),
        Column("reason", Text),
        Column("decided_by", String(200), nullable=False),
        Column("decided_at", UtcDateTime, nullable=False),
        Column("recorded_by", String(200), nullable=False),
        Column("recorder_kind", String(10), nullable=False),
        Column("recorded_at", UtcDateTime, nullable=False),
        Column("supersedes", Integer),
        Index("ix_family_decision_disclosure", "disclosure_id", "decision_id"),
    )
    return disclosures, decisions


def _queue_rows(schema: str | None) -> Any:
    """The queue's rows, as much of them as the access rule reads (:mod:`consumers.queue`)."""
    return table(
        "queue_item",
        column("item_id", Integer),
        column("recipient_id", String),
        column("recipient_role", String),
        column("team", String),
        schema=schema,
    )


def covers(items: Any, selection: QueueSelection) -> ColumnElement[bool]:
    """The rows of ``items`` ``selection`` covers: the queue's own rule."""
    if selection.everything:
        return true()
    clauses: list[ColumnElement[bool]] = []
    if selection.recipients:
        clauses.append(items.c.recipient_id.in_(sorted(selection.recipients)))
    if selection.teams:
        clauses.append(items.c.team.in_(sorted(selection.teams)))
    return or_(*clauses) if clauses else false()


def _decision(row: RowMapping, prefix: str = "") -> DecisionRecord:
    def get(name: str) -> Any:
        return row[prefix + name]

    method, exception = get("method"), get("exception")
    decision = FamilyDecision(
        informed=bool(get("informed")),
        decided_by=get("decided_by"),
        decided_at=get("decided_at"),
        informed_at=get("informed_at"),
        informed_by=get("informed_by"),
        method=InformMethod(method) if method else None,
        family_member=get("family_member"),
        exception=FamilyException(exception) if exception else None,
        reason=get("reason"),
    )
    return DecisionRecord(
        get("decision_id"), get("disclosure_id"), decision, get("recorded_by"),
        get("recorder_kind"), get("recorded_at"), get("supersedes"),
    )  # fmt: skip


class FamilyStore:
    """The disclosures of one LA and the family-informed decisions about them."""

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        self._engine = engine
        self._disclosures, self._decisions = _tables(metadata)
        self._items = _queue_rows(metadata.schema)
        self._add = insert_ignoring_duplicates(engine, self._disclosures, "kind", "ref")

    # -- registering disclosures -------------------------------------------------------
    async def register(
        self,
        conn: AsyncConnection | None,
        *,
        kind: DisclosureKind,
        ref: str,
        item_id: int,
        notification_id: str,
        to_name: str,
        to_category: str,
        purpose: str,
        asked_by: str,
        made: bool | None = None,
        at: datetime | None = None,
    ) -> int:
        """Register a disclosure (in ``conn``'s transaction if given); registering one
        again changes nothing. Its id. ``made=True`` for one already made (at ``at``)."""
        at = at or datetime.now(UTC)
        row = {
            "kind": str(kind), "ref": ref, "item_id": item_id,
            "notification_id": notification_id, "to_name": to_name,
            "to_category": to_category, "purpose": purpose, "asked_by": asked_by,
            "asked_at": at, "made": made, "made_at": at if made else None,
        }  # fmt: skip
        d = self._disclosures
        find = select(d.c.disclosure_id).where(d.c.kind == str(kind), d.c.ref == ref)
        with store_errors("register a disclosure"):
            if conn is not None:
                await conn.execute(self._add, [row])
                return int((await conn.execute(find)).scalar_one())
            async with write_transaction(self._engine) as own:
                await own.execute(self._add, [row])
                return int((await own.execute(find)).scalar_one())

    async def made(
        self, conn: AsyncConnection | None, kind: DisclosureKind, ref: str, made: bool, at: datetime
    ) -> None:
        """Record whether the disclosure was made (the exchange's answer to a share)."""
        d = self._disclosures
        change = (
            update(d)
            .where(d.c.kind == str(kind), d.c.ref == ref)
            .values(made=made, made_at=at if made else None)
        )
        with store_errors("record a disclosure made"):
            if conn is not None:
                await conn.execute(change)
                return
            async with write_transaction(self._engine) as own:
                await own.execute(change)

    # -- decisions ---------------------------------------------------------------------
    async def record(
        self, disclosure_id: int, decision: FamilyDecision, *, recorded_by: str, recorder_kind: str
    ) -> DecisionRecord:
        """Record ``decision`` about a disclosure: it is in force from now, and the one it
        supersedes stays on the record."""
        d, t = self._disclosures, self._decisions
        now = datetime.now(UTC)
        with store_errors("record a family-informed decision"):
            async with write_transaction(self._engine) as conn:
                current = select(d.c.decision_id).where(d.c.disclosure_id == disclosure_id)
                supersedes = (await conn.execute(current)).scalar_one_or_none()
                row = {
                    "disclosure_id": disclosure_id,
                    "informed": decision.informed,
                    "informed_at": decision.informed_at,
                    "informed_by": decision.informed_by,
                    "method": str(decision.method) if decision.method else None,
                    "family_member": decision.family_member,
                    "exception": str(decision.exception) if decision.exception else None,
                    "reason": decision.reason,
                    "decided_by": decision.decided_by,
                    "decided_at": decision.decided_at,
                    "recorded_by": recorded_by,
                    "recorder_kind": recorder_kind,
                    "recorded_at": now,
                    "supersedes": supersedes,
                }
                made = await conn.execute(t.insert().returning(t.c.decision_id), [row])
                decision_id = int(made.scalar_one())
                newer = or_(d.c.decision_id.is_(None), d.c.decision_id < decision_id)
                await conn.execute(
                    update(d)
                    .where(d.c.disclosure_id == disclosure_id, newer)
                    .values(decision_id=decision_id)
                )
        return DecisionRecord(
            decision_id, disclosure_id, decision, recorded_by, recorder_kind, now, supersedes
        )

    async def history(self, disclosure_id: int) -> list[DecisionRecord]:
        """Every decision recorded about a disclosure, oldest first."""
        t = self._decisions
        query = select(t).where(t.c.disclosure_id == disclosure_id).order_by(t.c.decision_id)
        rows = await read_rows(self._engine, query, "list family-informed decisions")
        return [_decision(r) for r in rows]

    # -- reading disclosures -----------------------------------------------------------
    def _with_decision(self) -> Select[Any]:
        d, t = self._disclosures, self._decisions
        labelled = [c.label(f"decision_{c.name}") for c in t.columns]
        return select(d, *labelled).select_from(d.outerjoin(t, t.c.decision_id == d.c.decision_id))

    def _disclosure(self, row: RowMapping) -> Disclosure:
        names = [c.name for c in self._disclosures.columns if c.name != "decision_id"]
        values = {name: row[name] for name in names}
        values["kind"] = DisclosureKind(values["kind"])
        found = row["decision_decision_id"] is not None
        return Disclosure(**values, decision=_decision(row, "decision_") if found else None)

    async def get(self, kind: DisclosureKind, ref: str) -> Disclosure:
        """The disclosure ``kind`` ``ref``; NotFound if none was registered."""
        d = self._disclosures
        query = self._with_decision().where(d.c.kind == str(kind), d.c.ref == ref)
        row = await read_row(self._engine, query, "read a disclosure")
        if row is None:
            raise NotFound(f"no {kind} {ref}")
        return self._disclosure(row)

    async def of(self, notification_ids: Sequence[str]) -> list[Disclosure]:
        """Every disclosure about these notifications, oldest first."""
        if not notification_ids:
            return []
        d = self._disclosures
        query = (
            self._with_decision()
            .where(one_of(self._engine, d.c.notification_id, list(notification_ids)))
            .order_by(d.c.disclosure_id)
        )
        rows = await read_rows(self._engine, query, "list disclosures")
        return [self._disclosure(r) for r in rows]

    async def current(self, kind: DisclosureKind, refs: Sequence[str]) -> dict[str, Disclosure]:
        """The disclosures ``kind`` with these refs that are registered, by ref."""
        if not refs:
            return {}
        d = self._disclosures
        query = self._with_decision().where(
            d.c.kind == str(kind), one_of(self._engine, d.c.ref, list(refs))
        )
        rows = await read_rows(self._engine, query, "read disclosures")
        return {row["ref"]: self._disclosure(row) for row in rows}

    async def outstanding(
        self, selection: QueueSelection, limit: int = OUTSTANDING_LIMIT
    ) -> list[Pending]:
        """Disclosures made with no decision recorded, oldest first, of the queue rows
        ``selection`` covers."""
        d, q = self._disclosures, self._items
        query = (
            self._with_decision()
            .add_columns(q.c.recipient_id.label("row_recipient"), self._team(q).label("row_team"))
            .join(q, q.c.item_id == d.c.item_id)
            .where(d.c.decision_id.is_(None), d.c.made == true(), covers(q, selection))
            .order_by(d.c.made_at, d.c.disclosure_id)
            .limit(limit)
        )
        rows = await read_rows(self._engine, query, "list outstanding disclosures")
        return [Pending(self._disclosure(r), r["row_recipient"], r["row_team"]) for r in rows]

    @staticmethod
    def _team(q: Any) -> ColumnElement[str]:
        return func.coalesce(q.c.team, q.c.recipient_role)

    async def outstanding_by_team(self) -> list[tuple[str, datetime]]:
        """(team, made at) of every outstanding disclosure: the monitor's reading."""
        d, q = self._disclosures, self._items
        query = (
            select(self._team(q), d.c.made_at)
            .select_from(d.join(q, q.c.item_id == d.c.item_id))
            .where(d.c.decision_id.is_(None), d.c.made == true())
        )
        with store_errors("count outstanding disclosures"):
            async with self._engine.connect() as conn:
                return [(row[0], row[1]) for row in await conn.execute(query)]
