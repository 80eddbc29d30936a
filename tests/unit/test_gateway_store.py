"""The gateway's audit hash chain, quarantine and share ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import MetaData

from gateway.audit_chain import GENESIS_HASH, AuditEntry, canonical_entry, chain_hash
from gateway.records import LedgerEntry
from gateway.store import GatewayStore
from sgx.errors import AuditChainBroken, ConfigError, StoreError
from sgx.kafka.quarantine import Quarantined
from tests.conftest_db import BACKENDS, Backend, backend

DECIDED = datetime(2024, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)


def audit(n: int, **changes: object) -> AuditEntry:
    made = AuditEntry(
        decision="delivered",
        message_id=f"message-{n}",
        notification_id=f"notification-{n}",
        sender="school-oakfield",
        recipient="sw-anna",
        recipient_role="social_worker",
        local_authority="la-north",
        notification_type="attendance_update",
        child_pseudonym="ab" * 16,
        reason="allocated",
        lawful_basis="public_task",
        consent="not_sought",
        no_consent_reason="seeking consent would put the child at risk",
        restrictions=("THIRD_PARTY_AUTHOR_CONSENT",),
        withheld=("child.address",),
        detail="s.11 Children Act 2004; by J Smith (DSL)",
        decided_at=DECIDED + timedelta(seconds=n),
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def quarantined(offset: int, **changes: object) -> Quarantined:
    made = Quarantined(
        message_id=None,
        sender_claimed="school-oakfield",
        topic="sgx.inbound.school-oakfield",
        partition=2,
        offset=offset,
        item=0,
        reason="bad_signature",
        detail="the data-key signature does not verify",
        raw=b"\xc3\x01\x00forged",
        quarantined_at=DECIDED,
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def ledger(n: int, **changes: object) -> LedgerEntry:
    made = LedgerEntry(
        notification_id=f"notification-{n}",
        sender="police-north",
        sender_kind="police",
        notification_type="police_notification",
        local_authority="la-north",
        child_pseudonym="cd" * 16,
        restrictions=("POLICE_CONFIDENTIAL_TO_PROCEEDINGS",),
        onward_consent=(),
        recorded_at=DECIDED,
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


async def open_store(db: Backend) -> GatewayStore:
    return await GatewayStore.open(db.dsn, db.sqlite_path, schema=db.schema, owner="gateway")


@pytest.fixture
async def store(db: Backend) -> AsyncIterator[GatewayStore]:
    async with await open_store(db) as opened:
        yield opened


@pytest.fixture
async def chain(store: GatewayStore) -> GatewayStore:
    """A store holding a chain of five records."""
    assert await store.record([audit(n) for n in range(1, 6)]) == [1, 2, 3, 4, 5]
    return store


# --- the chain --------------------------------------------------------------------------


def test_canonical_form_is_the_documented_one() -> None:
    expected = (
        '["sgx.inbound.school-a:2",7,"refused","m-1","n-1","school-a",null,null,"la-a","x",'
        'null,"no_route",null,null,null,["A","B"],[],"né","2024-03-01T09:00:00.123Z"]'
    )
    entry = AuditEntry(
        decision="refused",
        message_id="m-1",
        notification_id="n-1",
        sender="school-a",
        recipient=None,
        recipient_role=None,
        local_authority="la-a",
        notification_type="x",
        child_pseudonym=None,
        reason="no_route",
        lawful_basis=None,
        consent=None,
        no_consent_reason=None,
        restrictions=("A", "B"),
        withheld=(),
        detail="né",
        decided_at=DECIDED,
    )
    assert canonical_entry(entry, 7, "sgx.inbound.school-a:2") == expected.encode("utf-8")
    prev = "11" * 32
    assert (
        chain_hash(prev, entry, 7, "sgx.inbound.school-a:2")
        == hashlib.sha256(bytes.fromhex(prev) + expected.encode("utf-8")).hexdigest()
    )


def test_canonical_form_covers_every_field() -> None:
    """Every AuditEntry field is hashed: changing any one changes the canonical bytes."""
    entry = audit(1)
    others: dict[str, Any] = {
        "restrictions": ("OTHER",),
        "withheld": ("child.name",),
        "decided_at": DECIDED + timedelta(seconds=5),
    }
    for field in dataclasses.fields(AuditEntry):
        changed = dataclasses.replace(entry, **{field.name: others.get(field.name, "changed")})
        assert canonical_entry(changed, 1, "c") != canonical_entry(entry, 1, "c"), field.name
    assert canonical_entry(entry, 2, "c") != canonical_entry(entry, 1, "c")
    assert canonical_entry(entry, 1, "d") != canonical_entry(entry, 1, "c")


async def test_chain_verifies_and_links(chain: GatewayStore) -> None:
    records = await chain.audit_records()
    assert [r.sequence for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    for record in records:
        assert record.hash == chain_hash(record.prev_hash, record, record.sequence, record.chain)
    assert await chain.verify_chain() == (5, records[-1].hash) == await chain.chain_head()


async def test_records_round_trip_with_millisecond_times(chain: GatewayStore) -> None:
    (record,) = await chain.audit_records(notification_id="notification-2")
    names = [f.name for f in dataclasses.fields(AuditEntry)]
    as_stored = AuditEntry(**{name: getattr(record, name) for name in names})
    decided = (DECIDED + timedelta(seconds=2)).replace(microsecond=123000)
    assert as_stored == dataclasses.replace(audit(2), decided_at=decided)
    assert record.decided_at.tzinfo == UTC


async def test_audit_records_filters(chain: GatewayStore) -> None:
    assert [r.sequence for r in await chain.audit_records(after=2)] == [3, 4, 5]
    assert [r.sequence for r in await chain.audit_records(after=1, limit=2)] == [2, 3]
    assert await chain.audit_records(notification_id="nothing") == []


async def test_audit_records_for_one_local_authority(chain: GatewayStore) -> None:
    south = [audit(6, local_authority="la-south"), audit(7, local_authority=None)]
    assert await chain.record([*south, audit(8)]) == [6, 7, 8]
    north = await chain.audit_records(local_authority="la-north")
    assert [r.sequence for r in north] == [1, 2, 3, 4, 5, 8]
    (record,) = await chain.audit_records(local_authority="la-south")
    assert (record.sequence, record.local_authority) == (6, "la-south")
    later = await chain.audit_records(local_authority="la-north", after=4)
    assert [r.sequence for r in later] == [5, 8]
    assert await chain.audit_records(local_authority="la-nowhere") == []
    (both,) = await chain.audit_records(
        notification_id="notification-6", local_authority="la-south"
    )
    assert both.sequence == 6
    assert (await chain.audit_records(notification_id="notification-7"))[0].local_authority is None


async def test_empty_chain(store: GatewayStore) -> None:
    assert await store.chain_head() == (0, GENESIS_HASH)
    assert await store.verify_chain() == (0, GENESIS_HASH)


async def test_duplicate_decision_is_not_appended(chain: GatewayStore) -> None:
    head = await chain.chain_head()
    assert await chain.record([audit(4), audit(2), audit(4)]) == [4, 2, 4]
    assert await chain.chain_head() == head
    other = audit(2, recipient="sw-supervisor")
    assert await chain.record([audit(6), other, other, audit(2)]) == [6, 7, 7, 2]
    assert (await chain.verify_chain())[0] == 7


async def test_the_same_decision_for_another_la_or_child_is_another_decision(
    chain: GatewayStore,
) -> None:
    """One notification can reach two LAs' MASH duty (no recipient), and an allocation
    update decides for each child: the LA and the child are part of what a decision is."""
    mash = audit(2, recipient=None, recipient_role=None)
    other_la = dataclasses.replace(mash, local_authority="la-south")
    other_child = dataclasses.replace(mash, child_pseudonym="ef" * 16)
    assert await chain.record([mash, other_la, other_child]) == [6, 7, 8]
    assert await chain.record([other_la, mash, other_child]) == [7, 6, 8]
    no_la = audit(2, local_authority=None)
    assert await chain.record([no_la, no_la, audit(2)]) == [9, 9, 2]
    assert (await chain.verify_chain())[0] == 9


async def test_same_message_refused_and_quarantined_are_two_decisions(store: GatewayStore) -> None:
    refused = audit(1, decision="refused", recipient=None)
    assert await store.record([refused, audit(1, decision="quarantined", recipient=None)]) == [1, 2]
    assert await store.record([refused]) == [1]


async def test_unknown_decision_is_a_programming_error(store: GatewayStore) -> None:
    with pytest.raises(ValueError, match="unknown audit decision"):
        await store.record([audit(1), audit(2, decision="shared")])
    assert await store.chain_head() == (0, GENESIS_HASH)


async def test_every_known_decision_is_recorded(store: GatewayStore) -> None:
    decisions = ["delivered", "refused", "quarantined", "share_allowed", "share_refused", "applied"]
    entries = [audit(1, decision=decision) for decision in decisions]
    assert await store.record(entries) == [1, 2, 3, 4, 5, 6]
    assert [r.decision for r in await store.audit_records()] == decisions


async def test_reopened_store_continues_the_chain(db: Backend) -> None:
    async with await open_store(db) as first:
        await first.record([audit(1), audit(2)])
    async with await open_store(db) as second:
        assert await second.record([audit(2), audit(3)]) == [2, 3]
        assert (await second.verify_chain())[0] == 3


async def test_failing_batch_leaves_nothing(chain: GatewayStore) -> None:
    head = await chain.chain_head()
    broken = ledger(9, notification_id=cast("str", None))  # NOT NULL primary key
    with pytest.raises(StoreError):
        await chain.record([audit(6), audit(7)], [quarantined(1)], [ledger(8), broken])
    assert await chain.chain_head() == head
    assert await chain.quarantine_count() == 0
    assert await chain.ledger_entry("notification-8", "la-north") is None
    assert await chain.record([audit(7)]) == [6]
    assert (await chain.verify_chain())[0] == 6


async def test_concurrent_writers_in_one_process_keep_one_chain(store: GatewayStore) -> None:
    batches = [[audit(n * 10 + i) for i in range(10)] for n in range(5)]
    results = await asyncio.gather(*(store.record(batch) for batch in batches))
    assert sorted(s for seqs in results for s in seqs) == list(range(1, 51))
    assert (await store.verify_chain())[0] == 50


# --- tampering --------------------------------------------------------------------------

LATER = {"sqlite": "'2030-01-01T00:00:00.000000+00:00'", "postgres": "'2030-01-01 00:00:00+00'"}
MICROS = {
    "sqlite": "replace(decided_at, '.123000', '.123456')",
    "postgres": "decided_at + interval '1 microsecond'",
}
TAMPERING: dict[str, str | dict[str, str]] = {
    "chain": "'sgx.inbound.other:0'",
    "sequence": "1000",
    "decision": "'refused'",
    "message_id": "'message-99'",
    "notification_id": "'notification-99'",
    "sender": "'police-north'",
    "recipient": "'sw-ben'",
    "recipient_role": "'supervisor'",
    "local_authority": "'la-south'",
    "notification_type": "'health_update'",
    "child_pseudonym": f"'{'ef' * 16}'",
    "reason": "'mash_duty'",
    "lawful_basis": "'legal_obligation'",
    "consent": "'given'",
    "no_consent_reason": "NULL",
    "restrictions": "'[]'",
    "withheld": '\'["child.address","child.name"]\'',
    "detail": "'nothing to see'",
    "decided_at": LATER,
    "decision_key": '\'["message-3","delivered","sw-anna","la-south",null]\'',
    "prev_hash": f"'{'a' * 64}'",
    "hash": f"'{'b' * 64}'",
}
SUBTLE: dict[str, tuple[str, str | dict[str, str]]] = {
    "restrictions-spacing": ("restrictions", "'[ \"THIRD_PARTY_AUTHOR_CONSENT\"]'"),
    "decided_at-microsecond": ("decided_at", MICROS),
    "hash-uppercase": ("hash", "upper(hash)"),
}


def test_tampering_covers_every_column() -> None:
    from gateway.records import audit_table as _audit_table

    assert set(TAMPERING) == set(_audit_table(MetaData()).c.keys())


async def tamper(db: Backend, column: str, value: str | dict[str, str]) -> None:
    expression = value if isinstance(value, str) else value[db.kind]
    table = db.table("audit_record")
    changed = await db.execute(f'UPDATE {table} SET "{column}" = {expression} WHERE sequence = 3')
    assert changed == 1


@pytest.mark.parametrize("column", list(TAMPERING))
async def test_editing_any_column_is_detected_at_that_record(
    db: Backend, chain: GatewayStore, column: str
) -> None:
    await tamper(db, column, TAMPERING[column])
    with pytest.raises(AuditChainBroken) as caught:
        await chain.verify_chain()
    assert caught.value.sequence == 3


@pytest.mark.parametrize("case", list(SUBTLE))
async def test_subtle_edits_are_detected(db: Backend, chain: GatewayStore, case: str) -> None:
    await tamper(db, *SUBTLE[case])
    with pytest.raises(AuditChainBroken) as caught:
        await chain.verify_chain()
    assert caught.value.sequence == 3


async def test_deleting_a_middle_record_is_detected(db: Backend, chain: GatewayStore) -> None:
    await db.execute(f"DELETE FROM {db.table('audit_record')} WHERE sequence = 3")
    with pytest.raises(AuditChainBroken, match="missing") as caught:
        await chain.verify_chain()
    assert caught.value.sequence == 3


async def test_cutting_the_tail_is_detected_against_a_head(
    db: Backend, chain: GatewayStore
) -> None:
    head = await chain.chain_head()
    await db.execute(f"DELETE FROM {db.table('audit_record')} WHERE sequence >= 4")
    with pytest.raises(AuditChainBroken, match="cut short") as caught:
        await chain.verify_chain()  # against the chain's head row
    assert caught.value.sequence == 4
    assert caught.value.chain == "gateway"
    # Rewinding the head row too hides the cut from the chain alone...
    await db.execute(
        f"UPDATE {db.table('audit_chain')} SET head_sequence = 3, head_hash = "
        f"(SELECT hash FROM {db.table('audit_record')} WHERE sequence = 3)"
    )
    async with await open_store(db) as reader:
        assert (await reader.verify_chain())[0] == 3  # a chain proves itself only so far
        with pytest.raises(AuditChainBroken):  # ...but not from a head kept elsewhere
            await reader.verify_chain(anchor=head)


# --- quarantine and ledger --------------------------------------------------------------


async def test_quarantine_is_idempotent_on_offset(store: GatewayStore) -> None:
    await store.record([], [quarantined(10), quarantined(10, reason="again")])
    await store.record([], [quarantined(10, detail="replayed"), quarantined(11)])
    await store.record([], [quarantined(10, topic="sgx.inbound.police-north")])
    assert await store.quarantine_count() == 3
    kept = await store.quarantine_list()
    assert kept == [
        quarantined(10),
        quarantined(11),
        quarantined(10, topic="sgx.inbound.police-north"),
    ]


async def test_ledger_is_idempotent_first_entry_wins(store: GatewayStore) -> None:
    await store.record([audit(1)], ledger=[ledger(1)])
    await store.record(
        [audit(1)], ledger=[ledger(1, restrictions=()), ledger(2, child_pseudonym=None)]
    )
    assert await store.ledger_entry("notification-1", "la-north") == ledger(1)
    assert await store.ledger_entry("notification-2", "la-north") == ledger(2, child_pseudonym=None)
    assert await store.ledger_entry("notification-3", "la-north") is None


async def test_the_ledger_keeps_an_entry_per_local_authority(store: GatewayStore) -> None:
    """A notification delivered to two LAs has an entry for each, looked up separately;
    each is still first-entry-wins, and neither LA finds the other's."""
    south = ledger(1, local_authority="la-south", onward_consent=("parent_or_carer",))
    await store.record([], ledger=[ledger(1), south])
    await store.record(
        [], ledger=[ledger(1, restrictions=()), dataclasses.replace(south, sender="x")]
    )
    assert await store.ledger_entry("notification-1", "la-north") == ledger(1)
    assert await store.ledger_entry("notification-1", "la-south") == south
    assert await store.ledger_entry("notification-1", "la-east") is None
    await store.record([], ledger=[ledger(2, local_authority="la-south")])
    assert await store.ledger_entry("notification-2", "la-north") is None
    assert await store.ledger_entry("notification-2", "la-south") == ledger(
        2, local_authority="la-south"
    )


async def test_an_unreadable_record_is_reported_at_its_sequence(tmp_path: Path) -> None:
    async with backend("sqlite", tmp_path) as db, await open_store(db) as store:
        await store.record([audit(n) for n in range(1, 6)])
        await tamper(db, "decided_at", "'yesterday'")
        with pytest.raises(AuditChainBroken, match="unreadable") as caught:
            await store.verify_chain()
        assert caught.value.sequence == 3


async def test_verification_walks_page_by_page(
    db: Backend, chain: GatewayStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.store._PAGE", 2)
    assert (await chain.verify_chain())[0] == 5
    await db.execute(f"DELETE FROM {db.table('audit_record')} WHERE sequence = 5")
    with pytest.raises(AuditChainBroken) as caught:
        await chain.verify_chain()
    assert caught.value.sequence == 5


async def test_a_database_from_an_older_release_is_refused_by_name(db: Backend) -> None:
    """A gateway database made before the partnership (audit records without the LA they
    concern) is refused at open with what to do, and nothing is written to it."""
    async with await open_store(db) as store:
        await store.record([audit(1)])
        async with store.engine.begin() as conn:
            prefix = f"{db.schema}." if db.schema else ""
            if db.schema is None:  # SQLite will not drop an indexed column
                await conn.exec_driver_sql("DROP INDEX ix_audit_record_local_authority")
            drop = f"ALTER TABLE {prefix}audit_record DROP COLUMN local_authority"
            await conn.exec_driver_sql(drop)
    with pytest.raises(ConfigError, match="older release") as caught:
        await open_store(db)
    assert "table audit_record lacks local_authority" in str(caught.value)
    assert "new home" in str(caught.value)
