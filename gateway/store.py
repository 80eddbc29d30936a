"""The gateway's durable state in one database: the audit trail, the quarantine and the
share ledger (SQLite or PostgreSQL), shared by every gateway instance.

:meth:`GatewayStore.record` writes one polled batch's audit records, quarantine entries,
ledger entries (and the allocation snapshot's changes) in ONE transaction; the gateway
commits its Kafka offsets afterwards. After a crash the batch is judged again and every
part is idempotent: an audit decision already held (same ``message_id``, ``decision``,
``recipient``, ``local_authority`` and ``child_pseudonym``, in any chain) is not appended
again and its existing place is returned (a batch is first written as if all its
decisions were new; only when that meets a decision already held is it written again
looking each decision up); quarantine entries are unique on (topic, partition, offset,
item); ledger entries on (``notification_id``, ``local_authority``) (the first one wins).

**Chains and their writers.** The hash chains are defined in :mod:`gateway.audit_chain`:
one per Kafka partition read. ``audit_chain`` holds each chain's head and its **epoch**:
a gateway instance given a partition by the group claims its chain (:meth:`claim`: the
epoch goes up by one) before reading it, and every write checks, under the chain row's
lock, that the epoch is still the one it claimed. A zombie — an instance paused past its
session timeout whose partitions were given to another, then resumed — holds an older
epoch: its write raises :class:`~sgx.errors.Fenced` and leaves nothing, so it publishes
nothing either. Two writers can never fork a chain: the head row is locked (``SELECT
... FOR UPDATE`` on PostgreSQL, the database write lock on SQLite) and the sequence is
part of the primary key.

:meth:`GatewayStore.verify_chains` walks every chain and raises
:class:`~sgx.errors.AuditChainBroken` at the first record that is missing (a sequence
gap), does not link to its predecessor, or whose stored columns differ from what
:meth:`record` would write for its content. A chain proves itself only up to its last
record; cutting off the tail is found against the chain's head row and against the
signed checkpoints (:mod:`gateway.checkpoints`), which an attacker who deletes records
cannot forge.

**Judged once.** ``judged_message`` keeps every message judged (not quarantined) by its
verified sender and message id, with where it was first read: a resend or replay of the
same message read anywhere else is a duplicate (:mod:`gateway.decide`), audited as one and
never judged afresh.

Tables (``schema`` places them in a PostgreSQL schema): ``audit_record``,
``audit_chain``, ``judged_message``, ``gateway_quarantine``, ``share_ledger``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import MetaData, Table, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import records
from gateway.audit_chain import (
    AUDIT_COLUMNS,
    GENESIS_HASH,
    AuditEntry,
    AuditRecord,
    Head,
    audit_record,
    chain_rows,
    check_anchor,
    check_anchor_hash,
    check_decisions,
    decision_key,
    verify_row,
)
from gateway.records import ChainState, Judged, LedgerEntry
from sgx.errors import AuditChainBroken, Fenced
from sgx.kafka.quarantine import Quarantined, quarantine_row, quarantined_from_row
from sgx.keys.trust import utc_now
from sgx.store.database import Database
from sgx.store.db import (
    BulkInsert,
    insert_ignoring_duplicates,
    one_of,
    store_errors,
    write_transaction,
)

_PAGE = 1000  # records per query when walking the chain
_KEY_CHUNK = 500  # decision keys per IN (...) lookup


def _chunks(keys: Iterable[str]) -> Iterable[list[str]]:
    unique = sorted(set(keys))
    return (unique[i : i + _KEY_CHUNK] for i in range(0, len(unique), _KEY_CHUNK))


DEFAULT_CHAIN = "gateway"  # the chain of a writer that names none (a tool, a test)


@dataclass(slots=True)
class _Batch:
    audit: Sequence[AuditEntry]
    chains: list[str]
    keys: list[str]
    bad: list[dict[str, Any]]
    facts: list[tuple[Any, ...]]
    fence: Mapping[str, int] | None
    also: Sequence[Callable[[AsyncConnection], Awaitable[None]]]
    judged: list[tuple[Any, ...]]


class GatewayStore(Database):
    """The gateway's audit trail, quarantine and share ledger (many writers, one per chain)."""

    KIND = "gateway"

    def __init__(self, engine: AsyncEngine, metadata: MetaData) -> None:
        super().__init__(engine, metadata)
        self._audit = records.audit_table(metadata)
        self._chains = records.chain_table(metadata)
        self._judged = records.judged_table(metadata)
        self._quarantine = records.quarantine_table(metadata)
        self._ledger = records.ledger_table(metadata)
        self._add_quarantine = insert_ignoring_duplicates(
            engine, self._quarantine, "topic", "partition", "offset", "item"
        )
        self._add_chain = insert_ignoring_duplicates(engine, self._chains, "chain")
        # Audit and ledger rows go to the driver as ready tuples (sgx.store.db.BulkInsert).
        self._bulk_audit = BulkInsert(engine, self._audit, AUDIT_COLUMNS)
        self._bulk_ledger = BulkInsert(
            engine,
            self._ledger,
            records.LEDGER_COLUMNS,
            ignoring=("notification_id", "local_authority"),
        )
        self._bulk_judged = BulkInsert(
            engine, self._judged, records.JUDGED_COLUMNS, ignoring=("sender", "message_id")
        )

    # --- claiming chains ----------------------------------------------------------------

    async def claim(self, chains: Iterable[str], owner: str) -> dict[str, int]:
        """Take over ``chains`` for ``owner`` (a gateway instance given their partitions):
        each chain's epoch goes up by one, fencing off whoever wrote it before. Returns the
        epoch to write each chain with."""
        names = sorted(set(chains))
        if not names:
            return {}
        c = self._chains.c
        now = utc_now()
        with store_errors("claim audit chains"):
            async with write_transaction(self._engine) as conn:
                await self._ensure_chains(conn, names, now)
                await conn.execute(
                    update(self._chains)
                    .where(one_of(self._engine, c.chain, names))
                    .values(epoch=c.epoch + 1, owner=owner, claimed_at=now)
                )
                result = await conn.execute(
                    select(c.chain, c.epoch).where(one_of(self._engine, c.chain, names))
                )
                return {row[0]: int(row[1]) for row in result}

    async def _ensure_chains(
        self, conn: AsyncConnection, names: Sequence[str], now: datetime
    ) -> None:
        rows = [
            {"chain": name, "head_sequence": 0, "head_hash": GENESIS_HASH, "epoch": 0,
             "owner": "", "claimed_at": now}
            for name in names
        ]  # fmt: skip
        await conn.execute(self._add_chain, rows)

    # --- writing ------------------------------------------------------------------------

    async def record(
        self,
        audit: Sequence[AuditEntry],
        quarantine: Sequence[Quarantined] = (),
        ledger: Sequence[LedgerEntry] = (),
        *,
        chains: Sequence[str] | None = None,
        fence: Mapping[str, int] | None = None,
        also: Sequence[Callable[[AsyncConnection], Awaitable[None]]] = (),
        judged: Sequence[Judged] = (),
    ) -> list[int]:
        """Write a batch in ONE transaction; return each audit entry's sequence, in order.

        ``chains`` names each entry's chain (all in :data:`DEFAULT_CHAIN` if None).
        ``fence`` is the epoch this writer claimed for each chain (:meth:`claim`); a chain
        since claimed by another raises :class:`~sgx.errors.Fenced` and nothing is written.
        Without ``fence`` nothing is checked (one writer: a tool, a test). ``also`` are
        further writes (another table in this database: the allocation snapshot) done in
        the same transaction, after the audit records.
        """
        return [seq for _, seq in await self.record_places(
            audit, quarantine, ledger, chains=chains, fence=fence, also=also, judged=judged
        )]  # fmt: skip

    async def record_places(
        self,
        audit: Sequence[AuditEntry],
        quarantine: Sequence[Quarantined] = (),
        ledger: Sequence[LedgerEntry] = (),
        *,
        chains: Sequence[str] | None = None,
        fence: Mapping[str, int] | None = None,
        also: Sequence[Callable[[AsyncConnection], Awaitable[None]]] = (),
        judged: Sequence[Judged] = (),
    ) -> list[tuple[str, int]]:
        """:meth:`record`, returning each entry's (chain, sequence)."""
        check_decisions(audit)
        named = list(chains) if chains is not None else [DEFAULT_CHAIN] * len(audit)
        if len(named) != len(audit):
            raise ValueError(f"{len(audit)} audit entries but {len(named)} chains")
        batch = _Batch(
            audit=audit,
            chains=named,
            keys=[decision_key(entry) for entry in audit],
            bad=[quarantine_row(entry, self._quarantine) for entry in quarantine],
            facts=[records.ledger_row(entry, self._bulk_ledger.timestamp) for entry in ledger],
            fence=fence,
            also=also,
            judged=[records.judged_row(j, self._bulk_judged.timestamp) for j in judged],
        )
        with store_errors("record gateway decisions"):
            try:  # the usual case: every decision is new, so nothing needs looking up
                return await self._write(batch, look_up=False)
            except IntegrityError:
                pass  # a decision already held (a replayed batch), or a bad row: look up
            return await self._write(batch, look_up=True)

    async def _write(self, batch: _Batch, *, look_up: bool) -> list[tuple[str, int]]:
        async with write_transaction(self._engine) as conn:
            heads = await self._locked_heads(conn, sorted(set(batch.chains)), batch.fence)
            known = await self._known(conn, batch.keys) if look_up else {}
            before = dict(heads)
            rows, places = chain_rows(
                batch.audit, batch.chains, batch.keys, known, heads, self._bulk_audit.timestamp
            )
            await self._bulk_audit.run(conn, rows)
            if batch.bad:
                await conn.execute(self._add_quarantine, batch.bad)
            await self._bulk_ledger.run(conn, batch.facts)
            await self._bulk_judged.run(conn, batch.judged)
            for write in batch.also:
                await write(conn)
            await self._advance(conn, before, heads)
        return places

    async def _locked_heads(
        self, conn: AsyncConnection, names: list[str], fence: Mapping[str, int] | None
    ) -> dict[str, Head]:
        """Each chain's head, its row locked for this transaction; Fenced if a chain's
        epoch is not the one ``fence`` holds."""
        if not names:
            return {}
        c = self._chains.c
        query = (
            select(c.chain, c.head_sequence, c.head_hash, c.epoch)
            .where(one_of(self._engine, c.chain, names))
            .with_for_update()
        )
        rows = {row[0]: row for row in await conn.execute(query)}
        missing = [name for name in names if name not in rows]
        if missing:
            await self._ensure_chains(conn, missing, utc_now())
            rows.update({row[0]: row for row in await conn.execute(query)})
        heads: dict[str, Head] = {}
        for name in names:
            _, sequence, digest, epoch = rows[name]
            if fence is not None and fence.get(name) != epoch:
                raise Fenced(name, fence.get(name, 0), int(epoch))
            heads[name] = (int(sequence), str(digest))
        return heads

    async def _advance(
        self, conn: AsyncConnection, before: dict[str, Head], after: dict[str, Head]
    ) -> None:
        c = self._chains.c
        for name, head in after.items():
            if head != before[name]:
                await conn.execute(
                    update(self._chains)
                    .where(c.chain == name)
                    .values(head_sequence=head[0], head_hash=head[1])
                )

    async def _known(
        self, conn: AsyncConnection, keys: Iterable[str]
    ) -> dict[str, tuple[str, int]]:
        """The (chain, sequence) of the decisions (by key) already recorded."""
        a = self._audit.c
        known: dict[str, tuple[str, int]] = {}
        for chunk in _chunks(keys):
            query = select(a.decision_key, a.chain, a.sequence).where(
                one_of(self._engine, a.decision_key, chunk)
            )
            result = await conn.execute(query)
            known.update({row[0]: (row[1], row[2]) for row in result})
        return known

    # --- reading ------------------------------------------------------------------------

    async def judged(self, message_ids: Iterable[str]) -> dict[tuple[str, str], Judged]:
        """The messages among ``message_ids`` already judged, by (sender, message id)."""
        found: dict[tuple[str, str], Judged] = {}
        column = self._judged.c.message_id
        with store_errors("look up judged messages"):
            async with self._engine.connect() as conn:
                for chunk in _chunks(message_ids):
                    query = select(self._judged).where(one_of(self._engine, column, chunk))
                    for row in (await conn.execute(query)).mappings():
                        judged = Judged(**dict(row))
                        found[judged.sender, judged.message_id] = judged
        return found

    async def chain_heads(self) -> dict[str, ChainState]:
        """Every chain's head row: last (sequence, hash), epoch and owner, by chain."""
        query = select(self._chains).order_by(self._chains.c.chain)
        with store_errors("read the audit chain heads"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query)
                return {
                    r["chain"]: ChainState(
                        r["chain"], int(r["head_sequence"]), r["head_hash"], int(r["epoch"]),
                        r["owner"],
                    )
                    for r in result.mappings()
                }  # fmt: skip

    async def chain_head(self, chain: str = DEFAULT_CHAIN) -> Head:
        """(sequence, hash) of ``chain``'s last record; (0, 64 zeros) for an empty chain."""
        state = (await self.chain_heads()).get(chain)
        return (0, GENESIS_HASH) if state is None else (state.sequence, state.hash)

    async def audit_records(
        self,
        *,
        notification_id: str | None = None,
        message_id: str | None = None,
        local_authority: str | None = None,
        chain: str | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Audit records for one notification or message, or the decisions concerning one
        LA, in the order they were decided (of one ``chain``: in chain order); ``after``
        skips sequences up to it (meaningful within one chain)."""
        a = self._audit.c
        query = select(self._audit)
        if notification_id is not None:
            query = query.where(a.notification_id == notification_id)
        if message_id is not None:
            query = query.where(a.message_id == message_id)
        if local_authority is not None:
            query = query.where(a.local_authority == local_authority)
        if after:
            query = query.where(a.sequence > after)
        if chain is not None:
            query = query.where(a.chain == chain).order_by(a.sequence)
        else:
            query = query.order_by(a.decided_at, a.chain, a.sequence)
        query = query.limit(limit)
        with store_errors("read audit records"):
            async with self._engine.connect() as conn:
                result = await conn.execute(query)
                return [audit_record(row) for row in result.mappings()]

    async def verify_chains(self) -> dict[str, Head]:
        """Walk every chain; return each one's (count, head hash) or raise AuditChainBroken.

        Each chain must reach the head its row records: a chain cut short, or rewritten
        with fresh hashes up to a shorter head, disagrees with it.
        """
        heads = await self.chain_heads()
        a = self._audit.c
        with store_errors("list the audit chains"):
            async with self._engine.connect() as conn:
                stored = set((await conn.scalars(select(a.chain).distinct())).all())
        verified: dict[str, Head] = {}
        for chain in sorted(stored | set(heads)):
            state = heads.get(chain)
            anchor = None if state is None else (state.sequence, state.hash)
            verified[chain] = await self.verify_chain(anchor, chain=chain)
        return verified

    async def verify_chain(self, anchor: Head | None = None, *, chain: str = DEFAULT_CHAIN) -> Head:
        """Walk one chain; return (count, head hash) or raise AuditChainBroken.

        ``anchor`` is a (sequence, hash) kept elsewhere (a signed checkpoint; the chain's
        head row if None). The chain must reach it and agree with it.
        """
        if anchor is None:
            state = (await self.chain_heads()).get(chain)
            anchor = None if state is None else (state.sequence, state.hash)
        head: Head = (0, GENESIS_HASH)
        try:
            while True:
                rows, unreadable = await self._page(chain, head[0])
                for row in rows:
                    head = verify_row(row, head)
                    check_anchor_hash(anchor, head)
                if unreadable is not None:
                    raise AuditChainBroken(head[0] + 1, f"record unreadable: {unreadable}")
                if len(rows) < _PAGE:
                    break
            check_anchor(anchor, head)
        except AuditChainBroken as exc:
            raise AuditChainBroken(exc.sequence, exc.detail, chain=chain) from None
        return head

    async def record_at(self, chain: str, sequence: int) -> AuditRecord | None:
        """The record at ``sequence`` of ``chain``, if it is there."""
        a = self._audit.c
        query = select(self._audit).where(a.chain == chain, a.sequence == sequence)
        with store_errors("read an audit record"):
            async with self._engine.connect() as conn:
                row = (await conn.execute(query)).mappings().first()
        return None if row is None else audit_record(row)

    async def _page(self, chain: str, after: int) -> tuple[list[RowMapping], ValueError | None]:
        """Up to a page of ``chain``'s records after ``after``, and why the next one is
        unreadable."""
        a = self._audit.c
        query = (
            select(self._audit)
            .where(a.chain == chain, a.sequence > after)
            .order_by(a.sequence)
            .limit(_PAGE)
        )
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
        return None if row is None else records.ledger_entry(row)

    @property
    def quarantine_table(self) -> Table:
        """The gateway's quarantine table (for :mod:`sgx.kafka.quarantine_replay`)."""
        return self._quarantine

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
