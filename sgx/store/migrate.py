"""Versioned schemas for every store: Alembic migrations, applied by ``safeguard db
upgrade`` and checked whenever a store opens.

Each kind of database has its own history under ``sgx/store/migrations/<kind>/versions`` and its
own version table ``sgx_schema_<kind>`` (several kinds may share one PostgreSQL schema):
``gateway`` (gateway.db), ``requests`` (disclosure-requests.db), ``queue``
(queue-<party>.db, with the inbox), ``outbox`` (outbox-<agency>.db), ``open_cases`` and
``attendance`` (a school feed's). Revision ``<kind>_0001`` is the schema of release 0.1,
the last before versioned migrations.

When a store opens (:func:`ensure`):

* an empty database is brought to the newest revision (the embedded default just works);
* a database at the newest revision opens;
* a database at an older revision, or one written by release 0.1 (its tables, no version
  table), is refused: ``ConfigError`` saying to run ``safeguard db upgrade``;
* a database at a revision this release does not know (a newer release's) is refused too.

:func:`upgrade` stamps a release-0.1 database as ``<kind>_0001`` (after checking it holds
exactly that release's tables) and applies every later migration, in one transaction
(PostgreSQL's DDL is transactional; SQLite's write lock is held throughout, so a second
process waits rather than migrating twice; on PostgreSQL an advisory lock does the same).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from sgx.errors import ConfigError
from sgx.store.db import ensure_schema, store_errors, write_transaction

MIGRATIONS = Path(__file__).parent / "migrations"
# The tables each kind of database had in release 0.1, before versioned migrations.
RELEASE_0_1_TABLES: dict[str, frozenset[str]] = {
    "gateway": frozenset(
        {
            "audit_chain",
            "audit_checkpoint",
            "audit_record",
            "gateway_allocation_messages",
            "gateway_allocation_offsets",
            "gateway_allocations",
            "gateway_quarantine",
            "judged_message",
            "share_ledger",
        }
    ),
    "requests": frozenset({"disclosure_request"}),
    "queue": frozenset({"consumer_quarantine", "queue_item"}),
    "outbox": frozenset({"outbox_entry", "outbox_receipt_quarantine"}),
    "open_cases": frozenset({"school_open_case_lists", "school_open_cases"}),
    "attendance": frozenset({"school_attendance_pushed"}),
}
KINDS = tuple(RELEASE_0_1_TABLES)
_LOCK = 0x7367_786D_6967_7261  # PostgreSQL advisory lock of migrations ("sgxmigra")
# Alembic's environment is process-global (``alembic.context``), so two stores opening at
# once in one process (the demo runs a gateway and two consumers) must take turns.
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _turn() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _turns.get(loop)
    if lock is None:
        lock = _turns[loop] = asyncio.Lock()
    return lock


_checked: weakref.WeakKeyDictionary[Any, set[tuple[str, str | None]]] = weakref.WeakKeyDictionary()


def version_table(kind: str) -> str:
    return f"sgx_schema_{kind}"


def _config(kind: str, connection: Connection | None = None, schema: str | None = None) -> Config:
    if kind not in RELEASE_0_1_TABLES:
        raise ConfigError(f"no migrations for a {kind!r} database (known: {', '.join(KINDS)})")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS / kind))
    config.attributes.update(connection=connection, kind=kind, schema=schema)
    return config


@functools.cache
def head(kind: str) -> str:
    """The newest revision of ``kind`` this release knows."""
    found = ScriptDirectory.from_config(_config(kind)).get_current_head()
    assert found is not None, kind
    return found


def _known(kind: str) -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(_config(kind)).walk_revisions()}


def _state(conn: Connection, kind: str, schema: str | None) -> tuple[str | None, set[str]]:
    """(the database's revision of ``kind`` or None, the names of its tables)."""
    context = MigrationContext.configure(
        conn, opts={"version_table": version_table(kind), "version_table_schema": schema}
    )
    return context.get_current_revision(), set(inspect(conn).get_table_names(schema=schema))


def run_migrations() -> None:
    """The body of every history's ``env.py``: run on the connection it is handed."""
    from alembic import context

    config = context.config
    conn: Connection = config.attributes["connection"]
    schema = config.attributes["schema"]
    if schema is not None and conn.dialect.name == "postgresql":
        conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
    context.configure(
        connection=conn,
        version_table=version_table(config.attributes["kind"]),
        version_table_schema=schema,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _where(kind: str, schema: str | None) -> str:
    return f"the {kind} database" + (f" (PostgreSQL schema {schema})" if schema else "")


def _upgrade_sync(
    conn: Connection, kind: str, schema: str | None, *, only_empty: bool
) -> str | None:
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK})"))
        ensure_schema(conn, schema)
    current, tables = _state(conn, kind, schema)
    config = _config(kind, conn, schema)
    if current is None:
        if tables & RELEASE_0_1_TABLES[kind]:
            if only_empty:
                raise ConfigError(
                    f"{_where(kind, schema)} was written by release 0.1, before versioned "
                    "schemas: run `safeguard db upgrade` (back it up first)"
                )
            missing = RELEASE_0_1_TABLES[kind] - tables
            if missing:
                raise ConfigError(
                    f"{_where(kind, schema)} has some of release 0.1's tables but not "
                    f"{', '.join(sorted(missing))}: it is not one this release can upgrade"
                )
            command.stamp(config, f"{kind}_0001")
    elif current not in _known(kind):
        raise ConfigError(
            f"{_where(kind, schema)} is at revision {current}, which this release does not "
            f"know (it knows up to {head(kind)}): it was written by a newer release; run that"
        )
    elif current != head(kind) and only_empty:
        raise ConfigError(
            f"{_where(kind, schema)} is at revision {current}, older than this release's "
            f"{head(kind)}: run `safeguard db upgrade` (back it up first)"
        )
    if current != head(kind):
        command.upgrade(config, "head")
    return current


async def ensure(engine: AsyncEngine, kind: str, schema: str | None = None) -> None:
    """Open-time check: create an empty database's tables at the newest revision, accept
    one at the newest revision, refuse any other (ConfigError saying what to do)."""
    done = _checked.setdefault(engine.sync_engine, set())
    if (kind, schema) in done:
        return
    async with _turn():
        if (kind, schema) in done:
            return
        with store_errors(f"check the schema of {_where(kind, schema)}"):
            async with write_transaction(engine) as conn:
                await conn.run_sync(_upgrade_sync, kind, schema, only_empty=True)
    done.add((kind, schema))


async def revision(engine: AsyncEngine, kind: str, schema: str | None = None) -> str | None:
    """The database's revision of ``kind`` (None: empty, or written by release 0.1)."""
    with store_errors(f"read the schema revision of {_where(kind, schema)}"):
        async with engine.connect() as conn:
            current, _ = await conn.run_sync(_state, kind, schema)
    return current


async def present(engine: AsyncEngine, kind: str, schema: str | None = None) -> bool:
    """Whether the database holds ``kind``'s tables (at any revision, release 0.1's too)."""
    with store_errors(f"look for {_where(kind, schema)}"):
        async with engine.connect() as conn:
            current, tables = await conn.run_sync(_state, kind, schema)
    return current is not None or bool(tables & RELEASE_0_1_TABLES[kind])


async def upgrade(
    engine: AsyncEngine, kind: str, schema: str | None = None
) -> tuple[str | None, str]:
    """Bring the database to this release's newest revision: (revision before, after)."""
    async with _turn():
        with store_errors(f"upgrade {_where(kind, schema)}"):
            async with write_transaction(engine) as conn:
                before = await conn.run_sync(_upgrade_sync, kind, schema, only_empty=False)
    _checked.pop(engine.sync_engine, None)
    return before, head(kind)


__all__ = ["KINDS", "ensure", "head", "present", "revision", "upgrade", "version_table"]
