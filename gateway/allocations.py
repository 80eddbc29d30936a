"""The allocation directory: which LAs hold each child, and with which worker there.

Local authorities publish allocation updates to their own allocation topic; every gateway
instance reads every allocation topic (:mod:`gateway.allocation_feed`) into this
directory in memory (:mod:`gateway.allocation_index`), so whichever instance judges a
notification sees every LA's allocations. A child may be open to several LAs at once (a
transfer between authorities, a looked-after child placed out of area), so a lookup
returns every LA holding the child. An LA changes only its own cases (the caller checks
that an update is the sender's own), and the identifiers it names together are one
child's: an update naming any of them acts on the whole case
(:mod:`gateway.allocation_cases`, the rule, which memory and the snapshot share).

**The snapshot.** The database holds the directory as of a position in each allocation
topic (``gateway_allocations`` and ``gateway_allocation_offsets``), written by the
gateway instance that owns the allocation topic's partition in the gateway group, in
the same transaction as its audit records (:meth:`persist`). Each row is one key of one
LA's case; the keys of a case of several share its ``case_id`` (NULL for a case of one,
as every row written before gateway 0005 is). A starting instance loads the snapshot and
its positions in one read and reads each topic on from there, so a restart neither
replays years of updates nor forgets one. The snapshot settles each update against its
own rows as they stood at the update's offset, with the same rule memory applies, so it
never depends on how far ahead this instance's memory has read.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.allocation_cases import (
    Allocation,
    Settled,
    case_id,
    db_key,
    from_db_key,
    memory_keys,
    named_keys,
    settle,
)
from gateway.allocation_index import AllocationIndex
from sgx.keys.pseudonym import Pseudonymiser
from sgx.store.db import (
    create_tables,
    dialect_insert,
    metadata_for,
    store_errors,
    write_transaction,
)

Position = tuple[str, int]  # (allocation topic, partition)
_CHUNK = 2_000  # keys per look-up of the snapshot's cases


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "gateway_allocations",
        metadata,
        sa.Column("local_authority", sa.String(64), primary_key=True),
        sa.Column("child_key", sa.String(64), primary_key=True),
        sa.Column("worker_id", sa.String(128), nullable=False),
        sa.Column("worker_name", sa.String(256), nullable=False),
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("supervisor_id", sa.String(128), nullable=False),
        sa.Column("supervisor_name", sa.String(256), nullable=False),
        # the LA's case of several keys this key is one of (gateway 0005); NULL: of one
        sa.Column("case_id", sa.String(64)),
        sa.Index("ix_gateway_allocations_case", "local_authority", "case_id"),
    )


def _offsets_table(metadata: sa.MetaData) -> sa.Table:
    """Where in each allocation topic partition the snapshot stands: the next offset."""
    return sa.Table(
        "gateway_allocation_offsets",
        metadata,
        sa.Column("topic", sa.String(300), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
    )


_FIRST_READ = ("topic", "partition", "offset")  # where an update was first read


def _messages_table(metadata: sa.MetaData) -> sa.Table:
    """Every allocation update judged (applied, or refused for its identifiers), by its LA
    and message id, with where it was first read: the same message read anywhere else (a
    resend) is not applied again. Rows of
    earlier releases have no position: their updates lie behind every snapshot, so any
    copy read now is a resend."""
    return sa.Table(
        "gateway_allocation_messages",
        metadata,
        sa.Column("local_authority", sa.String(64), primary_key=True),
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("topic", sa.String(300)),  # where it was first read (gateway 0004)
        sa.Column("partition", sa.Integer),
        sa.Column("offset", sa.BigInteger),
    )


@dataclass(frozen=True, slots=True)
class AllocationChange:
    """One update of an LA, as the keys each entry names, and the record it came from.

    ``allocations`` are the update's entries in order (the keys each names, its
    allocation), ``ended`` its closures (the keys each names); what they do depends on the
    LA's cases when applied (:func:`gateway.allocation_cases.settle`). ``source`` is
    (topic, partition, offset) of the update, or None for an update applied outside Kafka
    (a tool, a test).
    """

    la: str
    allocations: tuple[tuple[tuple[int, ...], Allocation], ...]
    ended: tuple[tuple[int, ...], ...]
    source: tuple[str, int, int] | None = None
    message_id: str | None = None

    def __len__(self) -> int:
        return len(self.allocations) + len(self.ended)


class AllocationDirectory:
    """In-memory allocation lookups, with a database snapshot to start from."""

    def __init__(
        self, engine: AsyncEngine, pseudonyms: Pseudonymiser, *, schema: str | None = None
    ) -> None:
        self._engine = engine
        self._metadata = metadata_for(engine, schema)
        self._table = _table(self._metadata)
        self._offsets = _offsets_table(self._metadata)
        self._messages = _messages_table(self._metadata)
        self._pseudonyms = pseudonyms
        self._index = AllocationIndex()

    def __len__(self) -> int:
        """Allocations held (a child open to two LAs by both identifiers counts four)."""
        return len(self._index)

    @property
    def pseudonyms(self) -> Pseudonymiser:
        return self._pseudonyms

    @property
    def index(self) -> AllocationIndex:
        return self._index

    async def load(self) -> dict[Position, int]:
        """Create the tables if needed, read the snapshot into memory, and return where in
        each allocation topic partition it stands (the next offset to read). The ids of
        the updates it holds stay in the database (:meth:`first_read`): they grow with
        history, the live allocations do not."""
        await create_tables(self._engine, self._metadata)
        index = AllocationIndex()
        with store_errors("load allocations"):
            async with self._engine.connect() as conn, conn.begin():  # one consistent read
                offsets = (await conn.execute(sa.select(self._offsets))).all()
                rows = await conn.stream(sa.select(self._table))
                async for r in rows:
                    row = r._mapping
                    case = row["case_id"]
                    anchor = None if case is None else from_db_key(case)
                    index.load(
                        row["local_authority"],
                        from_db_key(row["child_key"]),
                        _allocation(row),
                        anchor,
                    )
        self._index = index
        return {(str(t), int(p)): int(n) for t, p, n in offsets}

    async def first_read(
        self, updates: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[str, int, int] | None]:
        """Where each of ``updates`` (LA, message id) the snapshot holds was first read
        (topic, partition, offset; None for a row of an earlier release, which names
        none); updates it does not hold are left out. A primary-key look-up each."""
        wanted = sorted(set(updates))
        if not wanted:
            return {}
        m = self._messages.c
        found: dict[tuple[str, str], tuple[str, int, int] | None] = {}
        with store_errors("look up applied allocation updates"):
            async with self._engine.connect() as conn:
                for la in sorted({la for la, _ in wanted}):
                    ids = [mid for owner, mid in wanted if owner == la]
                    query = sa.select(m.message_id, m.topic, m.partition, m.offset).where(
                        m.local_authority == la, m.message_id.in_(ids)
                    )
                    for mid, topic, partition, offset in await conn.execute(query):
                        where = None if topic is None else (str(topic), int(partition), int(offset))
                        found[la, str(mid)] = where
        return found

    # --- lookups (memory) ------------------------------------------------------------

    def holders(self, nhs_key: bytes | None, upn_key: bytes | None) -> dict[str, Allocation]:
        """Every LA holding the child, with its allocation there, by the pseudonyms of its
        identifiers (:meth:`Pseudonymiser.identifier_keys`, already computed by the caller).

        An LA that has allocated the child by its NHS number is found by it; one that knew
        only the UPN by that. Where an LA holds both in one case they have one allocation;
        where it holds them in two (it never named them together), the NHS number's wins.
        Nothing a notification names links identifiers.
        """
        return self._index.holders(memory_keys(nhs_key, upn_key))

    def lookup(
        self, local_authority: str, nhs_key: bytes | None, upn_key: bytes | None
    ) -> Allocation | None:
        """The child's allocation in ``local_authority``, if that LA holds the child."""
        return self.holders(nhs_key, upn_key).get(local_authority)

    # --- changes -----------------------------------------------------------------------

    def change(
        self,
        update: Mapping[str, Any],
        source: tuple[str, int, int] | None = None,
        message_id: str | None = None,
    ) -> AllocationChange:
        """The keys one AllocationUpdate names (allocations, then ended), to be settled."""
        p = self._pseudonyms
        shared: dict[Allocation, Allocation] = {}  # one object per worker, not per entry
        allocations = tuple(
            (
                named_keys(p, entry["nhs_number"], entry["upn"]),
                shared.setdefault(allocation, allocation),
            )
            for entry in update["allocations"]
            for allocation in (_from_entry(entry),)
        )
        ended = tuple(
            named_keys(p, child["nhs_number"], child["upn"]) for child in update.get("ended") or ()
        )
        return AllocationChange(str(update["la_id"]), allocations, ended, source, message_id)

    def preview(self, change: AllocationChange) -> Settled:
        """What ``change`` would do to its LA's cases in memory now (nothing is changed)."""
        return settle(
            change.allocations, change.ended, functools.partial(self._index.case_of, change.la)
        )

    def apply_in_memory(self, change: AllocationChange) -> Settled:
        """Apply ``change`` to the in-memory directory; what it did (or why it was refused)."""
        settled = self.preview(change)
        self._index.apply(change.la, settled)
        return settled

    async def apply(self, update: Mapping[str, Any]) -> int:
        """Apply one AllocationUpdate to memory and the database at once (tools and tests;
        the gateway persists through :meth:`persist`); returns entries named (none if the
        update was refused)."""
        change = self.change(update)
        with store_errors("apply allocations"):
            async with write_transaction(self._engine) as conn:
                await self.persist(conn, [change])
        settled = self.apply_in_memory(change)
        return 0 if settled.refused is not None else len(change)

    async def persist(self, conn: AsyncConnection, changes: Iterable[AllocationChange]) -> None:
        """Write ``changes`` to the snapshot inside the caller's transaction, in order.

        A change read from a partition at an offset the snapshot already holds is skipped:
        a partition's new owner replaying records its predecessor persisted must not move
        the snapshot back.
        """
        stored = {(t, p): n for t, p, n in (await conn.execute(sa.select(self._offsets))).all()}
        for change in changes:
            if change.source is not None:
                topic, partition, offset = change.source
                if offset < stored.get((topic, partition), 0):
                    continue
                stored[topic, partition] = offset + 1
                await self._write_offset(conn, topic, partition, offset + 1)
            if change.message_id is not None:
                add = dialect_insert(self._engine)(self._messages).on_conflict_do_nothing()
                first = dict(
                    zip(("topic", "partition", "offset"), change.source or (), strict=False)
                )
                await conn.execute(
                    add, {"local_authority": change.la, "message_id": change.message_id, **first}
                )
            await self._write(conn, change)

    async def _write_offset(
        self, conn: AsyncConnection, topic: str, partition: int, next_offset: int
    ) -> None:
        stmt = dialect_insert(self._engine)(self._offsets).values(
            topic=topic, partition=partition, next_offset=next_offset
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["topic", "partition"],
                set_={"next_offset": stmt.excluded.next_offset},
            )
        )

    async def _write(self, conn: AsyncConnection, change: AllocationChange) -> None:
        """Settle ``change`` against the snapshot's cases as they stand (this update's
        offset: earlier ones are written, later ones not) and write what it does."""
        table, la = self._table, change.la
        named = [k for keys, _ in change.allocations for k in keys]
        named += [k for keys in change.ended for k in keys]
        before = await self._cases(conn, la, sorted({db_key(k) for k in named}))
        settled = settle(change.allocations, change.ended, before.get)
        if settled.refused is not None:
            return
        for start in range(0, len(settled.closed), _CHUNK):
            closed = [db_key(k) for k in settled.closed[start : start + _CHUNK]]
            await conn.execute(
                sa.delete(table).where(table.c.local_authority == la, table.c.child_key.in_(closed))
            )
        rows = [
            {"local_authority": la, "child_key": db_key(key), "case_id": case, **_row(allocation)}
            for keys, allocation in settled.cases
            for case in (case_id(keys),)
            for key in keys
        ]
        if rows:
            stmt = dialect_insert(self._engine)(table)
            update_cols = {c: stmt.excluded[c] for c in (*_row_columns(), "case_id")}
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["local_authority", "child_key"], set_=update_cols
                ),
                rows,
            )

    async def _cases(
        self, conn: AsyncConnection, la: str, named: Sequence[str]
    ) -> dict[int, tuple[int, ...]]:
        """``la``'s case of each of the ``named`` keys the snapshot holds, by every key of
        it: the named rows by primary key, then the rest of each case of several by
        (LA, case id)."""
        t = self._table
        found: dict[int, tuple[int, ...]] = {}
        ids: set[str] = set()
        for start in range(0, len(named), _CHUNK):
            chunk = named[start : start + _CHUNK]
            query = sa.select(t.c.child_key, t.c.case_id).where(
                t.c.local_authority == la, t.c.child_key.in_(chunk)
            )
            for key, case in await conn.execute(query):
                if case is None:
                    found[from_db_key(key)] = (from_db_key(key),)
                else:
                    ids.add(str(case))
        members: dict[str, list[int]] = {}
        wanted = sorted(ids)
        for start in range(0, len(wanted), _CHUNK):
            query = sa.select(t.c.child_key, t.c.case_id).where(
                t.c.local_authority == la, t.c.case_id.in_(wanted[start : start + _CHUNK])
            )
            for key, case in await conn.execute(query):
                members.setdefault(str(case), []).append(from_db_key(key))
        for keys in members.values():
            case_keys = tuple(keys)
            found.update(dict.fromkeys(case_keys, case_keys))
        return found

    async def open_case_keys(self, local_authorities: Iterable[str]) -> list[bytes]:
        """Every child pseudonym any of ``local_authorities`` has open, as persisted: the
        union, de-duplicated and sorted (it does not say which LA holds which child).

        Read from the database, not memory: the list sent to schools is what the
        snapshot holds once the update is committed. Both pseudonyms of a child (of the
        NHS number and of the UPN) are listed, so a school can match a pupil by either.
        """
        table = self._table
        las = sorted(set(local_authorities))
        query = sa.select(table.c.child_key).where(table.c.local_authority.in_(las)).distinct()
        with store_errors("read open cases"):
            async with self._engine.connect() as conn:
                keys = (await conn.scalars(query)).all()
        return sorted({bytes.fromhex(key[1:]) for key in keys})


def _row_columns() -> tuple[str, ...]:
    return ("worker_id", "worker_name", "team", "supervisor_id", "supervisor_name")


def _from_entry(entry: Mapping[str, Any]) -> Allocation:
    return Allocation(
        worker_id=entry["worker"]["id"],
        worker_name=entry["worker"]["name"],
        team=entry["team"],
        supervisor_id=entry["supervisor"]["id"],
        supervisor_name=entry["supervisor"]["name"],
    )


def _row(allocation: Allocation) -> dict[str, str]:
    return {c: getattr(allocation, c) for c in _row_columns()}


def _allocation(row: Mapping[str, Any] | sa.RowMapping) -> Allocation:
    return Allocation(**{c: str(row[c]) for c in _row_columns()})
