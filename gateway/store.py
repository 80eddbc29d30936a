"""The gateway's durable state in one database: the audit trail, the quarantine and the
share ledger (SQLite or PostgreSQL).

:meth:`GatewayStore.record` writes one polled batch's audit records, quarantine entries and
ledger entries in ONE transaction; the gateway commits its Kafka offsets afterwards. After
a crash the batch is judged again and every part is idempotent: an audit decision already
held (same ``message_id``, ``decision``, ``recipient``, ``local_authority`` and
``child_pseudonym``) is not appended again and its existing sequence is returned (a batch
is first written as if all its decisions were new; only when that meets a decision already
held, which happens after a crash, is it written again looking each decision up);
quarantine entries are unique on (topic, partition, offset, item);
ledger entries on (``notification_id``, ``local_authority``) (the first one wins).

**The audit hash chain** is defined in :mod:`gateway.audit_chain` (what is hashed, how a
stored record is checked); this module stores it.

:meth:`GatewayStore.verify_chain` walks the chain and raises
:class:`~sgx.errors.AuditChainBroken` at the first record that is missing (a sequence
gap), does not link to its predecessor, or whose stored columns differ from what
:meth:`record` would write for its content (an edited field, hash or key). A chain only
proves itself up to its last record: cutting off the tail, or rewriting it with fresh
hashes, is found by comparing with a head kept elsewhere — the head this store read at
open and advanced since, or one the caller passes as ``anchor``.

**One writer.** Only one gateway instance may write a chain. The store keeps the chain
head in memory (read at open, advanced after each commit, re-read after a failed
transaction) and a lock serialises its own writers. A second writer cannot fork the
chain — the sequence is the primary key, so its insert fails with a StoreError — but it
would make the first one fail and retry.

Tables (``schema`` places them in a PostgreSQL schema): ``audit_record``,
``gateway_quarantine``, ``share_ledger``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit_chain import (
    AUDIT_COLUMNS,
    GENESIS_HASH,
    AuditEntry,
    AuditRecord,
    audit_record,
    chain_rows,
    check_anchor,
    check_anchor_hash,
    check_decisions,
    decision_key,
    verify_row,
)
from sgx.db import (
    BulkInsert,
    Database,
    UtcDateTime,
    decode_strings,
    encode_strings,
    insert_ignoring_duplicates,
    one_of,
    quarantine_columns,
    serial,
    store_errors,
    write_transaction,
)
from sgx.errors import AuditChainBroken
from sgx.quarantine import Quarantined, quarantine_row, quarantined_from_row

_PAGE = 1000  # records per query when walking the chain
_KEY_CHUNK = 500  # decision keys per IN (...) lookup


@dataclass(frozen=True)
class LedgerEntry:
    """Non-content facts about a notification delivered to one LA, to judge a later onward
    share by that LA (a notification delivered to two LAs has an entry for each)."""

    notification_id: str
    sender: str
    sender_kind: str
    notification_type: str
    local_authority: str
    child_pseudonym: str | None
    restrictions: tuple[str, ...]
    onward_consent: tuple[str, ...]
    recorded_at: datetime


_LEDGER_COLUMNS = tuple(f.name for f in fields(LedgerEntry))
_LEDGER_TUPLES = ("restrictions", "onward_consent")

# --- tables -----------------------------------------------------------------------------


def _audit_table(metadata: MetaData) -> Table:
    return Table(
        "audit_record",
        metadata,
        Column("sequence", BigInteger, primary_key=True, autoincrement=False),
        Column("decision", String(20), nullable=False),
        Column("message_id", String(300), nullable=False),
        Column("notification_id", String(64), index=True),
        Column("sender", String(200), nullable=False),
        Column("recipient", String(200)),
        Column("recipient_role", String(100)),
        Column("local_authority", String(200), index=True),
        Column("notification_type", String(200)),
        Column("child_pseudonym", String(64)),
        Column("reason", String(200), nullable=False),
        Column("lawful_basis", String(200)),
        Column("consent", String(100)),
        Column("no_consent_reason", Text),
        Column("restrictions", Text, nullable=False),
        Column("withheld", Text, nullable=False),
        Column("detail", Text, nullable=False),
        Column("decided_at", UtcDateTime, nullable=False),
        Column("decision_key", Text, nullable=False, unique=True),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    )


def _quarantine_table(metadata: MetaData) -> Table:
    return Table(
        "gateway_quarantine",
        metadata,
        Column("quarantine_id", serial(), primary_key=True),
        Column("message_id", String(300)),
        Column("sender_claimed", String(200)),
        *quarantine_columns("uq_gateway_quarantine_offset"),
    )


def _ledger_table(metadata: MetaData) -> Table:
    return Table(
        "share_ledger",
        metadata,
        Column("notification_id", String(64), primary_key=True),
        Column("sender", String(200), nullable=False),
        Column("sender_kind", String(50), nullable=False),
        Column("notification_type", String(200), nullable=False),
        Column("local_authority", String(200), primary_key=True),
        Column("child_pseudonym", String(64)),
        Column("restrictions", Text, nullable=False),
        Column("onward_consent", Text, nullable=False),
        Column("recorded_at", UtcDateTime, nullable=False),
    )


def _ledger_row(entry: LedgerEntry, timestamp: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """The stored columns of ``entry`` (driver values), in ``_LEDGER_COLUMNS`` order."""
    e = entry
    return (
        e.notification_id, e.sender, e.sender_kind, e.notification_type, e.local_authority,
        e.child_pseudonym, encode_strings(e.restrictions), encode_strings(e.onward_consent),
        timestamp(e.recorded_at),
    )  # fmt: skip


def _ledger_entry(row: RowMapping) -> LedgerEntry:
    values = dict(row)
    for name in _LEDGER_TUPLES:
        values[name] = decode_strings(values[name])
    return LedgerEntry(**values)


def _chunks(keys: Iterable[str]) -> Iterable[list[str]]:
    unique = sorted(set(keys))
    return (unique[i : i + _KEY_CHUNK] for i in range(0, len(unique), _KEY_CHUNK))


# --- the store --------------------------------------------------------------------------


class GatewayStore(Database):
    """The gateway's audit trail, quarantine and share ledger (one writer per chain)."""

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        super().__init__(engine, metadata)
        self._audit = _audit_table(metadata)
        self._quarantine = _quarantine_table(metadata)
        self._ledger = _ledger_table(metadata)
        self._add_quarantine = insert_ignoring_duplicates(
            engine, self._quarantine, "topic", "partition", "offset", "item"
        )
        # Audit and ledger rows go to the driver as ready tuples (sgx.db.BulkInsert).
        self._bulk_audit = BulkInsert(engine, self._audit, AUDIT_COLUMNS)
        self._bulk_ledger = BulkInsert(
            engine, self._ledger, _LEDGER_COLUMNS, ignoring=("notification_id", "local_authority")
        )
        self._lock = asyncio.Lock()
        self._head: tuple[int, str] | None = None

    async def _opened(self) -> None:
        self._head = await self.chain_head()

    # --- writing ------------------------------------------------------------------------

    async def record(
        self,
        audit: Sequence[AuditEntry],
        quarantine: Sequence[Quarantined] = (),
        ledger: Sequence[LedgerEntry] = (),
    ) -> list[int]:
        """Write a batch in ONE transaction; return each audit entry's sequence, in order."""
        check_decisions(audit)
        bad = [quarantine_row(entry, self._quarantine) for entry in quarantine]
        facts = [_ledger_row(entry, self._bulk_ledger.timestamp) for entry in ledger]
        async with self._lock:
            try:
                sequences, head = await self._write(audit, bad, facts)
            except BaseException:
                self._head = None  # the commit may or may not have happened: re-read
                raise
            self._head = head
        return sequences

    async def _write(
        self, audit: Sequence[AuditEntry], bad: list[dict[str, Any]], facts: list[tuple[Any, ...]]
    ) -> tuple[list[int], tuple[int, str]]:
        keys = [decision_key(entry) for entry in audit]
        with store_errors("record gateway decisions"):
            try:  # the usual case: every decision is new, so nothing needs looking up
                return await self._write_chain(audit, keys, bad, facts, look_up=False)
            except IntegrityError:
                pass  # a decision already held (a replayed batch), or a bad row: look up
            self._head = None
            return await self._write_chain(audit, keys, bad, facts, look_up=True)

    async def _write_chain(
        self,
        audit: Sequence[AuditEntry],
        keys: list[str],
        bad: list[dict[str, Any]],
        facts: list[tuple[Any, ...]],
        *,
        look_up: bool,
    ) -> tuple[list[int], tuple[int, str]]:
        async with write_transaction(self._engine) as conn:
            head = self._head or await self._read_head(conn)
            known = await self._known(conn, keys) if look_up else {}
            rows, sequences, head = chain_rows(audit, keys, known, head, self._bulk_audit.timestamp)
            await self._insert(conn, rows, bad, facts)
        return sequences, head

    async def _insert(
        self,
        conn: AsyncConnection,
        rows: list[tuple[Any, ...]],
        bad: list[dict[str, Any]],
        facts: list[tuple[Any, ...]],
    ) -> None:
        await self._bulk_audit.run(conn, rows)
        if bad:
            await conn.execute(self._add_quarantine, bad)
        await self._bulk_ledger.run(conn, facts)

    async def _known(self, conn: AsyncConnection, keys: Iterable[str]) -> dict[str, int]:
        """The sequences of the decisions (by key) already in the chain."""
        key, sequence = self._audit.c.decision_key, self._audit.c.sequence
        known: dict[str, int] = {}
        for chunk in _chunks(keys):
            query = select(key, sequence).where(one_of(self._engine, key, chunk))
            result = await conn.execute(query)
            known.update({row[0]: row[1] for row in result})
        return known

    async def _read_head(self, conn: AsyncConnection) -> tuple[int, str]:
        sequence = self._audit.c.sequence
        query = select(sequence, self._audit.c.hash).order_by(sequence.desc()).limit(1)
        row = (await conn.execute(query)).first()
        return (0, GENESIS_HASH) if row is None else (row[0], row[1])

    # --- reading ------------------------------------------------------------------------

    async def chain_head(self) -> tuple[int, str]:
        """(sequence, hash) of the last stored record; (0, 64 zeros) for an empty chain."""
        with store_errors("read the audit chain head"):
            async with self._engine.connect() as conn:
                return await self._read_head(conn)

    async def audit_records(
        self,
        *,
        notification_id: str | None = None,
        local_authority: str | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Audit records after sequence ``after`` in chain order (for one notification, or
        the decisions concerning one LA)."""
        query = select(self._audit).where(self._audit.c.sequence > after)
        if notification_id is not None:
            query = query.where(self._audit.c.notification_id == notification_id)
        if local_authority is not None:
            query = query.where(self._audit.c.local_authority == local_authority)
        query = query.order_by(self._audit.c.sequence).limit(limit)
        with store_errors("read audit records"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query)
                return [audit_record(row) for row in result.mappings()]

    async def verify_chain(self, anchor: tuple[int, str] | None = None) -> tuple[int, str]:
        """Walk the whole chain; return (count, head hash) or raise AuditChainBroken.

        ``anchor`` is a (sequence, hash) kept elsewhere; without one, the head this store
        holds in memory is used. The chain must reach it and agree with it.
        """
        anchor = anchor or self._head
        head = (0, GENESIS_HASH)
        while True:
            rows, unreadable = await self._page(head[0])
            for row in rows:
                head = verify_row(row, head)
                check_anchor_hash(anchor, head)
            if unreadable is not None:
                raise AuditChainBroken(head[0] + 1, f"record unreadable: {unreadable}")
            if len(rows) < _PAGE:
                break
        check_anchor(anchor, head)
        return head

    async def _page(self, after: int) -> tuple[list[RowMapping], ValueError | None]:
        """Up to a page of records after ``after``, and why the next one is unreadable."""
        sequence = self._audit.c.sequence
        query = select(self._audit).where(sequence > after).order_by(sequence).limit(_PAGE)
        rows: list[RowMapping] = []
        with store_errors("read the audit chain"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query)
                try:
                    rows.extend(result.mappings())  # values are converted row by row
                except ValueError as exc:
                    return rows, exc
        return rows, None

    async def ledger_entry(self, notification_id: str, local_authority: str) -> LedgerEntry | None:
        """The ledger entry for a notification delivered to ``local_authority``, or None if
        the gateway never delivered it there."""
        ledger = self._ledger.c
        query = select(self._ledger).where(
            ledger.notification_id == notification_id, ledger.local_authority == local_authority
        )
        with store_errors("read the share ledger"):
            async with self._engine.connect() as conn:
                row = (await conn.execute(query)).mappings().first()
        return None if row is None else _ledger_entry(row)

    async def quarantine_list(self) -> list[Quarantined]:
        """Every quarantined inbound record, in the order they were kept."""
        query = select(self._quarantine).order_by(self._quarantine.c.quarantine_id)
        with store_errors("list the gateway quarantine"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query)
                return [quarantined_from_row(row) for row in result.mappings()]

    async def quarantine_count(self) -> int:
        query = select(func.count()).select_from(self._quarantine)
        with store_errors("count the gateway quarantine"):
            async with self._engine.connect() as conn:
                return int((await conn.execute(query)).scalar_one())
