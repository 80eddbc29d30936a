"""The inbox's tables on SQLite and PostgreSQL: accounts, clients, the read audit, shares."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from consumers.inbox.access import Principal
from consumers.inbox.store import InboxStore
from sgx.errors import ConfigError, NotFound
from tests.conftest_db import BACKENDS, backend


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[InboxStore]:
    async with (
        backend(request.param, tmp_path) as db,
        await InboxStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="la-test") as opened,
    ):
        yield opened


async def test_accounts_and_clients(store: InboxStore) -> None:
    await store.add_account(
        "amara",
        "correct horse battery",
        worker_id="sw-amara",
        name="Amara",
        role="supervisor",
        team="Team 1",
    )
    account = await store.check_password("amara", "correct horse battery")
    assert account is not None
    assert (account.worker_id, account.role, account.team) == ("sw-amara", "supervisor", "Team 1")
    await store.add_account(  # replacing it changes the password
        "amara",
        "another long password",
        worker_id="sw-amara",
        name="Amara",
        role="supervisor",
        team="Team 1",
        replace=True,
    )
    assert await store.check_password("amara", "correct horse battery") is None
    token = await store.add_client("mosaic", ["deliveries:read", "queue:mash"])
    found = await store.client_for("la-north", token)
    assert found is not None
    assert (found.subject, found.kind, found.la) == ("mosaic", "system", "la-north")
    with pytest.raises(ConfigError, match="exists already"):
        await store.add_client("mosaic", ["queue:all"])  # never silently overwritten
    assert await store.client_for("la-north", token) is not None
    second = await store.add_client("mosaic", ["deliveries:read"], replace=True)  # rotates
    assert await store.client_for("la-north", token) is None
    assert await store.client_for("la-north", second) is not None
    assert await store.revoke_client("mosaic")
    assert await store.client_for("la-north", second) is None, "revoked: refused at once"
    assert not await store.revoke_client("mosaic")


async def test_an_api_token_expires(store: InboxStore) -> None:
    token = await store.add_client("mosaic", ["deliveries:read", "queue:mash"], days=1)
    assert await store.client_for("la-north", token) is not None
    async with store.engine.begin() as conn:
        await conn.execute(
            store._clients.update().values(
                expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            )
        )
    assert await store.client_for("la-north", token) is None


async def test_reads_are_audited_and_shares_recorded_with_their_answer(store: InboxStore) -> None:
    who = Principal("la-north", "sw-anna", "person", "Anna", "social_worker", "east")
    await store.record_reads(who, "opened", [(7, "n-7")])
    await store.record_reads(who, "listed", [(7, "n-7"), (8, "n-8")])
    reads = await store.reads(7)
    assert [(r["reader"], r["reader_kind"], r["action"]) for r in reads] == [
        ("sw-anna", "person", "opened"),
        ("sw-anna", "person", "listed"),
    ]
    share_id = await store.share_asked(
        request_id="r-1",
        item_id=7,
        notification_id="n-7",
        requested_by="sw-anna",
        to_id="parents",
        to_category="PARENT_OR_CARER",
        to_name="parents",
        purpose="meeting",
    )
    pending = await store.share(share_id)
    assert (pending.allowed, pending.broken, pending.reason) == (None, (), None)
    decided_at = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)
    await store.share_decided(
        "r-1",
        {"allowed": False, "broken": ["NOT_TO_PARENTS"], "reason": "no", "decided_at": decided_at},
    )
    (decided,) = await store.shares(["n-7", "n-unknown"])
    assert (decided.allowed, decided.broken, decided.decided_at) == (
        False,
        ("NOT_TO_PARENTS",),
        decided_at,
    )
    assert await store.shares([]) == []
    with pytest.raises(NotFound):
        await store.share(share_id + 100)


def _outcome(request_id: str, state: str, **fields: object) -> dict[str, object]:
    return {
        "request_id": request_id,
        "state": state,
        "author": "school-hillside",
        "answered_by": None,
        "court_order": None,
        "still_blocked": [],
        "reason": f"{state.lower()} because",
        "decided_at": dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC),
        **fields,
    }


async def test_a_consent_request_moves_forward_only(store: InboxStore) -> None:
    consents = store.consents

    async def ask(request_id: str, category: str, purpose: str) -> int:
        return await consents.asked(
            request_id=request_id, share_id=3, item_id=7, notification_id="n-7",
            category=category, purpose=purpose, requested_by="sw-anna",
        )  # fmt: skip

    first = await ask("r-1", "PARENT_OR_CARER", "conference")
    assert await ask("r-1", "PARENT_OR_CARER", "conference") == first  # a retry: the same row
    recorded = await consents.get(first)
    assert (recorded.state, recorded.waiting, recorded.lifts) == (None, True, False)

    assert await consents.heard(_outcome("r-1", "ASKED"))
    assert await consents.heard(_outcome("r-1", "GRANTED", answered_by="Ms Head"))
    assert not await consents.heard(_outcome("r-1", "ASKED"))  # read late, another partition
    assert not await consents.heard(_outcome("r-1", "REFUSED", answered_by="Someone else"))
    granted = await consents.get(first)
    assert (granted.state, granted.answered_by, granted.author) == (
        "GRANTED", "Ms Head", "school-hillside",
    )  # fmt: skip
    assert (granted.waiting, granted.lifts) == (False, True)

    police = await ask("r-2", "OTHER_PROFESSIONAL", "planning")
    await consents.heard(
        _outcome("r-2", "GRANTED", still_blocked=["POLICE_CONFIDENTIAL_TO_PROCEEDINGS"])
    )
    barred = await consents.get(police)
    assert barred.still_blocked == ("POLICE_CONFIDENTIAL_TO_PROCEEDINGS",)
    assert (barred.waiting, barred.lifts) == (False, False)
    assert [c.consent_id for c in await consents.of(["n-7", "n-8"])] == [first, police]
    assert await consents.of(["n-8"]) == []
    with pytest.raises(NotFound):
        await consents.get(police + 100)
