"""``safeguard db upgrade | status``: the stores' versioned schemas (``sgx.store.migrate``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click

from safeguard.cli_common import async_command, home_option, runtime
from safeguard.runtime import GATEWAY_ID, Runtime
from sgx.store import migrate
from sgx.store.db import open_engine

# Which kind of database each SQLite file under a home is.
FILES = {
    "gateway.db": "gateway",
    "disclosure-requests.db": "requests",
    "queue-*.db": "queue",
    "outbox-*.db": "outbox",
    "open-cases-*.db": "open_cases",
    "attendance-*.db": "attendance",
}


def _databases(rt: Runtime) -> Iterator[tuple[str, str, Path | None, str | None]]:
    """(label, kind, SQLite path or None for PostgreSQL, schema) of every store of this
    home: on PostgreSQL the schema of each party's store (``SGX_STORE_PG_SCHEMA``, one per
    party with ``{party}``), with every kind of table it may hold."""
    if rt.dsn:
        owners = [GATEWAY_ID]
        if "{party}" in (rt.store.pg_schema or ""):
            owners += [p.id for p in rt.trust().parties() if p.kind != "gateway"]
        schemas = dict.fromkeys(rt.store_schema(owner) for owner in owners)
        for schema in schemas:
            for kind in migrate.KINDS:
                yield f"PostgreSQL {schema or 'public'} {kind}", kind, None, schema
        return
    for pattern, kind in FILES.items():
        for path in sorted(rt.exchange.home.glob(pattern)):
            yield path.name, kind, path, None


@click.group()
def db() -> None:
    """The stores' schemas: versioned migrations (Alembic)."""


@db.command("upgrade")
@home_option
@async_command
async def db_upgrade(home: Path | None) -> None:
    """Bring every store of the home (or the PostgreSQL schema) to this release's schema,
    rows intact; a database of a newer release is refused. Back the stores up first."""
    rt = runtime(home)
    count = 0
    for label, kind, path, schema in _databases(rt):
        engine = open_engine(rt.dsn, path or rt.sqlite(f"{kind}.db"))
        try:
            if path is None and not await migrate.present(engine, kind, schema):
                continue  # a kind this party's store does not keep: its service makes it
            before, after = await migrate.upgrade(engine, kind, schema)
        finally:
            await engine.dispose()
        was = before or "release 0.1 (unversioned)"
        click.echo(f"{label}: {'already at ' + after if before == after else was + ' -> ' + after}")
        count += 1
    click.echo(f"{count} database(s) at this release's schema")


@db.command("status")
@home_option
@async_command
async def db_status(home: Path | None) -> int:
    """Each store's schema revision against this release's; exit 1 if any needs upgrading."""
    rt = runtime(home)
    behind = 0
    for label, kind, path, schema in _databases(rt):
        engine = open_engine(rt.dsn, path or rt.sqlite(f"{kind}.db"))
        try:
            if path is None and not await migrate.present(engine, kind, schema):
                continue
            current = await migrate.revision(engine, kind, schema)
        finally:
            await engine.dispose()
        ok = current == migrate.head(kind)
        behind += not ok
        wanted = "" if ok else f" (this release: {migrate.head(kind)})"
        click.echo(f"{label}: {current or 'unversioned'}{wanted}")
    return 1 if behind else 0
