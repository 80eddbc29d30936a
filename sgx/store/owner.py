"""Whose a store is: every database (a SQLite file, or a PostgreSQL schema) belongs to one
party, recorded when it is first opened and checked every time after.

A local authority's queue holds its children's notifications, its staff's accounts, its
API clients, sessions, shares and consents; none of those tables names the LA, because
the store itself is the LA's. That is only true if no other party's service ever opens
it, so the first service to open a store writes its owner (``sgx_store_owner``: one row),
and any service of another party is refused, by name, before it reads a row. On
PostgreSQL each party's store is its own schema (``SGX_STORE_PG_SCHEMA``, e.g.
``sgx_{party}``) reached with its own role, which cannot read another's schema
(``deploy/store_plan.py``); this check is the second lock, for a setting that points two
parties at one schema.

The owner table is kept beside Alembic's version tables, outside the migration histories:
it says whose the database is, not what shape its tables have, and one row serves every
kind of table a party keeps there (the gateway's audit and requests; a school's outbox,
open cases and attendance).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.errors import ConfigError
from sgx.store.db import dialect_insert, ensure_schema, store_errors, write_transaction

TABLE = "sgx_store_owner"
_LOCK = 0x7367_786F_776E_6572  # PostgreSQL advisory lock of a first claim ("sgxowner")


class StoreOwnedElsewhere(ConfigError):
    """A service opened a store that another party owns."""

    def __init__(self, where: str, owner: str, opener: str) -> None:
        super().__init__(
            f"{where} belongs to {owner}, not {opener}: a party's services open only its "
            f"own store (point SGX_STORE_DSN / SGX_STORE_PG_SCHEMA at {opener}'s)"
        )
        self.owner = owner
        self.opener = opener


def owner_table(schema: str | None) -> sa.Table:
    return sa.Table(
        TABLE,
        sa.MetaData(schema=schema),
        sa.Column("one", sa.Integer, primary_key=True),  # always 1: a single row
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    )


def _where(engine: AsyncEngine, schema: str | None) -> str:
    if engine.dialect.name == "postgresql":
        return f"the PostgreSQL schema {schema or 'public'}"
    return f"the database {engine.url.database}"


async def claim(engine: AsyncEngine, schema: str | None, owner: str) -> None:
    """Record ``owner`` as the store's owner if it has none; refuse if it has another."""
    if not owner:
        raise ConfigError("a store must be opened for a named party")
    table = owner_table(schema)
    with store_errors(f"check whose {_where(engine, schema)} is"):
        async with write_transaction(engine) as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_LOCK})"))
                await conn.run_sync(ensure_schema, schema)
            await conn.run_sync(lambda sync: table.create(sync, checkfirst=True))
            found = await conn.scalar(sa.select(table.c.owner))
            if found is None:
                add = dialect_insert(engine)(table).on_conflict_do_nothing()
                await conn.execute(add, {"one": 1, "owner": owner, "claimed_at": datetime.now(UTC)})
                return
    if found != owner:
        raise StoreOwnedElsewhere(_where(engine, schema), str(found), owner)


async def owner_of(engine: AsyncEngine, schema: str | None) -> str | None:
    """The store's recorded owner (None: never opened by a service of this release)."""
    table = owner_table(schema)
    with store_errors(f"read whose {_where(engine, schema)} is"):
        async with engine.connect() as conn:
            exists = await conn.run_sync(
                lambda sync: sa.inspect(sync).has_table(TABLE, schema=schema)
            )
            return str(await conn.scalar(sa.select(table.c.owner))) if exists else None
