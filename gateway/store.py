"""The gateway's durable state in one database: the audit trail, the quarantine and the
share ledger (SQLite or PostgreSQL).

:meth:`GatewayStore.record` writes one polled batch's audit records, quarantine entries and
ledger entries in ONE transaction; the gateway commits its Kafka offsets afterwards. After
a crash the batch is judged again and every part is idempotent: an audit decision already
held (same ``message_id``, ``decision``, ``recipient``, ``local_authority`` and
``child_pseudonym``) is not appended again and its
existing sequence is returned (a batch is first written as if all its decisions were new;
only when that meets a decision already held, which happens after a crash, is it written
again looking each decision up); quarantine entries are unique on (topic, partition, offset, item);
ledger entries on (``notification_id``, ``local_authority``) (the first one wins).

**The audit hash chain.** Record ``n`` (sequences run 1, 2, 3, ... without gaps) holds

    hash_n = SHA-256(bytes.fromhex(hash_{n-1}) || canonical_n)    (lower-case hex)

with ``hash_0`` = 64 zeros (the genesis ``prev_hash``) — the 32 raw digest bytes of the
previous hash, not its hex text. ``canonical_n`` is the UTF-8 encoding of a JSON array
holding ``n`` and then every :class:`AuditEntry` field in declaration order (decision,
message_id, notification_id, sender, recipient, recipient_role, local_authority,
notification_type,
child_pseudonym, reason, lawful_basis, consent, no_consent_reason, restrictions, withheld,
detail, decided_at), written with no whitespace (``","`` separators), non-ASCII characters
as themselves (not ``\\u`` escapes), ``null`` for None, tuples as arrays of strings, and
``decided_at`` as ISO-8601 UTC with milliseconds and a ``Z``
(``"2024-03-01T09:00:00.123Z"``). An array in a fixed order is as unambiguous as an
object with sorted keys and about half the cost to write, once per record. The stored
``decided_at`` is truncated to the millisecond, so what is stored is exactly what is
hashed. :func:`canonical_entry` and :func:`chain_hash` are that definition in code.

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
import hashlib
import json
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
    utc,
    write_transaction,
)
from sgx.errors import AuditChainBroken
from sgx.quarantine import Quarantined, quarantine_row, quarantined_from_row

GENESIS_HASH = "0" * 64
DECISIONS = frozenset(
    {"delivered", "refused", "quarantined", "share_allowed", "share_refused", "applied"}
)
_PAGE = 1000  # records per query when walking the chain
_KEY_CHUNK = 500  # decision keys per IN (...) lookup


@dataclass(frozen=True)
class AuditEntry:
    """One decision of the gateway; ``decision`` is one of :data:`DECISIONS`."""

    decision: str
    message_id: str
    notification_id: str | None
    sender: str
    recipient: str | None
    recipient_role: str | None
    local_authority: str | None  # the LA the decision concerns: whose operators answer for it
    notification_type: str | None
    child_pseudonym: str | None
    reason: str
    lawful_basis: str | None
    consent: str | None
    no_consent_reason: str | None
    restrictions: tuple[str, ...]
    withheld: tuple[str, ...]
    detail: str
    decided_at: datetime


@dataclass(frozen=True)
class AuditRecord(AuditEntry):
    """An audit entry as stored: its place in the chain and its hashes."""

    sequence: int
    prev_hash: str
    hash: str


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


_AUDIT_FIELDS = tuple(f.name for f in fields(AuditEntry))
AUDIT_COLUMNS = ("sequence", *_AUDIT_FIELDS, "decision_key", "prev_hash", "hash")
_LEDGER_COLUMNS = tuple(f.name for f in fields(LedgerEntry))
_AUDIT_TUPLES = ("restrictions", "withheld")
_LEDGER_TUPLES = ("restrictions", "onward_consent")
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

# --- the chain --------------------------------------------------------------------------


def iso_ms(value: datetime) -> str:
    """``value`` as ISO-8601 UTC with milliseconds and ``Z``: ``2024-03-01T09:00:00.123Z``."""
    return utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical_entry(entry: AuditEntry, sequence: int) -> bytes:
    """The bytes hashed for ``entry`` at ``sequence`` (see the module docstring)."""
    e = entry
    return _COMPACT.encode([
        sequence, e.decision, e.message_id, e.notification_id, e.sender, e.recipient,
        e.recipient_role, e.local_authority, e.notification_type, e.child_pseudonym, e.reason,
        e.lawful_basis, e.consent, e.no_consent_reason, list(e.restrictions), list(e.withheld),
        e.detail, iso_ms(e.decided_at),
    ]).encode("utf-8")  # fmt: skip


def chain_hash(prev_hash: str, entry: AuditEntry, sequence: int) -> str:
    """hash_n = SHA-256(prev hash bytes || canonical entry), as lower-case hex."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_entry(entry, sequence)).hexdigest()


def decision_key(entry: AuditEntry) -> str:
    """What makes a decision the same decision: message, decision, recipient, LA, child."""
    e = entry
    return _COMPACT.encode([e.message_id, e.decision, e.recipient, e.local_authority,
                            e.child_pseudonym])  # fmt: skip


def _to_ms(value: datetime) -> datetime:
    value = utc(value)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def audit_row(
    entry: AuditEntry,
    sequence: int,
    prev_hash: str,
    key: str,
    timestamp: Callable[[datetime], Any] = lambda value: value,
) -> tuple[Any, ...]:
    """The stored columns of ``entry`` at ``sequence``, in :data:`AUDIT_COLUMNS` order.

    ``decided_at`` is truncated to the millisecond and passed through ``timestamp`` (a
    driver's value for an insert; as is to compare with a row read back).
    """
    e = entry
    digest = chain_hash(prev_hash, e, sequence)
    return (
        sequence, e.decision, e.message_id, e.notification_id, e.sender, e.recipient,
        e.recipient_role, e.local_authority, e.notification_type, e.child_pseudonym, e.reason,
        e.lawful_basis, e.consent, e.no_consent_reason, encode_strings(e.restrictions),
        encode_strings(e.withheld), e.detail, timestamp(_to_ms(e.decided_at)), key, prev_hash,
        digest,
    )  # fmt: skip


def _audit_record(row: RowMapping) -> AuditRecord:
    values = {name: row[name] for name in (*_AUDIT_FIELDS, "sequence", "prev_hash", "hash")}
    for name in _AUDIT_TUPLES:
        values[name] = decode_strings(values[name])
    return AuditRecord(**values)


def _chain(
    audit: Sequence[AuditEntry],
    keys: list[str],
    known: dict[str, int],
    head: tuple[int, str],
    timestamp: Callable[[datetime], Any],
) -> tuple[list[tuple[Any, ...]], list[int], tuple[int, str]]:
    """New rows (in ``AUDIT_COLUMNS`` order, driver values) for the decisions not
    ``known``, every decision's sequence, and the new head."""
    rows: list[tuple[Any, ...]] = []
    sequences: list[int] = []
    sequence, prev = head
    for entry, key in zip(audit, keys, strict=True):
        if key not in known:
            sequence += 1
            rows.append(audit_row(entry, sequence, prev, key, timestamp))
            prev = rows[-1][-1]  # the hash column
            known[key] = sequence
        sequences.append(known[key])
    return rows, sequences, (sequence, prev)


def _verify(row: RowMapping, head: tuple[int, str]) -> tuple[int, str]:
    """Check one stored record against its predecessor ``head``; return the new head."""
    sequence = head[0] + 1
    if row["sequence"] != sequence:
        raise AuditChainBroken(sequence, f"record missing (the next one is {row['sequence']})")
    if row["prev_hash"] != head[1]:
        raise AuditChainBroken(sequence, f"prev_hash does not link to record {head[0]}")
    try:
        entry = _audit_record(row)
        values = audit_row(entry, sequence, head[1], decision_key(entry))
        rebuilt = dict(zip(AUDIT_COLUMNS, values, strict=True))
    except (ValueError, TypeError, KeyError) as exc:
        raise AuditChainBroken(sequence, f"record unreadable: {exc}") from exc
    if rebuilt["hash"] != row["hash"]:
        raise AuditChainBroken(sequence, "content does not match the record's hash")
    for name, value in rebuilt.items():
        if row[name] != value:
            raise AuditChainBroken(sequence, f"column {name} is not what was recorded")
    return sequence, row["hash"]


def _check_decisions(audit: Sequence[AuditEntry]) -> None:
    unknown = {entry.decision for entry in audit} - DECISIONS
    if unknown:
        raise ValueError(f"unknown audit decision(s) {sorted(unknown)}; known: {sorted(DECISIONS)}")


def _check_anchor(anchor: tuple[int, str] | None, head: tuple[int, str]) -> None:
    if anchor is None or anchor[0] == 0:
        return
    if head[0] < anchor[0]:
        missing = f"records {head[0] + 1}..{anchor[0]} are missing"
        raise AuditChainBroken(head[0] + 1, f"{missing} (the chain was cut short)")


def _check_anchor_hash(anchor: tuple[int, str] | None, head: tuple[int, str]) -> None:
    if anchor is not None and head[0] == anchor[0] and head[1] != anchor[1]:
        raise AuditChainBroken(head[0], "hash differs from the chain head held by the writer")


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
        _check_decisions(audit)
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
            rows, sequences, head = _chain(audit, keys, known, head, self._bulk_audit.timestamp)
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
                return [_audit_record(row) for row in result.mappings()]

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
                head = _verify(row, head)
                _check_anchor_hash(anchor, head)
            if unreadable is not None:
                raise AuditChainBroken(head[0] + 1, f"record unreadable: {unreadable}")
            if len(rows) < _PAGE:
                break
        _check_anchor(anchor, head)
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
