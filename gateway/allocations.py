"""The allocation directory: which LAs hold each child, and with which worker there.

Local authorities publish allocation updates to their own allocation topic; every gateway
instance reads every allocation topic (:mod:`gateway.allocation_feed`) into this
directory in memory, so whichever instance judges a notification sees every LA's
allocations. A child may be open to several LAs at once (a transfer between authorities,
a looked-after child placed out of area), so a lookup returns every LA holding the child.
An LA changes only its own rows (the caller checks that an update is the sender's own).

**The snapshot.** The database holds the directory as of a position in each allocation
topic (``gateway_allocations`` and ``gateway_allocation_offsets``), written by the
gateway instance that owns the allocation topic's partition in the gateway group, in
the same transaction as its audit records (:meth:`persist`). A starting instance loads
the snapshot and its positions in one read and reads each topic on from there, so a
restart neither replays years of updates nor forgets one.

**Memory.** Children are keyed by pseudonym (HMAC of the NHS number, and separately of
the UPN), so neither memory nor the database holds a child identifier in the clear. In
memory each pseudonym (as an ``int``: 48 bytes against 65 for ``bytes`` and 82 for the
hex ``str``) maps to a tuple of (LA, allocation) pairs, and equal allocations and pairs
are shared between the children of one worker: about 120 bytes per pseudonym, measured in
``benchmarks/national.py``. The two pseudonyms are domain-separated HMACs, so they share
one key space.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sgx.keys.pseudonym import Pseudonymiser
from sgx.store.db import (
    create_tables,
    dialect_insert,
    metadata_for,
    store_errors,
    write_transaction,
)

Position = tuple[str, int]  # (allocation topic, partition)
_Held = tuple[tuple[str, "Allocation"], ...]


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
    """Every allocation update applied, by its LA and message id, with where it was first
    read: the same message read anywhere else (a resend) is not applied again. Rows of
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
class Allocation:
    worker_id: str
    worker_name: str
    team: str
    supervisor_id: str
    supervisor_name: str


@dataclass(frozen=True, slots=True)
class AllocationChange:
    """What one applied update changes in its LA's rows, and the record it came from.

    ``upserts`` and ``ended`` are keyed as the database keys children ("n" or "u" and the
    hex pseudonym); ``source`` is (topic, partition, offset) of the update, or None for
    an update applied outside Kafka (a tool, a test).
    """

    la: str
    upserts: tuple[tuple[str, Allocation], ...]
    ended: tuple[str, ...]
    source: tuple[str, int, int] | None = None
    message_id: str | None = None

    def __len__(self) -> int:
        return len(self.upserts) + len(self.ended)


def _keys(pseudonyms: Pseudonymiser, nhs_number: str | None, upn: str | None) -> list[str]:
    """The child's directory keys: "n" or "u" and the hex pseudonym of each identifier."""
    return _tagged(*pseudonyms.identifier_keys(nhs_number, upn))


def _tagged(nhs_key: bytes | None, upn_key: bytes | None) -> list[str]:
    return [tag + key.hex() for tag, key in (("n", nhs_key), ("u", upn_key)) if key is not None]


def _memory_key(db_key: str) -> int:
    return int(db_key[1:], 16)


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
        self._by_key: dict[int, _Held] = {}  # pseudonym -> ((LA, allocation), ...)
        self._shared: dict[tuple[str, Allocation], _Held] = {}  # one tuple per LA and worker
        self._entries = 0

    def __len__(self) -> int:
        """Allocations held (a child open to two LAs by both identifiers counts four)."""
        return self._entries

    @property
    def pseudonyms(self) -> Pseudonymiser:
        return self._pseudonyms

    async def load(self) -> dict[Position, int]:
        """Create the tables if needed, read the snapshot into memory, and return where in
        each allocation topic partition it stands (the next offset to read). The ids of
        the updates it holds stay in the database (:meth:`first_read`): they grow with
        history, the live allocations do not."""
        await create_tables(self._engine, self._metadata)
        with store_errors("load allocations"):
            async with self._engine.connect() as conn, conn.begin():  # one consistent read
                offsets = (await conn.execute(sa.select(self._offsets))).all()
                rows = await conn.stream(sa.select(self._table))
                self._by_key, self._entries = {}, 0
                async for r in rows:
                    self._put(r[0], _memory_key(r[1]), _allocation(r._mapping))
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
        only the UPN by that. Where an LA holds both, the NHS number's entry wins.
        """
        found: dict[str, Allocation] = {}
        if upn_key is not None:
            found.update(self._by_key.get(int.from_bytes(upn_key), ()))
        if nhs_key is not None:
            found.update(self._by_key.get(int.from_bytes(nhs_key), ()))
        return found

    def lookup(
        self, local_authority: str, nhs_key: bytes | None, upn_key: bytes | None
    ) -> Allocation | None:
        """The child's allocation in ``local_authority``, if that LA holds the child."""
        return self.holders(nhs_key, upn_key).get(local_authority)

    def holds(self, local_authority: str, nhs_number: str | None, upn: str | None) -> bool:
        """Whether ``local_authority`` has this child open (by either identifier)."""
        return any(
            la == local_authority
            for key in _keys(self._pseudonyms, nhs_number, upn)
            for la, _ in self._by_key.get(_memory_key(key), ())
        )

    # --- changes -----------------------------------------------------------------------

    def change(
        self,
        update: Mapping[str, Any],
        source: tuple[str, int, int] | None = None,
        message_id: str | None = None,
    ) -> AllocationChange:
        """The change one AllocationUpdate makes (new or changed, then ended)."""
        upserts = tuple(
            (key, _from_entry(entry))
            for entry in update["allocations"]
            for key in _keys(self._pseudonyms, entry["nhs_number"], entry["upn"])
        )
        closed = tuple(
            key
            for child in update.get("ended") or ()
            for key in _keys(self._pseudonyms, child["nhs_number"], child["upn"])
        )
        return AllocationChange(str(update["la_id"]), upserts, closed, source, message_id)

    def apply_in_memory(self, change: AllocationChange) -> None:
        """Apply ``change`` to the in-memory directory (new or changed, then ended)."""
        for key, allocation in change.upserts:
            self._put(change.la, _memory_key(key), allocation)
        for key in change.ended:
            self._drop(change.la, _memory_key(key))

    def _put(self, la: str, key: int, allocation: Allocation) -> None:
        pair = (la, allocation)
        single = self._shared.get(pair)
        if single is None:
            single = self._shared[pair] = (pair,)
        held = self._by_key.get(key)
        if held is None:
            self._by_key[key] = single
            self._entries += 1
            return
        others = tuple(p for p in held if p[0] != la)
        self._entries += len(others) + 1 - len(held)
        self._by_key[key] = others + single if others else single

    def _drop(self, la: str, key: int) -> None:
        held = self._by_key.get(key)
        if held is None:
            return
        others = tuple(p for p in held if p[0] != la)
        self._entries -= len(held) - len(others)
        if others:
            self._by_key[key] = others
        else:
            del self._by_key[key]

    async def apply(self, update: Mapping[str, Any]) -> int:
        """Apply one AllocationUpdate to memory and the database at once (tools and tests;
        the gateway persists through :meth:`persist`); returns entries changed."""
        change = self.change(update)
        with store_errors("apply allocations"):
            async with write_transaction(self._engine) as conn:
                await self.persist(conn, [change])
        self.apply_in_memory(change)
        return len(change)

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
        table, la = self._table, change.la
        if change.upserts:
            stmt = dialect_insert(self._engine)(table)
            update_cols = {c: stmt.excluded[c] for c in _row_columns()}
            rows = [
                {"local_authority": la, "child_key": key, **_row(allocation)}
                for key, allocation in change.upserts
            ]
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["local_authority", "child_key"], set_=update_cols
                ),
                rows,
            )
        if change.ended:
            ended = list(change.ended)
            await conn.execute(
                sa.delete(table).where(table.c.local_authority == la, table.c.child_key.in_(ended))
            )

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
