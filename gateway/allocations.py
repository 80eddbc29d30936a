"""The allocation directory: which LAs hold each child, and with which worker there.

Local authorities publish allocation updates through Kafka; the gateway applies them in
order and keeps them in its database so a restart does not forget them. A child may be
open to several LAs at once (a transfer between authorities, a looked-after child placed
out of area), so a lookup returns every LA holding the child. An LA changes only its own
rows (the caller checks that an update is the sender's own).

Children are keyed by pseudonym (HMAC of the NHS number, and separately of the UPN), so
neither memory nor the database holds a child identifier in the clear. In memory each
child key maps to the allocations held for it, by LA: one dictionary look-up per
identifier, however many LAs the exchange serves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sgx.db import create_tables, dialect_insert, metadata_for, store_errors, write_transaction
from sgx.pseudonym import Pseudonymiser


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


@dataclass(frozen=True, slots=True)
class Allocation:
    worker_id: str
    worker_name: str
    team: str
    supervisor_id: str
    supervisor_name: str


def _keys(pseudonyms: Pseudonymiser, nhs_number: str | None, upn: str | None) -> list[str]:
    """The child's directory keys: "n" or "u" and the hex pseudonym of each identifier."""
    return _tagged(*pseudonyms.identifier_keys(nhs_number, upn))


def _tagged(nhs_key: bytes | None, upn_key: bytes | None) -> list[str]:
    return [tag + key.hex() for tag, key in (("n", nhs_key), ("u", upn_key)) if key is not None]


class AllocationDirectory:
    """In-memory allocation lookups backed by the gateway's database."""

    def __init__(
        self, engine: AsyncEngine, pseudonyms: Pseudonymiser, *, schema: str | None = None
    ) -> None:
        self._engine = engine
        self._metadata = metadata_for(engine, schema)
        self._table = _table(self._metadata)
        self._pseudonyms = pseudonyms
        self._by_key: dict[str, dict[str, Allocation]] = {}  # child key -> LA -> allocation

    def __len__(self) -> int:
        """Allocations held (a child open to two LAs by both identifiers counts four)."""
        return sum(len(held) for held in self._by_key.values())

    async def load(self) -> None:
        """Create the table if needed and read every allocation into memory."""
        await create_tables(self._engine, self._metadata)
        with store_errors("load allocations"):
            async with self._engine.connect() as conn:
                rows = (await conn.execute(sa.select(self._table))).mappings().all()
        self._by_key = {}
        for r in rows:
            self._by_key.setdefault(r["child_key"], {})[r["local_authority"]] = _allocation(r)

    def holders(self, nhs_key: bytes | None, upn_key: bytes | None) -> dict[str, Allocation]:
        """Every LA holding the child, with its allocation there, by the pseudonyms of its
        identifiers (:meth:`Pseudonymiser.identifier_keys`, already computed by the caller).

        An LA that has allocated the child by its NHS number is found by it; one that knew
        only the UPN by that. Where an LA holds both, the NHS number's entry wins.
        """
        found: dict[str, Allocation] = {}
        if upn_key is not None:
            found.update(self._by_key.get("u" + upn_key.hex(), {}))
        if nhs_key is not None:
            found.update(self._by_key.get("n" + nhs_key.hex(), {}))
        return found

    def lookup(
        self, local_authority: str, nhs_key: bytes | None, upn_key: bytes | None
    ) -> Allocation | None:
        """The child's allocation in ``local_authority``, if that LA holds the child."""
        return self.holders(nhs_key, upn_key).get(local_authority)

    def holds(self, local_authority: str, nhs_number: str | None, upn: str | None) -> bool:
        """Whether ``local_authority`` has this child open (by either identifier)."""
        return any(
            local_authority in self._by_key.get(key, {})
            for key in _keys(self._pseudonyms, nhs_number, upn)
        )

    async def open_case_keys(self, local_authorities: Iterable[str]) -> list[bytes]:
        """Every child pseudonym any of ``local_authorities`` has open, as persisted: the
        union, de-duplicated and sorted (it does not say which LA holds which child).

        Read from the database, not memory: the list sent to schools is what a restarted
        gateway would also hold. Both pseudonyms of a child (of the NHS number and of the
        UPN) are listed, so a school can match a pupil by either.
        """
        table = self._table
        las = sorted(set(local_authorities))
        query = sa.select(table.c.child_key).where(table.c.local_authority.in_(las)).distinct()
        with store_errors("read open cases"):
            async with self._engine.connect() as conn:
                keys = (await conn.scalars(query)).all()
        return sorted({bytes.fromhex(key[1:]) for key in keys})

    async def apply(self, update: Mapping[str, Any]) -> int:
        """Apply one AllocationUpdate (new/changed, then ended); returns entries changed."""
        la = str(update["la_id"])
        upserts = [
            {"local_authority": la, "child_key": key, **_row(entry)}
            for entry in update["allocations"]
            for key in _keys(self._pseudonyms, entry["nhs_number"], entry["upn"])
        ]
        ended = [
            key
            for child in update.get("ended") or ()
            for key in _keys(self._pseudonyms, child["nhs_number"], child["upn"])
        ]
        await self._persist(la, upserts, ended)
        for row in upserts:
            self._by_key.setdefault(row["child_key"], {})[la] = _allocation(row)
        for key in ended:
            held = self._by_key.get(key)
            if held is not None and held.pop(la, None) is not None and not held:
                del self._by_key[key]
        return len(upserts) + len(ended)

    async def _persist(self, la: str, upserts: list[dict[str, str]], ended: list[str]) -> None:
        table = self._table
        with store_errors("apply allocations"):
            async with write_transaction(self._engine) as conn:
                await self._write(conn, table, la, upserts, ended)

    async def _write(
        self,
        conn: AsyncConnection,
        table: sa.Table,
        la: str,
        upserts: list[dict[str, str]],
        ended: list[str],
    ) -> None:
        if upserts:
            stmt = dialect_insert(self._engine)(table)
            update_cols = {c: stmt.excluded[c] for c in _row_columns()}
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["local_authority", "child_key"], set_=update_cols
                ),
                upserts,
            )
        if ended:
            await conn.execute(
                sa.delete(table).where(table.c.local_authority == la, table.c.child_key.in_(ended))
            )


def _row_columns() -> tuple[str, ...]:
    return ("worker_id", "worker_name", "team", "supervisor_id", "supervisor_name")


def _row(entry: Mapping[str, Any]) -> dict[str, str]:
    return {
        "worker_id": entry["worker"]["id"],
        "worker_name": entry["worker"]["name"],
        "team": entry["team"],
        "supervisor_id": entry["supervisor"]["id"],
        "supervisor_name": entry["supervisor"]["name"],
    }


def _allocation(row: Mapping[str, Any] | sa.RowMapping) -> Allocation:
    return Allocation(**{c: str(row[c]) for c in _row_columns()})
