"""Writing one batch of decisions: the audit chains fenced and appended, with the batch's
quarantine, ledger and judged messages, in ONE transaction of a few driver calls.

A gateway batch at 1,000 notifications/s holds a few dozen notifications, so what the
write costs per batch weighs as much as what it costs per row. It is issued on the
database driver's own connection (:class:`sgx.store.driver.Driver`), as a fixed number
of statements whatever the batch holds:

1. **Fence and advance** every chain the batch writes, in one statement: each chain's head
   row moves from the head this writer last wrote (or read) to the batch's new head,
   only where the row still holds that head and, for a writer in a group, the epoch it
   claimed (``UPDATE ... WHERE chain = ? AND head_sequence = ? AND head_hash = ? AND
   epoch = ?``; on PostgreSQL one ``UPDATE ... FROM unnest(...)``). It takes each head
   row's lock (SQLite: the database write lock, taken at BEGIN) for the rest of the
   transaction, so the fence is checked in the same transaction as the append and no
   other writer can append in between.
2. The audit records, 3. the ledger entries, 4. the judged messages and 5. the
   quarantine entries: one insert each (only those the batch has).

If a chain's row did not hold what was expected, nothing is written: the writer reads
the chains' rows again and either raises :class:`~sgx.errors.Fenced` (another instance
claimed the chain since: a zombie's batch) or, if only the head moved (its own earlier
commit it did not hear of, or a writer without a group beside it), writes the batch
again on the new head. So the heads need no ``SELECT ... FOR UPDATE`` before each
write: the writer keeps the head it last wrote, and the database checks it.

A batch meeting a decision already held (a replayed batch: the unique decision key
refuses it) is written again with those decisions looked up (their place returned, not
appended again). A batch that also writes other tables of the database (the allocation
snapshot, the consent book: ``also``) runs the same statements through SQLAlchemy, in
its transaction, before those writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.audit_chain import AUDIT_COLUMNS, GENESIS_HASH, AuditEntry, Head, chain_rows
from gateway.records import JUDGED_COLUMNS, LEDGER_COLUMNS
from sgx.errors import Fenced, StoreError
from sgx.kafka.quarantine import Quarantined
from sgx.keys.trust import utc_now
from sgx.store.db import is_sqlite, write_transaction
from sgx.store.driver import BulkInsert, Driver, Row, SqlAlchemyTx, Tx, is_duplicate, sql_in

Place = tuple[str, int]  # (chain, sequence) of a decision
_Row = tuple[int, str, int]  # a chain's row: head sequence, head hash, epoch
Also = Callable[[AsyncConnection], Awaitable[None]]
_KEY_CHUNK = 500  # decision keys per look-up
ATTEMPTS = 5  # writes of one batch whose heads moved under it, before giving up
QUARANTINE_COLUMNS = (
    "message_id", "sender_claimed", "topic", "partition", "offset", "item", "reason",
    "detail", "raw", "quarantined_at",
)  # fmt: skip


@dataclass(slots=True)
class Batch:
    """One batch's rows, ready for the driver (audit entries still to be chained)."""

    audit: Sequence[AuditEntry]
    chains: list[str]
    keys: list[str]
    quarantine: list[Row]
    ledger: list[Row]
    judged: list[Row]
    fence: Mapping[str, int] | None
    also: Sequence[Also]


class _Moved(Exception):
    """Some chains' head rows did not hold what the batch was written on."""

    def __init__(self, chains: list[str]) -> None:
        super().__init__(", ".join(chains))
        self.chains = chains


@dataclass(frozen=True, slots=True)
class _Statements:
    """The SQL of the fence and of the look-ups, in the driver's dialect."""

    advance: str  # (new seq, new hash, chain, old seq, old hash[, epoch]) per chain
    advance_fenced: str
    heads: str  # chain, head_sequence, head_hash, epoch of the chains named
    known: str  # decision_key, chain, sequence of the keys named
    ensure: str  # a chain row, if it is missing


def _statements(engine: AsyncEngine, chains: Table, audit: Table) -> _Statements:
    q = engine.dialect.identifier_preparer
    heads, records = q.format_table(chains), q.format_table(audit)
    if is_sqlite(engine):
        advance = (
            f"UPDATE {heads} SET head_sequence = ?, head_hash = ? "
            "WHERE chain = ? AND head_sequence = ? AND head_hash = ?"
        )
        return _Statements(
            advance=advance,
            advance_fenced=advance + " AND epoch = ?",
            heads=f"SELECT chain, head_sequence, head_hash, epoch FROM {heads} WHERE ",
            known=f"SELECT decision_key, chain, sequence FROM {records} WHERE ",
            ensure=(
                f"INSERT INTO {heads} (chain, head_sequence, head_hash, epoch, owner, "
                "claimed_at) VALUES (?, 0, ?, 0, '', ?) ON CONFLICT (chain) DO NOTHING"
            ),
        )
    columns = "chain, new_seq, new_hash, old_seq, old_hash, epoch"
    advance = (
        f"UPDATE {heads} AS c SET head_sequence = v.new_seq, head_hash = v.new_hash "
        "FROM unnest($1::varchar[], $2::bigint[], $3::varchar[], $4::bigint[], "
        f"$5::varchar[], $6::bigint[]) AS v({columns}) WHERE c.chain = v.chain "
        "AND c.head_sequence = v.old_seq AND c.head_hash = v.old_hash"
    )
    return _Statements(
        advance=advance + " RETURNING c.chain",
        advance_fenced=advance + " AND c.epoch = v.epoch RETURNING c.chain",
        heads=f"SELECT chain, head_sequence, head_hash, epoch FROM {heads} WHERE ",
        known=f"SELECT decision_key, chain, sequence FROM {records} WHERE ",
        ensure=(
            f"INSERT INTO {heads} (chain, head_sequence, head_hash, epoch, owner, claimed_at) "
            "SELECT c, 0, $2::varchar, 0, '', $3::timestamptz FROM unnest($1::varchar[]) AS c "
            "ON CONFLICT (chain) DO NOTHING"
        ),
    )


class AuditWriter:
    """Writes batches of decisions (see the module docstring); one batch at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        audit: Table,
        chains: Table,
        ledger: Table,
        judged: Table,
        quarantine: Table,
    ) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine)
        self.driver = Driver(engine)
        self._sql = _statements(engine, chains, audit)
        self.audit = BulkInsert(engine, audit, AUDIT_COLUMNS)
        self.ledger = BulkInsert(
            engine, ledger, LEDGER_COLUMNS, ignoring=("notification_id", "local_authority")
        )
        self.judged = BulkInsert(engine, judged, JUDGED_COLUMNS, ignoring=("sender", "message_id"))
        where_read = ("topic", "partition", "offset", "item")
        self.quarantine = BulkInsert(engine, quarantine, QUARANTINE_COLUMNS, ignoring=where_read)
        self._heads: dict[str, Head] = {}  # the head of each chain as this writer last saw it
        self._lock = asyncio.Lock()

    def timestamp(self, value: datetime) -> Any:
        """A timestamp column's driver value."""
        return self.audit.timestamp(value)

    def quarantine_row(self, entry: Quarantined) -> Row:
        e = entry
        return (
            e.message_id, e.sender_claimed, e.topic, e.partition, e.offset, e.item, e.reason,
            e.detail, e.raw, self.timestamp(e.quarantined_at),
        )  # fmt: skip

    def saw(self, heads: Mapping[str, Head]) -> None:
        """Heads read elsewhere (a claim's transaction): the next write starts from them."""
        self._heads.update(heads)

    async def close(self) -> None:
        await self.driver.close()

    # --- writing -----------------------------------------------------------------------

    async def write(self, batch: Batch) -> list[Place]:
        """Write ``batch``; every audit entry's (chain, sequence), in order."""
        async with self._lock:
            known: dict[str, Place] = {}
            looked_up = False
            for _ in range(ATTEMPTS):
                heads = await self._heads_of(sorted(set(batch.chains)))
                after = dict(heads)
                rows, places = chain_rows(
                    batch.audit, batch.chains, batch.keys, dict(known), after, self.timestamp
                )
                try:
                    await self._append(batch, rows, heads, after)
                except _Moved as moved:
                    self._check_fence(batch.fence, await self._read_heads(moved.chains))
                    continue
                except Exception as exc:
                    if looked_up or not is_duplicate(exc):
                        raise
                    known, looked_up = await self._known(batch.keys), True
                    continue
                self._heads.update(after)
                return places
        raise StoreError(f"the audit chains' heads kept moving under {ATTEMPTS} writes")

    async def _append(
        self, batch: Batch, rows: Sequence[Row], before: dict[str, Head], after: dict[str, Head]
    ) -> None:
        if not batch.also:
            async with self.driver.transaction() as tx:
                await self._steps(tx, batch, rows, before, after)
            return
        async with write_transaction(self._engine) as conn:
            await self._steps(SqlAlchemyTx(conn), batch, rows, before, after)
            for write in batch.also:
                await write(conn)

    async def _steps(
        self,
        tx: Tx,
        batch: Batch,
        rows: Sequence[Row],
        before: dict[str, Head],
        after: dict[str, Head],
    ) -> None:
        await self._advance(tx, batch.fence, before, after)
        await self.audit.run(tx, rows)
        await self.ledger.run(tx, batch.ledger)
        await self.judged.run(tx, batch.judged)
        await self.quarantine.run(tx, batch.quarantine)

    async def _advance(
        self,
        tx: Tx,
        fence: Mapping[str, int] | None,
        before: dict[str, Head],
        after: dict[str, Head],
    ) -> None:
        """Move every chain's head from ``before`` to ``after`` (fenced by its epoch), or
        raise _Moved naming the chains whose row held something else."""
        if not before:
            return
        names = sorted(before)
        sql = self._sql.advance if fence is None else self._sql.advance_fenced
        epochs = [fence.get(name, 0) if fence is not None else 0 for name in names]
        if tx.sqlite:
            rows = [
                (*after[name], name, *before[name], *([epoch] if fence is not None else []))
                for name, epoch in zip(names, epochs, strict=True)
            ]
            if await tx.many(sql, rows) == len(names):
                return
            raise _Moved(names)  # which ones is read again by the caller
        moved = await tx.fetch(
            sql,
            (
                names,
                [after[n][0] for n in names],
                [after[n][1] for n in names],
                [before[n][0] for n in names],
                [before[n][1] for n in names],
                epochs,
            ),
        )
        if len(moved) != len(names):
            raise _Moved(sorted(set(names) - {str(row[0]) for row in moved}))

    @staticmethod
    def _check_fence(fence: Mapping[str, int] | None, rows: Mapping[str, _Row]) -> None:
        if fence is None:
            return
        for name, (_, _, epoch) in sorted(rows.items()):
            if fence.get(name, 0) != epoch:
                raise Fenced(name, fence.get(name, 0), epoch)

    # --- heads and look-ups ------------------------------------------------------------

    async def _heads_of(self, names: list[str]) -> dict[str, Head]:
        """Each chain's head as this writer last saw it; the unseen ones read (and their
        rows made, for a chain never written)."""
        missing = [name for name in names if name not in self._heads]
        if missing:
            await self._read_heads(missing)
        return {name: self._heads[name] for name in names}

    async def _read_heads(self, names: list[str]) -> dict[str, _Row]:
        """The chains' rows now, (sequence, hash, epoch) by chain; kept as their heads."""
        found = await self._select_heads(names)
        absent = [name for name in names if name not in found]
        if absent:
            await self._ensure(absent)
            found.update(await self._select_heads(absent))
        self._heads.update({name: (seq, digest) for name, (seq, digest, _) in found.items()})
        return found

    async def _select_heads(self, names: list[str]) -> dict[str, _Row]:
        where, array = sql_in(self._sqlite, "chain", len(names))
        rows = await self.driver.read(self._sql.heads + where, [names] if array else names)
        return {str(r[0]): (int(r[1]), str(r[2]), int(r[3])) for r in rows}

    async def _ensure(self, names: list[str]) -> None:
        now = self.timestamp(utc_now())
        async with self.driver.transaction() as tx:
            if tx.sqlite:
                await tx.many(self._sql.ensure, [(name, GENESIS_HASH, now) for name in names])
            else:
                await tx.execute(self._sql.ensure, (names, GENESIS_HASH, now))

    async def _known(self, keys: Iterable[str]) -> dict[str, Place]:
        """The (chain, sequence) of the decisions (by key) already recorded."""
        unique = sorted(set(keys))
        known: dict[str, Place] = {}
        for start in range(0, len(unique), _KEY_CHUNK):
            chunk = unique[start : start + _KEY_CHUNK]
            where, array = sql_in(self._sqlite, "decision_key", len(chunk))
            rows = await self.driver.read(self._sql.known + where, [chunk] if array else chunk)
            known.update({str(r[0]): (str(r[1]), int(r[2])) for r in rows})
        return known
