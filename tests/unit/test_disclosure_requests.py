"""Disclosure requests and their 14-day deadline, on SQLite and on a real PostgreSQL, and
the ``safeguard police requests`` table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect

from gateway.requests import (
    SQLITE_FILE,
    DisclosureRequests,
    days_remaining,
    deadline,
)
from safeguard.cli_police import police
from tests.conftest_db import BACKENDS, Backend, backend

MONDAY = datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
PSEUDONYM = "5f2b9c0e4d1a7e3b8c6d2f0a1b3c5d7e"


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


@pytest.fixture
async def store(db: Backend) -> AsyncIterator[DisclosureRequests]:
    async with await DisclosureRequests.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="gateway"
    ) as opened:
        yield opened


async def open_request(
    store: DisclosureRequests,
    reference: str,
    requested_at: datetime,
    *,
    la: str = "la-camden",
    protocol: str = "PROTOCOL_2024",
) -> bool:
    return await store.opened(reference, la, "met-police", protocol, requested_at, PSEUDONYM)


# --- the deadline ----------------------------------------------------------------------


def test_the_deadline_is_fourteen_calendar_days_later() -> None:
    assert deadline(MONDAY) == datetime(2025, 3, 17, 9, 30, tzinfo=UTC)
    # calendar days: weekends and bank holidays count (Good Friday and Easter Monday 2025)
    assert deadline(datetime(2025, 4, 10, 12, 0, tzinfo=UTC)) == datetime(
        2025, 4, 24, 12, 0, tzinfo=UTC
    )


def test_the_deadline_is_kept_in_utc_whatever_the_offset() -> None:
    local = datetime.fromisoformat("2025-06-02T10:00:00+01:00")
    assert deadline(local) == datetime(2025, 6, 16, 9, 0, tzinfo=UTC)
    assert deadline(local).tzinfo == UTC


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        deadline(datetime(2025, 3, 3, 9, 30))


@pytest.mark.parametrize(
    ("after", "left"),
    [
        (timedelta(0), 14),
        (timedelta(days=13, hours=23), 0),
        (timedelta(days=14), 0),
        (timedelta(days=14, milliseconds=1), -1),
        (timedelta(days=16), -2),
    ],
)
def test_days_remaining_counts_whole_days_down(after: timedelta, left: int) -> None:
    assert days_remaining(deadline(MONDAY), MONDAY + after) == left


# --- the store ---------------------------------------------------------------------------


async def test_opened_is_idempotent(store: DisclosureRequests) -> None:
    assert await open_request(store, "REQ-1", MONDAY) is True
    assert await open_request(store, "REQ-1", MONDAY) is False
    assert await open_request(store, "REQ-1", MONDAY + timedelta(days=3)) is False
    (only,) = await store.open_requests(MONDAY)
    assert only.request_reference == "REQ-1"
    assert only.requested_at == MONDAY  # the first one wins
    assert only.due_at == deadline(MONDAY)
    assert only.child_pseudonym == PSEUDONYM


async def test_answered_closes_the_request_and_the_first_answer_wins(
    store: DisclosureRequests,
) -> None:
    await open_request(store, "REQ-1", MONDAY)
    await open_request(store, "REQ-2", MONDAY)
    answered_at = MONDAY + timedelta(days=9)
    assert await store.answered("REQ-1", "disclosure-a", answered_at) is True
    assert await store.answered("REQ-1", "disclosure-b", answered_at + timedelta(days=1)) is False
    assert await store.answered("REQ-unknown", "disclosure-c", answered_at) is False
    assert [r.request_reference for r in await store.open_requests(MONDAY)] == ["REQ-2"]
    status = await store.status("REQ-1")
    assert status is not None
    assert (status.disclosure_id, status.answered_at) == ("disclosure-a", answered_at)
    assert await store.status("REQ-unknown") is None


async def test_a_request_past_fourteen_days_is_overdue_and_listed_first(
    store: DisclosureRequests,
) -> None:
    now = MONDAY + timedelta(days=20)
    await open_request(store, "REQ-fresh", now - timedelta(days=1))
    await open_request(store, "REQ-late", now - timedelta(days=15), protocol="PROTOCOL_2013")
    await open_request(store, "REQ-later", now - timedelta(days=18))
    await open_request(store, "REQ-due-soon", now - timedelta(days=12))
    found = await store.open_requests(now)
    assert [(r.request_reference, r.days_remaining, r.overdue) for r in found] == [
        ("REQ-later", -4, True),
        ("REQ-late", -1, True),
        ("REQ-due-soon", 2, False),
        ("REQ-fresh", 13, False),
    ]
    assert found[1].protocol == "PROTOCOL_2013"


async def test_overdue_starts_just_after_the_deadline(store: DisclosureRequests) -> None:
    await open_request(store, "REQ-1", MONDAY)
    due = deadline(MONDAY)
    (at_due,) = await store.open_requests(due)
    (after,) = await store.open_requests(due + timedelta(milliseconds=1))
    assert (at_due.overdue, at_due.days_remaining) == (False, 0)
    assert (after.overdue, after.days_remaining) == (True, -1)


async def test_open_requests_for_one_local_authority(store: DisclosureRequests) -> None:
    await open_request(store, "REQ-1", MONDAY)
    await open_request(store, "REQ-2", MONDAY, la="la-islington")
    found = await store.open_requests(MONDAY, la_id="la-islington")
    assert [r.request_reference for r in found] == ["REQ-2"]


async def test_an_unknown_protocol_is_refused(store: DisclosureRequests) -> None:
    with pytest.raises(ValueError, match="PROTOCOL_2013"):
        await open_request(store, "REQ-1", MONDAY, protocol="2019")
    assert await store.open_requests(MONDAY) == []


async def test_no_child_identifier_has_a_column(store: DisclosureRequests, db: Backend) -> None:
    def columns(sync_conn: object) -> set[str]:
        found = inspect(sync_conn).get_columns("disclosure_request", schema=db.schema)
        return {column["name"] for column in found}

    async with store.engine.connect() as conn:
        names = await conn.run_sync(columns)
    assert names == {
        "request_reference",
        "la_id",
        "police_id",
        "protocol",
        "requested_at",
        "due_at",
        "child_pseudonym",
        "answered_at",
        "disclosure_id",
    }


async def test_requests_survive_reopening(db: Backend) -> None:
    async with await DisclosureRequests.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="gateway"
    ) as first:
        await open_request(first, "REQ-1", MONDAY)
    async with await DisclosureRequests.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="gateway"
    ) as again:
        assert [r.request_reference for r in await again.open_requests(MONDAY)] == ["REQ-1"]


# --- the CLI -----------------------------------------------------------------------------


async def _seed(home: Path) -> None:
    async with await DisclosureRequests.open(None, home / SQLITE_FILE, owner="gateway") as store:
        await open_request(store, "REQ-fresh", datetime(2025, 3, 19, 9, 0, tzinfo=UTC))
        await open_request(
            store, "REQ-late", datetime(2025, 3, 1, 9, 0, tzinfo=UTC), protocol="PROTOCOL_2013"
        )
        await open_request(store, "REQ-answered", datetime(2025, 2, 1, 9, 0, tzinfo=UTC))
        await store.answered("REQ-answered", "d-1", datetime(2025, 2, 10, 9, 0, tzinfo=UTC))


def test_cli_lists_open_requests_overdue_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SGX_STORE_DSN", raising=False)
    home = tmp_path / "home"
    asyncio.run(_seed(home))
    result = CliRunner().invoke(
        police, ["requests", "--home", str(home), "--now", "2025-03-20T12:00:00+00:00"]
    )
    assert result.exit_code == 0, result.output
    header, late, fresh, summary = result.output.splitlines()
    assert header.split()[:3] == ["REFERENCE", "PROTOCOL", "LA"]
    assert late.split() == [
        "REQ-late",
        "2013",
        "la-camden",
        "met-police",
        "2025-03-01",
        "09:00",
        "2025-03-15",
        "09:00",
        "-6",
        "OVERDUE",
    ]
    assert fresh.split()[0] == "REQ-fresh"
    assert fresh.split()[-2:] == ["12", "open"]  # due 2 April 09:00
    assert summary == "2 open, 1 overdue (as of 2025-03-20 12:00 UTC)"
    assert "REQ-answered" not in result.output


def test_cli_says_when_nothing_is_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SGX_STORE_DSN", raising=False)
    result = CliRunner().invoke(police, ["requests", "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert result.output == "no open disclosure requests\n"


def test_cli_refuses_a_bad_now(tmp_path: Path) -> None:
    result = CliRunner().invoke(police, ["requests", "--home", str(tmp_path), "--now", "Friday"])
    assert result.exit_code == 2
    assert "--now" in result.output
