"""Versioned schemas (Alembic): each history builds exactly the tables the code defines,
on SQLite and PostgreSQL; a database written by release 0.1 is refused until `safeguard db
upgrade`, then opens with every row intact; older and newer revisions are refused by name."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from consumers.inbox.store import InboxStore
from consumers.queue import QueueEntry, QueueItem, QueueSelection, QueueStore
from gateway.store import GatewayStore
from producers.outbox import OutboxStore
from safeguard.cli import main
from safeguard.store_tables import tables_of
from sgx.errors import ConfigError
from sgx.store import migrate, owner
from sgx.store.db import metadata_for, open_engine
from tests.conftest_db import BACKENDS, Backend, backend

RELEASE_0_1 = Path(__file__).resolve().parents[1] / "fixtures" / "release-0.1"


def _ours(d: Any) -> bool:
    """The version tables: Alembic's, not the code's."""
    versions = {migrate.version_table(k) for k in migrate.KINDS} | {owner.TABLE}
    return isinstance(d, tuple) and d[0] == "remove_table" and d[1].name in versions


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


@pytest.mark.parametrize("kind", migrate.KINDS)
async def test_each_history_builds_exactly_the_tables_the_code_defines(
    db: Backend, kind: str
) -> None:
    engine = open_engine(db.dsn, db.sqlite_path)
    try:
        assert await migrate.upgrade(engine, kind, db.schema) == (None, migrate.head(kind))
        wanted = metadata_for(engine, db.schema)
        tables_of(kind, engine, wanted)

        def diff(conn: Connection) -> list[Any]:
            def ours_only(name: str | None, type_: str, _parents: Any) -> bool:
                # other schemas on the server (another test's, a killed run's) are not ours
                return type_ != "schema" or name == db.schema

            context = MigrationContext.configure(
                conn, opts={"include_schemas": bool(db.schema), "include_name": ours_only}
            )
            found = [d for d in compare_metadata(context, wanted) if not _ours(d)]

            # Under a PostgreSQL schema SQLAlchemy names an index after the schema too; the
            # migration's name is fixed. The same index under two names is no difference.
            def key(d: Any) -> tuple[str, tuple[str, ...]]:
                return d[1].table.name, tuple(c.name for c in d[1].columns)

            added = {key(d) for d in found if d[0] == "add_index"}
            removed = {key(d) for d in found if d[0] == "remove_index"}
            return [
                d
                for d in found
                if not (d[0] in ("add_index", "remove_index") and key(d) in added & removed)
            ]

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


def _release_0_1_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(RELEASE_0_1, home)
    return home


async def _refused(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"written by release 0\.1.*safeguard db upgrade"):
        await QueueStore.open(None, home / "queue-la-north.db", owner="la-test")
    with pytest.raises(ConfigError, match=r"written by release 0\.1"):
        await GatewayStore.open(None, home / "gateway.db", owner="gateway")


def test_release_0_1_databases_are_refused_then_upgraded_with_every_row(tmp_path: Path) -> None:
    """tests/fixtures/release-0.1/ holds a gateway and a queue database written by release
    0.1's own code: audit records, queue rows, an acknowledgement, quarantine."""
    home = _release_0_1_home(tmp_path)
    asyncio.run(_refused(home))
    result = CliRunner().invoke(main, ["db", "upgrade", "--home", str(home)])
    assert result.exit_code == 0, result.output
    queue = migrate.head("queue")
    assert f"queue-la-north.db: release 0.1 (unversioned) -> {queue}" in result.output
    gateway = migrate.head("gateway")
    assert f"gateway.db: release 0.1 (unversioned) -> {gateway}" in result.output
    asyncio.run(_rows_intact(home))
    status = CliRunner().invoke(main, ["db", "status", "--home", str(home)])
    assert status.exit_code == 0, status.output


async def _rows_intact(home: Path) -> None:
    async with await QueueStore.open(None, home / "queue-la-north.db", owner="la-test") as queue:
        items = await queue.select(QueueSelection(everything=True))
        assert len(items) == 4
        assert (items[0].status, items[0].acked_by) == ("acked", "sw-anna")
        assert [len(i.envelope) for i in items] == [702] * 4
        assert len(await queue.quarantine_list()) == 1
        await _queued_beside_old_rows(queue, items[0])
    async with await InboxStore.open(None, home / "queue-la-north.db", owner="la-test") as inbox:
        token = await inbox.add_client("cms", ["deliveries:read", "queue:all"])
        assert await inbox.client_for("la-north", token) is not None
    async with await GatewayStore.open(None, home / "gateway.db", owner="gateway") as gateway:
        chains = await gateway.verify_chains()
        assert sum(count for count, _ in chains.values()) == 5, "every audit record, still chained"
        assert len(await gateway.quarantine_list()) == 1


async def _queued_beside_old_rows(queue: QueueStore, old: QueueItem) -> None:
    """A delivery queued after the upgrade keeps its envelope once, for both addressees,
    beside the rows of 0.1 that hold their own; both read back whole."""
    entries = [
        QueueEntry(**{**_entry_fields(old), "notification_id": "n-new", "recipient_id": who,
                      "envelope": b"sealed" * 100, "delivery_id": "d-new"})
        for who in ("sw-new", "tm-new")
    ]  # fmt: skip
    assert await queue.store_batch(entries) == 2
    items = await queue.select(QueueSelection(everything=True))
    assert [len(i.envelope) for i in items] == [702] * 4 + [600] * 2
    assert [i.delivery_id for i in items] == [None] * 4 + ["d-new"] * 2
    async with queue.engine.connect() as conn:
        count = text("SELECT count(*) FROM queue_delivery")
        assert (await conn.execute(count)).scalar_one() == 1


def _entry_fields(item: QueueItem) -> dict[str, Any]:
    return {f.name: getattr(item, f.name) for f in dataclasses.fields(QueueEntry)}


async def test_an_older_or_a_newer_revision_is_refused_by_name(tmp_path: Path) -> None:
    from alembic import command

    path = tmp_path / "queue.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda c: command.upgrade(migrate._config("queue", c), "queue_0001")
            )
    finally:
        await engine.dispose()
    with pytest.raises(
        ConfigError,
        match=f"revision queue_0001, older than this release's {migrate.head('queue')}",
    ):
        await QueueStore.open(None, path, owner="la-test")
    engine = open_engine(None, path)
    try:
        assert await migrate.upgrade(engine, "queue") == ("queue_0001", migrate.head("queue"))
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE sgx_schema_queue SET version_num = 'queue_0099'"))
    finally:
        await engine.dispose()
    with pytest.raises(ConfigError, match="revision queue_0099, which this release does not know"):
        await QueueStore.open(None, path, owner="la-test")


@pytest.mark.postgres
async def test_a_release_0_1_schema_on_postgres_upgrades_with_its_rows(tmp_path: Path) -> None:
    """The same on PostgreSQL: release 0.1's tables (the 0001 migration is that schema)
    with rows and no version table, refused, upgraded, rows intact."""
    from alembic import command

    async with backend("postgres", tmp_path) as db:
        engine = open_engine(db.dsn, db.sqlite_path)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
                await conn.run_sync(
                    lambda c: command.upgrade(migrate._config("queue", c, db.schema), "queue_0001")
                )
                await conn.execute(text(f'DROP TABLE "{db.schema}".sgx_schema_queue'))
        finally:
            await engine.dispose()
        await db.execute(
            f'INSERT INTO {db.table("consumer_quarantine")} (topic, partition, "offset", item, '
            "reason, detail, raw, quarantined_at) VALUES ('t', 0, 1, 0, 'r', 'd', 'x', now())"
        )
        with pytest.raises(ConfigError, match=r"written by release 0\.1"):
            await QueueStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="la-test")
        engine = open_engine(db.dsn, db.sqlite_path)
        try:
            assert await migrate.upgrade(engine, "queue", db.schema) == (
                None,
                migrate.head("queue"),
            )
        finally:
            await engine.dispose()
        async with await QueueStore.open(
            db.dsn, db.sqlite_path, schema=db.schema, owner="la-test"
        ) as queue:
            assert len(await queue.quarantine_list()) == 1


async def test_stores_opening_at_once_in_one_process_each_get_their_tables(tmp_path: Path) -> None:
    """Alembic's environment is process-global: the demo opens a gateway and two consumers'
    stores at once, and each must still be migrated, not trip over another's."""
    opened = await asyncio.gather(
        GatewayStore.open(None, tmp_path / "gateway.db", owner="gateway"),
        QueueStore.open(None, tmp_path / "queue-a.db", owner="la-test"),
        QueueStore.open(None, tmp_path / "queue-b.db", owner="la-test"),
        OutboxStore.open(None, tmp_path / "outbox.db", owner="agency-test"),
    )
    for store in opened:
        await store.close()
