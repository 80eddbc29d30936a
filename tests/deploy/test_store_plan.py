"""One PostgreSQL store per party (deploy/store_plan.py): the committed script is the
plan's, its names are the ones the services use, and applied to a real PostgreSQL by the
same script operators run, each party's role reaches its own store and nothing else.

The test cluster trusts connections from 127.0.0.1 (scripts/ensure-postgres.sh), so a
wrong password is not what is tested here: the rights of each role are.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from consumers.inbox.store import InboxStore
from consumers.queue import QueueStore
from deploy import acl_plan, store_plan
from deploy.acl_plan import load_parties
from gateway.store import GatewayStore
from producers.outbox import OutboxStore
from safeguard.runtime import GATEWAY_ID
from sgx.errors import StoreError
from tests.conftest_db import PG_DSN

SCRIPT = store_plan.SCRIPT_FILE


def test_the_committed_script_is_the_plans() -> None:
    assert store_plan.main(["check"]) == 0, "run python -m deploy.store_plan write"


def test_every_party_and_the_gateway_has_a_store_named_as_the_services_name_it() -> None:
    parties = load_parties(acl_plan.PARTIES_FILE)
    stores = dict(store_plan.plan(parties))
    assert set(stores) == {GATEWAY_ID, *(p.id for p in parties)}
    # the names deployed databases hold: a change here orphans every existing store
    assert (stores[GATEWAY_ID], stores["la-camden"]) == ("sgx_gateway", "sgx_la_camden")
    assert len(set(stores.values())) == len(stores), "one store each"


def _role_dsn(database: str, role: str) -> str:
    return (
        make_url(PG_DSN)
        .set(username=role, password="pw-" + role, database=database)
        .render_as_string(hide_password=False)
    )


@pytest.fixture
async def planned(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database with the plan applied by create-stores.sh; dropped afterwards."""
    database = f"sgx_plan_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(PG_DSN, isolation_level="AUTOCOMMIT")
    url = make_url(PG_DSN)
    libpq = f"postgresql://{url.username}@{url.host}:{url.port or 5432}/{database}"
    secrets = tmp_path / "postgres"
    secrets.mkdir()
    for _, role in store_plan.plan(load_parties(acl_plan.PARTIES_FILE)):
        (secrets / f"{role}.password").write_text("pw-" + role, encoding="utf-8")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{database}"'))
        env = {**os.environ, "ADMIN_DSN": libpq, "PG_SECRETS": str(secrets)}
        for _ in range(2):  # idempotent: a second run changes nothing and fails nowhere
            done = await asyncio.to_thread(
                subprocess.run, [str(SCRIPT)], env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
        yield database
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        await admin.dispose()


@pytest.mark.postgres
async def test_each_role_opens_its_own_store_and_reaches_no_other(
    planned: str, tmp_path: Path
) -> None:
    unused = tmp_path / "unused.db"

    def where(role: str) -> str:
        return _role_dsn(planned, role)

    async with await GatewayStore.open(
        where("sgx_gateway"), unused, owner=GATEWAY_ID, schema="sgx_gateway"
    ):
        pass
    async with await QueueStore.open(
        where("sgx_la_islington"), unused, owner="la-islington", schema="sgx_la_islington"
    ):
        pass
    async with (
        await QueueStore.open(
            where("sgx_la_camden"), unused, owner="la-camden", schema="sgx_la_camden"
        ) as queue,
        await InboxStore.open(
            where("sgx_la_camden"), unused, owner="la-camden", schema="sgx_la_camden"
        ),
    ):
        assert queue.owner == "la-camden"
    async with await OutboxStore.open(
        where("sgx_school_hillside"), unused, owner="school-hillside", schema="sgx_school_hillside"
    ):
        pass

    # Camden's credentials: not Islington's queue, not the gateway's audit, no new schema
    for schema, owner in (("sgx_la_islington", "la-camden"), ("sgx_gateway", "la-camden")):
        with pytest.raises(StoreError, match="permission denied"):
            await InboxStore.open(where("sgx_la_camden"), unused, owner=owner, schema=schema)
    camden = create_async_engine(where("sgx_la_camden"))
    school = create_async_engine(where("sgx_school_hillside"))
    try:
        for engine, statement in (
            (camden, "SELECT count(*) FROM sgx_la_islington.queue_item"),
            (camden, "SELECT count(*) FROM sgx_gateway.audit_record"),
            (camden, "CREATE SCHEMA sgx_mine"),
            (camden, "CREATE TABLE public.smuggled (x int)"),
            # the push pod holds the school's credentials: no LA's queue, accounts or clients
            (school, "SELECT count(*) FROM sgx_la_camden.queue_item"),
            (school, "SELECT count(*) FROM sgx_la_camden.inbox_client"),
            (school, "INSERT INTO sgx_la_camden.inbox_client (name) VALUES ('mallory')"),
        ):
            async with engine.connect() as conn:
                with pytest.raises(DBAPIError, match="permission denied"):
                    await conn.execute(text(statement))
    finally:
        await camden.dispose()
        await school.dispose()
