"""One authority per store (issue 21, item 1): a store records its owner when first opened,
and a service of any other party is refused by name before it writes a row; on
PostgreSQL each party's store is a schema of its own (``SGX_STORE_PG_SCHEMA`` with
``{party}``). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr, ValidationError

from consumers.inbox.store import InboxStore
from consumers.queue import QueueStore
from gateway.store import GatewayStore
from safeguard.cli import main as safeguard
from safeguard.inbox_wiring import inbox_store
from safeguard.parties import DEMO_PARTIES, LA, OTHER_LA
from safeguard.runtime import Runtime
from sgx.keys.key_admin import init_trust
from sgx.settings import ExchangeSettings, StoreSettings
from sgx.store import migrate
from sgx.store.db import open_engine
from sgx.store.owner import StoreOwnedElsewhere, owner_of
from tests.conftest_db import BACKENDS, PG_DSN, Backend, backend, drop_schema

PASSWORD = "correct horse battery staple"


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


async def test_a_store_is_its_first_openers_and_refuses_any_other_party_by_name(
    db: Backend,
) -> None:
    async with await QueueStore.open(db.dsn, db.sqlite_path, owner=LA, schema=db.schema) as q:
        assert q.owner == LA
    # the same party's other tables (its inbox) share its store
    async with await InboxStore.open(db.dsn, db.sqlite_path, owner=LA, schema=db.schema):
        pass
    with pytest.raises(StoreOwnedElsewhere, match=f"belongs to {LA}, not {OTHER_LA}"):
        await InboxStore.open(db.dsn, db.sqlite_path, owner=OTHER_LA, schema=db.schema)
    with pytest.raises(StoreOwnedElsewhere, match=f"belongs to {LA}, not gateway"):
        await GatewayStore.open(db.dsn, db.sqlite_path, owner="gateway", schema=db.schema)
    engine = open_engine(db.dsn, db.sqlite_path)
    try:
        assert await owner_of(engine, db.schema) == LA
        assert not await migrate.present(engine, "gateway", db.schema), (
            "refused before it wrote a table"
        )
    finally:
        await engine.dispose()


def test_a_schema_per_party_from_one_setting() -> None:
    settings = StoreSettings(pg_schema="sgx_{party}")
    assert settings.schema_for(LA) == "sgx_la_camden"
    assert settings.schema_for("gateway") == "sgx_gateway"
    assert StoreSettings(pg_schema="sgx_one").schema_for(LA) == "sgx_one"
    assert StoreSettings(pg_schema="").schema_for(LA) is None
    for bad in ("Sgx", "sgx-{party}", "sgx_{la}", "x;drop", "1sgx"):
        with pytest.raises(ValidationError, match="PostgreSQL schema name"):
            StoreSettings(pg_schema=bad)


def _cli(home: Path, schema: str, *args: str) -> tuple[int, str]:
    env = {"SGX_STORE_DSN": PG_DSN, "SGX_STORE_PG_SCHEMA": schema}
    result = CliRunner().invoke(
        safeguard, [*args, "--home", str(home)], PASSWORD + "\n", env=env, catch_exceptions=False
    )
    return result.exit_code, result.output


@pytest.mark.postgres
async def test_an_account_made_for_one_la_never_signs_in_to_anothers_inbox(
    tmp_path: Path,
) -> None:
    """The review's attack: one PostgreSQL database as deploy/ shipped it, mallory added
    as Islington's MASH duty, then Camden's inbox. With one schema for both, Camden's
    inbox refuses to open Islington's store; with a schema per party, Islington's account
    is not in Camden's store at all."""
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    add = ["inbox", "user", "add", "mallory", "--la", OTHER_LA, "--worker-id", "mash-i"]
    add += ["--name", "Mallory", "--role", "mash_duty", "--password-stdin"]
    shared = f"sgx_shared_{uuid.uuid4().hex[:10]}"
    per_party = f"sgx_own_{uuid.uuid4().hex[:10]}_{{party}}"
    try:
        code, out = await asyncio.to_thread(_cli, tmp_path, shared, *add)
        assert code == 0, out
        code, out = await asyncio.to_thread(
            _cli, tmp_path, shared, "inbox", "sessions", "revoke", "--la", LA, "--all"
        )
        assert code != 0
        assert f"belongs to {OTHER_LA}, not {LA}" in out, out

        code, out = await asyncio.to_thread(_cli, tmp_path, per_party, *add)
        assert code == 0, out
        rt = Runtime(
            exchange=ExchangeSettings(home=tmp_path),
            store=StoreSettings(dsn=SecretStr(PG_DSN), pg_schema=per_party),
        )
        async with await inbox_store(rt, LA) as camden, await inbox_store(rt, OTHER_LA) as isl:
            assert camden.schema != isl.schema
            assert await isl.check_password("mallory", PASSWORD) is not None
            assert await camden.check_password("mallory", PASSWORD) is None
    finally:
        await drop_schema(PG_DSN, shared)
        await drop_schema(PG_DSN, per_party)


@pytest.mark.postgres
async def test_db_status_and_upgrade_read_each_partys_store_and_make_none(tmp_path: Path) -> None:
    init_trust(tmp_path / "trust", DEMO_PARTIES)
    per_party = f"sgx_up_{uuid.uuid4().hex[:10]}_{{party}}"
    rt = Runtime(
        exchange=ExchangeSettings(home=tmp_path),
        store=StoreSettings(dsn=SecretStr(PG_DSN), pg_schema=per_party),
    )
    try:
        async with await inbox_store(rt, LA) as camden:
            schema = camden.schema
        for command in ("status", "upgrade"):
            code, out = await asyncio.to_thread(_cli, tmp_path, per_party, "db", command)
            assert code == 0, out
            assert f"PostgreSQL {schema} queue: " in out, out
            assert len(out.strip().splitlines()) == 1 + (command == "upgrade"), (
                "only the store that exists; no other party's made"
            )
    finally:
        await drop_schema(PG_DSN, per_party)
