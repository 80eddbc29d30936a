"""Families informed: the decision's rules, when one is overdue, and the LA's record of
disclosures and decisions on SQLite and PostgreSQL (registered with a share, made when the
exchange allows it, outstanding per caller, superseded without losing the earlier one,
and shares asked before the migration registered by it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from holidays import country_holidays
from sqlalchemy import text

from consumers.inbox.store import InboxStore
from consumers.queue import QueueSelection, QueueStore
from sgx.domain.calendar import SchoolCalendar
from sgx.domain.family import (
    DisclosureKind,
    FamilyException,
    InformMethod,
    decision_due,
    decision_from,
)
from sgx.errors import ContractError, NotFound
from sgx.store import migrate
from sgx.store.db import open_engine
from tests.conftest_db import BACKENDS, Backend, backend
from tests.unit.test_queue_store import entry

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday
LONDON = ZoneInfo("Europe/London")
WORKING = SchoolCalendar(time(8, 30), LONDON, bank_holidays=country_holidays("GB", subdiv="ENG"))
TOLD = {
    "informed": True,
    "informed_at": "2026-12-07T10:30:00+00:00",
    "informed_by": "Amara Osei",
    "method": "phone",
    "family_member": "Amira's mother",
}
NOT_TOLD = {
    "informed": False,
    "exception": "PREJUDICE_CRIMINAL_INVESTIGATION",
    "reason": "police are interviewing the father on Thursday",
    "decided_by": "Tess Jones, team manager",
}


# -- the decision's rules -----------------------------------------------------------------
def test_the_exceptions_are_the_contracts_reasons_for_sharing_without_consent() -> None:
    schema = json.loads(
        (REPO / "schemas" / "org.safeguarding.exchange.NoConsentReason.avsc").read_text()
    )
    assert [e.value for e in FamilyException] == schema["symbols"]


def test_a_family_told_says_when_by_whom_and_how() -> None:
    decision = decision_from(TOLD, now=NOW, decided_by="Amara Osei")
    assert decision.informed
    assert decision.method is InformMethod.PHONE
    assert decision.informed_at == datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
    assert (decision.decided_by, decision.decided_at) == ("Amara Osei", NOW)
    assert (
        decision.words() == "told (Amira's mother) by phone by Amara Osei on 07 Dec 2026 10:30 UTC"
    )


def test_an_exception_says_which_and_why_and_who_decided() -> None:
    decision = decision_from(NOT_TOLD, now=NOW, decided_by="Amara Osei")
    assert not decision.informed
    assert decision.exception is FamilyException.PREJUDICE_CRIMINAL_INVESTIGATION
    assert decision.decided_by == "Tess Jones, team manager"  # named, not the recorder
    assert "prejudice the investigation of a crime" in decision.words()


@pytest.mark.parametrize(
    ("fields", "path", "problem"),
    [
        ({}, "informed", "say whether"),
        ({"informed": "yes"}, "informed", "say whether"),
        (TOLD | {"informed_at": None}, "informed_at", "say when, by whom and how"),
        (TOLD | {"informed_by": "  "}, "informed_by", "must not be blank"),
        (TOLD | {"method": "pigeon"}, "method", "must be one of IN_PERSON, PHONE"),
        (TOLD | {"informed_at": "2026-12-07T10:30"}, "informed_at", "needs a time zone"),
        (TOLD | {"informed_at": "yesterday"}, "informed_at", "not a date and time"),
        (TOLD | {"informed_at": "2026-12-08T10:30:00Z"}, "informed_at", "in the future"),
        (TOLD | {"exception": "UNDUE_DELAY"}, "exception", "only when the family was not told"),
        (TOLD | {"family_member": "x" * 201}, "family_member", "at most 200"),
        (NOT_TOLD | {"exception": None}, "exception", "say which exception"),
        (NOT_TOLD | {"exception": "TOO_BUSY"}, "exception", "must be one of RISK_TO_CHILD"),
        (NOT_TOLD | {"reason": None}, "reason", "record why the exception applies"),
        (NOT_TOLD | {"method": "PHONE"}, "method", "only when the family was told"),
        (NOT_TOLD | {"decided_by": None}, "decided_by", "say who decided"),
    ],
)
def test_a_wrong_decision_names_its_field(fields: dict[str, Any], path: str, problem: str) -> None:
    recorder = None if path == "decided_by" else "Amara Osei"
    with pytest.raises(ContractError, match=problem) as raised:
        decision_from(fields, now=NOW, decided_by=recorder, where="body.family.")
    assert raised.value.path == f"body.family.{path}"


def london(day: int, hour: int = 10, month: int = 12, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=LONDON)


@pytest.mark.parametrize(
    ("disclosed", "days", "due"),
    [
        (london(7), 2, london(9)),  # Monday -> Wednesday, same time
        (london(10), 2, london(14)),  # Thursday -> Monday: the weekend does not count
        (london(12, 11), 1, london(15, 0)),  # Saturday: from Monday's start, so by its end
        (london(23), 2, london(29)),  # Christmas (Fri), Boxing Day (Mon 28, in lieu) are not
        (london(7), 0, london(7)),
    ],
)
def test_a_decision_is_due_some_working_days_after_the_disclosure(
    disclosed: datetime, days: int, due: datetime
) -> None:
    assert decision_due(WORKING, disclosed, days) == due


# -- the LA's record ------------------------------------------------------------------------
@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


@pytest.fixture
async def stores(db: Backend) -> AsyncIterator[tuple[QueueStore, InboxStore]]:
    async with (
        await QueueStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="la-test") as queue,
        await InboxStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="la-test") as inbox,
    ):
        yield queue, inbox


async def _shared(inbox: InboxStore, item_id: int, n: str, request: str, allowed: bool) -> int:
    share_id = await inbox.share_asked(
        request_id=request, item_id=item_id, notification_id=n, requested_by="sw-amara",
        to_id="gp", to_category="OTHER_PROFESSIONAL", to_name="Dr Patel", purpose="planning",
    )  # fmt: skip
    decided = {"allowed": allowed, "broken": [], "reason": "r", "decided_at": NOW}
    await inbox.share_decided(request, decided)
    return share_id


async def test_a_share_is_a_disclosure_once_allowed_and_outstanding_until_decided(
    stores: tuple[QueueStore, InboxStore],
) -> None:
    queue, inbox = stores
    await queue.store_batch(
        [
            entry(1, recipient="sw-amara", team="Team 1"),
            entry(2, recipient="sw-ben", team="Team 1"),
            entry(3, recipient="mash:la-test", team="MASH"),
        ]
    )
    rows = {r.recipient_id: r for r in await queue.select(QueueSelection(everything=True))}
    amara, ben, mash = rows["sw-amara"], rows["sw-ben"], rows["mash:la-test"]
    families = inbox.families
    pending = await inbox.share_asked(
        request_id="r-pending", item_id=amara.item_id, notification_id=amara.notification_id,
        requested_by="sw-amara", to_id="x", to_category="LA_SOCIAL_CARE", to_name="x",
        purpose="p",
    )  # fmt: skip
    allowed = await _shared(inbox, amara.item_id, amara.notification_id, "r-allowed", True)
    refused = await _shared(inbox, ben.item_id, ben.notification_id, "r-refused", False)
    bens = await _shared(inbox, ben.item_id, ben.notification_id, "r-bens", True)
    mashs = await _shared(inbox, mash.item_id, mash.notification_id, "r-mash", True)
    share = DisclosureKind.ONWARD_SHARE
    assert (await families.get(share, str(pending))).made is None  # no answer yet
    assert (await families.get(share, str(refused))).made is False  # nothing was disclosed
    made = await families.get(share, str(allowed))
    assert (made.made, made.made_at, made.to_name, made.outstanding) == (
        True, NOW, "Dr Patel", True,
    )  # fmt: skip

    def refs(found: list[Any]) -> list[str]:
        return [p.disclosure.ref for p in found]

    team1 = QueueSelection(recipients=frozenset({"tm-jones"}), teams=frozenset({"Team 1"}))
    assert refs(await families.outstanding(team1)) == [str(allowed), str(bens)]
    only_amara = QueueSelection(recipients=frozenset({"sw-amara"}))
    assert refs(await families.outstanding(only_amara)) == [str(allowed)]
    duty = QueueSelection(recipients=frozenset({"mash:la-test"}))
    assert refs(await families.outstanding(duty)) == [str(mashs)]
    assert refs(await families.outstanding(QueueSelection())) == []
    assert sorted(team for team, _ in await families.outstanding_by_team()) == [
        "MASH", "Team 1", "Team 1",
    ]  # fmt: skip

    told = decision_from(TOLD, now=NOW, decided_by="Amara Osei")
    first = await families.record(
        made.disclosure_id, told, recorded_by="sw-amara", recorder_kind="person"
    )
    assert refs(await families.outstanding(only_amara)) == []
    assert (await families.get(share, str(allowed))).decision == first
    # the exception is later found to have been wrong way round: a new decision supersedes,
    # and the first stays on the record
    not_told = decision_from(NOT_TOLD, now=NOW)
    second = await families.record(
        made.disclosure_id, not_told, recorded_by="mosaic", recorder_kind="system"
    )
    assert second.supersedes == first.decision_id
    history = await families.history(made.disclosure_id)
    assert [h.decision for h in history] == [told, not_told]
    current = await families.get(share, str(allowed))
    assert current.decision is not None
    assert current.decision.decision.exception is FamilyException.PREJUDICE_CRIMINAL_INVESTIGATION
    assert [d.ref for d in await families.of([amara.notification_id])] == [
        str(pending), str(allowed),
    ]  # fmt: skip
    found = await families.current(share, [str(allowed), str(bens), "999"])
    assert sorted(found) == sorted([str(allowed), str(bens)])
    with pytest.raises(NotFound, match="no onward_share 999"):
        await families.get(share, "999")


async def test_a_decision_can_be_recorded_with_the_request_before_the_answer(
    stores: tuple[QueueStore, InboxStore],
) -> None:
    queue, inbox = stores
    await queue.store_batch([entry(1, recipient="sw-amara", team="Team 1")])
    (row,) = await queue.select(QueueSelection(everything=True))
    share_id = await inbox.share_asked(
        request_id="r1", item_id=row.item_id, notification_id=row.notification_id,
        requested_by="sw-amara", to_id="gp", to_category="OTHER_PROFESSIONAL",
        to_name="Dr Patel", purpose="p",
    )  # fmt: skip
    found = await inbox.families.get(DisclosureKind.ONWARD_SHARE, str(share_id))
    told = decision_from(TOLD, now=NOW, decided_by="x")
    await inbox.families.record(
        found.disclosure_id, told, recorded_by="sw-amara", recorder_kind="person"
    )
    await inbox.share_decided(
        "r1", {"allowed": True, "broken": [], "reason": "", "decided_at": NOW}
    )
    made = await inbox.families.get(DisclosureKind.ONWARD_SHARE, str(share_id))
    assert made.made
    assert not made.outstanding
    everyone = QueueSelection(everything=True)
    assert await inbox.families.outstanding(everyone) == []


async def test_a_network_check_registers_itself_and_takes_the_same_decision(
    stores: tuple[QueueStore, InboxStore],
) -> None:
    """The generic disclosure: a MASH information request (built elsewhere) registers as
    made when it is sent, and the same decisions attach to it."""
    queue, inbox = stores
    await queue.store_batch([entry(1, recipient="mash:la-test", team="MASH")])
    (row,) = await queue.select(QueueSelection(everything=True))
    disclosure_id = await inbox.families.register(
        None, kind=DisclosureKind.NETWORK_CHECK, ref="b4f1", item_id=row.item_id,
        notification_id=row.notification_id, to_name="Hillside Primary School",
        to_category="OTHER_PROFESSIONAL", purpose="network check (amber)", asked_by="mash-1",
        made=True, at=NOW,
    )  # fmt: skip
    (pending,) = await inbox.families.outstanding(QueueSelection(everything=True))
    assert (pending.disclosure.kind, pending.team) == (DisclosureKind.NETWORK_CHECK, "MASH")
    await inbox.families.record(
        disclosure_id, decision_from(NOT_TOLD, now=NOW), recorded_by="mash-1",
        recorder_kind="person",
    )  # fmt: skip
    assert await inbox.families.outstanding(QueueSelection(everything=True)) == []


async def test_the_migration_registers_the_shares_asked_before_it(db: Backend) -> None:
    """A store at queue 0005 with shares (allowed, refused, pending) upgrades to a record
    where the allowed one is outstanding: nobody recorded whether that family was told."""
    from alembic import command

    engine = open_engine(db.dsn, db.sqlite_path)
    try:

        def to_0005(conn: Any) -> None:
            if db.schema:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
                conn.execute(text(f'SET LOCAL search_path TO "{db.schema}"'))
            command.upgrade(migrate._config("queue", conn, db.schema), "queue_0005")

        async with engine.begin() as conn:
            await conn.run_sync(to_0005)
        shares = db.table("inbox_share")
        for n, allowed in enumerate(("true", "false", "null"), start=1):
            decided = "'2026-12-07T09:00:00+00:00'" if allowed != "null" else "null"
            if db.kind == "sqlite":
                allowed = {"true": "1", "false": "0"}.get(allowed, allowed)
            await db.execute(
                f"INSERT INTO {shares} (request_id, item_id, notification_id, requested_by,"
                " to_id, to_category, to_name, purpose, requested_at, allowed, broken, reason,"
                f" decided_at) VALUES ('r{n}', {n}, 'n{n}', 'sw-amara', 'gp',"
                " 'OTHER_PROFESSIONAL', 'Dr Patel', 'planning', '2026-12-07T08:00:00+00:00',"
                f" {allowed}, '[]', null, {decided})"
            )
        assert await migrate.upgrade(engine, "queue", db.schema) == (
            "queue_0005", migrate.head("queue"),
        )  # fmt: skip
    finally:
        await engine.dispose()
    async with await InboxStore.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="la-test"
    ) as inbox:
        found = await inbox.families.of(["n1", "n2", "n3"])
        assert [(d.ref, d.made, d.outstanding) for d in found] == [
            ("1", True, True), ("2", False, False), ("3", None, False),
        ]  # fmt: skip
        assert found[0].made_at == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
        assert found[0].asked_at == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
