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
from datetime import datetime

from sqlalchemy import MetaData, Table, func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway import records
from gateway.audit_chain import (
    GENESIS_HASH,
    AuditEntry,
    AuditRecord,
    Head,
    audit_record,
    check_anchor,
    check_anchor_hash,
    check_decisions,
    decision_key,
    verify_row,
)
from gateway.audit_writer import Also, AuditWriter, Batch
from gateway.records import ChainState, Judged, LedgerEntry
from sgx.errors import AuditChainBroken
from sgx.kafka.quarantine import Quarantined, quarantined_from_row
from sgx.keys.trust import utc_now
from sgx.store.database import Database
from sgx.store.db import (
    insert_ignoring_duplicates,
    one_of,
    store_errors,
    write_transaction,
)
from sgx.store.driver import sql_in

_PAGE = 1000  # records per query when walking the chain
_ID_CHUNK = 500  # message ids per look-up

DEFAULT_CHAIN = "gateway"  # the chain of a writer that names none (a tool, a test)


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
        self._add_chain = insert_ignoring_duplicates(engine, self._chains, "chain")
        # A batch's rows go to the driver as ready tuples, in a few driver calls
        self._writer = AuditWriter(
            engine,
            audit=self._audit,
            chains=self._chains,
            ledger=self._ledger,
            judged=self._judged,
            quarantine=self._quarantine,
        )
        q = engine.dialect.identifier_preparer
        self._judged_sql = (
            f"SELECT {', '.join(q.quote(c) for c in records.JUDGED_COLUMNS)} "
            f"FROM {q.format_table(self._judged)} WHERE "
        )

    async def close(self) -> None:
        await self._writer.close()
        await super().close()

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
                    select(c.chain, c.epoch, c.head_sequence, c.head_hash).where(
                        one_of(self._engine, c.chain, names)
                    )
                )
                rows = result.all()
        self._writer.saw({row[0]: (int(row[2]), str(row[3])) for row in rows})
        return {row[0]: int(row[1]) for row in rows}

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
        also: Sequence[Also] = (),
        judged: Sequence[Judged] = (),
    ) -> list[tuple[str, int]]:
        """:meth:`record`, returning each entry's (chain, sequence)."""
        check_decisions(audit)
        named = list(chains) if chains is not None else [DEFAULT_CHAIN] * len(audit)
        if len(named) != len(audit):
            raise ValueError(f"{len(audit)} audit entries but {len(named)} chains")
        stamp = self._writer.timestamp
        batch = Batch(
            audit=audit,
            chains=named,
            keys=[decision_key(entry) for entry in audit],
            quarantine=[self._writer.quarantine_row(entry) for entry in quarantine],
            ledger=[records.ledger_row(entry, stamp) for entry in ledger],
            judged=[records.judged_row(j, stamp) for j in judged],
            fence=fence,
            also=also,
        )
        with store_errors("record gateway decisions"):
            return await self._writer.write(batch)

    # --- reading ------------------------------------------------------------------------

    async def judged(self, message_ids: Iterable[str]) -> dict[tuple[str, str], Judged]:
        """The messages among ``message_ids`` already judged, by (sender, message id):
        one driver call per 500 ids."""
        found: dict[tuple[str, str], Judged] = {}
        unique = sorted(set(message_ids))
        sqlite = self._writer.driver.sqlite
        with store_errors("look up judged messages"):
            for start in range(0, len(unique), _ID_CHUNK):
                chunk = unique[start : start + _ID_CHUNK]
                where, array = sql_in(sqlite, "message_id", len(chunk))
                query = self._judged_sql + where
                for row in await self._writer.driver.read(query, [chunk] if array else chunk):
                    judged = records.judged_from(row)
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
