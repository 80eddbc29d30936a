"""consumers.inbox.sessions: a session is the server's, on SQLite and on PostgreSQL; it
ends at sign-out, when idle or aged, when revoked, and when its account changes; only the
token's digest is kept; accounts are never overwritten by an add."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, text

from consumers.inbox.sessions import Session, Sessions
from consumers.inbox.store import InboxStore
from sgx.errors import ConfigError
from tests.clock import Clock
from tests.conftest_db import BACKENDS, Backend, backend

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
AMARA = Session("sw-amara", "amara", "Amara Osei", "social_worker", "T1", "local")
SSO = Session("sw-ben", None, "Ben Ward", "social_worker", "T1", "oidc")
PASSWORD = "correct horse battery"


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as made:
        yield made


@pytest.fixture
async def store(db: Backend) -> AsyncIterator[InboxStore]:
    opened = await InboxStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="la-test")
    try:
        yield opened
    finally:
        await opened.close()


def sessions_of(store: InboxStore, clock: Clock) -> Sessions:
    return Sessions(
        store.engine,
        MetaData(schema=store.schema),
        idle=timedelta(minutes=30),
        absolute=timedelta(hours=8),
        clock=clock,
    )


async def test_a_session_lives_while_used_and_ends_idle_or_aged(store: InboxStore) -> None:
    clock = Clock(START)
    sessions = sessions_of(store, clock)
    token = await sessions.begin(AMARA)
    for _ in range(20):  # used every 25 minutes: alive, until 8 hours have passed
        clock.now += timedelta(minutes=25)
        found = await sessions.find(token)
        if clock.now - START > timedelta(hours=8):
            assert found is None
            break
        assert found == AMARA
    else:
        raise AssertionError("the absolute lifetime never ended the session")
    idle = await sessions.begin(SSO)
    clock.now += timedelta(minutes=31)
    assert await sessions.find(idle) is None
    clock.now -= timedelta(minutes=31)
    assert await sessions.find(idle) is None, "an ended session stays ended"


async def test_sign_out_and_revocation_end_sessions_for_every_copy_of_the_cookie(
    store: InboxStore,
) -> None:
    clock = Clock(START)
    sessions = sessions_of(store, clock)
    one, two, sso = [await sessions.begin(s) for s in (AMARA, AMARA, SSO)]
    await sessions.end(one)
    assert await sessions.find(one) is None
    assert await sessions.find(two) == AMARA
    assert await sessions.end_account("amara", "revoked") == 1
    assert await sessions.find(two) is None
    assert await sessions.end_worker("sw-ben", "revoked") == 1
    assert await sessions.find(sso) is None
    assert await sessions.find("a token never issued") is None


async def test_only_the_tokens_digest_is_stored(store: InboxStore, db: Backend) -> None:
    token = await sessions_of(store, Clock(START)).begin(AMARA)
    async with store.engine.connect() as conn:
        stored = (await conn.execute(text(f"SELECT * FROM {db.table('inbox_session')}"))).all()
    assert token not in str(stored)


async def test_an_account_is_never_overwritten_by_an_add(store: InboxStore) -> None:
    await store.add_account(
        "amara", PASSWORD, worker_id="sw-amara", name="Amara", role="social_worker", team="T1"
    )
    with pytest.raises(ConfigError, match="exists already"):
        await store.add_account(
            "amara", PASSWORD, worker_id="sw-evil", name="Evil", role="mash_duty", team=None
        )
    kept = await store.account("amara")
    assert kept is not None
    assert kept.worker_id == "sw-amara"
    token = await store.sessions.begin(AMARA)
    await store.add_account(
        "amara", PASSWORD, worker_id="sw-amara", name="A", role="supervisor", team="T1",
        replace=True,
    )  # fmt: skip
    assert await store.sessions.find(token) is None, "a changed account's sessions end"
    assert await store.disable_account("amara")
    assert await store.check_password("amara", PASSWORD) is None, "disabled: no sign-in"
