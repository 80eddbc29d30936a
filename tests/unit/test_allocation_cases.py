"""One child, however it is named (issue 21, item 8): an LA's case is the identifiers its
allocations name together, and a closure, a transfer or a re-allocation naming any of
them acts on all of them, in memory, in the snapshot, after a restart and in the schools'
open-case lists (docs/design.md, "Cases"). On SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import text

from gateway.allocation_cases import Allocation, case_id, db_key, from_db_key, named_keys, settle
from gateway.allocation_feed import AllocationFeed
from gateway.allocation_index import AllocationIndex
from gateway.allocations import AllocationDirectory
from gateway.store import GatewayStore
from safeguard import samples
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.kafka.quarantine import Source
from sgx.keys.pseudonym import Pseudonymiser
from sgx.keys.trust import TrustDirectory
from sgx.store import migrate
from sgx.store.db import open_engine, write_transaction
from sgx.wire.contract import default_contract
from sgx.wire.envelope import Opener
from tests.conftest_db import BACKENDS, Backend, backend

KEY = bytes(range(32))
N1, U1 = make_nhs_number(41), make_upn(41)
N2, U2 = make_nhs_number(42), make_upn(42)
A, B = "la-a", "la-b"
PSEUDONYMS = Pseudonymiser(KEY)


@pytest.fixture(params=BACKENDS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with backend(request.param, tmp_path) as where:
        yield where


@pytest.fixture
async def store(db: Backend) -> AsyncIterator[GatewayStore]:
    async with await GatewayStore.open(
        db.dsn, db.sqlite_path, schema=db.schema, owner="gateway"
    ) as opened:
        yield opened


async def directory_of(store: GatewayStore, db: Backend) -> AllocationDirectory:
    directory = AllocationDirectory(store.engine, PSEUDONYMS, schema=db.schema)
    await directory.load()
    return directory


def allocate(la: str, nhs: str | None, upn: str | None, worker: str, **kw: Any) -> dict[str, Any]:
    return samples.allocation_update([(nhs, upn, worker, "T", f"tm-{la}")], la=la, **kw)


def close(la: str, nhs: str | None, upn: str | None) -> dict[str, Any]:
    return samples.allocation_update([], [(nhs, upn)], la=la)


def who(directory: AllocationDirectory, nhs: str | None, upn: str | None) -> dict[str, str]:
    """LA -> worker of every LA a notification naming these identifiers reaches."""
    found = directory.holders(*PSEUDONYMS.identifier_keys(nhs, upn))
    return {la: allocation.worker_id for la, allocation in found.items()}


async def same_after_restart(store: GatewayStore, db: Backend, live: AllocationDirectory) -> None:
    """A directory loaded from the snapshot routes every naming as the live one does."""
    loaded = await directory_of(store, db)
    for nhs, upn in [(N1, None), (None, U1), (N1, U1), (N2, None), (None, U2), (N2, U2),
                     (N1, U2), (N2, U1)]:  # fmt: skip
        assert who(loaded, nhs, upn) == who(live, nhs, upn), (nhs, upn)
    assert len(loaded) == len(live)


# --- the cases -------------------------------------------------------------------


async def test_a_closure_by_nhs_number_alone_closes_the_upn_too(
    store: GatewayStore, db: Backend
) -> None:
    directory = await directory_of(store, db)
    await directory.apply(allocate(A, N1, U1, "sw-1"))
    assert who(directory, None, U1) == {A: "sw-1"}
    await directory.apply(close(A, N1, None))
    assert who(directory, None, U1) == {}, "a notification by UPN must go to the MASH"
    assert who(directory, N1, U1) == {}
    assert len(directory) == 0
    await same_after_restart(store, db, directory)


async def test_a_transfer_then_a_closure_by_nhs_number_alone_leaves_only_the_new_la(
    store: GatewayStore, db: Backend
) -> None:
    directory = await directory_of(store, db)
    await directory.apply(allocate(A, N1, U1, "sw-a"))
    await directory.apply(allocate(B, N1, U1, "sw-b", transfer_from="E09000001"))
    assert who(directory, None, U1) == {A: "sw-a", B: "sw-b"}
    await directory.apply(close(A, N1, None))
    for naming in [(N1, None), (None, U1), (N1, U1)]:
        assert who(directory, *naming) == {B: "sw-b"}, naming
    await same_after_restart(store, db, directory)


async def test_a_reallocation_naming_only_the_upn_moves_the_nhs_number_too(
    store: GatewayStore, db: Backend
) -> None:
    directory = await directory_of(store, db)
    await directory.apply(allocate(A, N1, U1, "sw-old"))
    await directory.apply(allocate(A, None, U1, "sw-new"))
    for naming in [(N1, None), (None, U1), (N1, U1)]:
        assert who(directory, *naming) == {A: "sw-new"}, naming
    await same_after_restart(store, db, directory)
    # and the case is still one: a closure by the NHS number alone closes the UPN too
    await directory.apply(close(A, N1, None))
    assert who(directory, None, U1) == {}
    await same_after_restart(store, db, directory)


async def test_an_update_naming_an_identifier_only_seen_with_another(
    store: GatewayStore, db: Backend
) -> None:
    """The directory has seen U2 only in A's case with N1 (a UPN that changed, or a second
    one): A's update naming U2 alone acts on A's whole case; B naming U2 alone is B's own
    case of one identifier, which never reaches N1's notifications."""
    directory = await directory_of(store, db)
    await directory.apply(allocate(A, N1, U1, "sw-a"))
    await directory.apply(allocate(A, N1, U2, "sw-a2"))  # the case grows by U2
    assert who(directory, None, U1) == {A: "sw-a2"}
    await directory.apply(allocate(B, None, U2, "sw-b"))  # B knows the child by U2 only
    assert who(directory, N1, None) == {A: "sw-a2"}  # B's pairing is not A's
    assert who(directory, None, U1) == {A: "sw-a2"}
    assert who(directory, None, U2) == {A: "sw-a2", B: "sw-b"}
    await same_after_restart(store, db, directory)
    await directory.apply(close(A, None, U2))  # A closes by the identifier it added last
    assert who(directory, N1, U1) == {}
    assert who(directory, None, U2) == {B: "sw-b"}
    await same_after_restart(store, db, directory)


async def test_two_allocations_by_different_identifiers_are_two_cases_until_named_together(
    store: GatewayStore, db: Backend
) -> None:
    """An LA that allocates N1 and U1 in separate entries has not said they are one child:
    two cases, each closed on its own, the NHS number's worker receiving a notification
    naming both. A later allocation naming both joins them."""
    directory = await directory_of(store, db)
    await directory.apply(allocate(A, N1, None, "sw-n"))
    await directory.apply(allocate(A, None, U1, "sw-u"))
    assert who(directory, N1, U1) == {A: "sw-n"}
    assert who(directory, None, U1) == {A: "sw-u"}
    await directory.apply(close(A, N1, None))
    assert who(directory, None, U1) == {A: "sw-u"}, "a case of its own stays open"
    await directory.apply(allocate(A, N1, None, "sw-n"))
    await same_after_restart(store, db, directory)
    await directory.apply(allocate(A, N1, U1, "sw-both"))  # named together: one case
    assert who(directory, N1, None) == who(directory, None, U1) == {A: "sw-both"}
    await same_after_restart(store, db, directory)
    await directory.apply(close(A, None, U1))
    assert who(directory, N1, None) == {}
    await same_after_restart(store, db, directory)


async def test_an_allocation_putting_two_nhs_numbers_in_one_case_is_refused_whole(
    store: GatewayStore, db: Backend
) -> None:
    directory = await directory_of(store, db)
    await directory.apply(allocate(A, N1, U1, "sw-1"))
    await directory.apply(allocate(A, N2, None, "sw-2"))
    mixed = samples.allocation_update(
        [(None, U2, "sw-3", "T", "tm"), (N2, U1, "sw-3", "T", "tm")],  # the second: N1's UPN
        [(N1, None)],
        la=A,
    )
    assert directory.preview(directory.change(mixed)).refused == (
        "allocation 2 of 2 would put two NHS numbers in one case (the identifiers an LA "
        "names together, now or before, are one child's): the update is refused whole and "
        "nothing in it was applied"
    )
    assert await directory.apply(mixed) == 0
    assert who(directory, N1, None) == who(directory, None, U1) == {A: "sw-1"}
    assert who(directory, N2, None) == {A: "sw-2"}
    assert who(directory, None, U2) == {}, "the update's other entries were not applied"
    await same_after_restart(store, db, directory)
    # B's cases are B's: the same pairing there is no contradiction
    await directory.apply(allocate(B, N2, U1, "sw-b"))
    assert who(directory, None, U1) == {A: "sw-1", B: "sw-b"}


async def test_cases_of_one_la_named_together_later_are_merged(
    store: GatewayStore, db: Backend
) -> None:
    directory = await directory_of(store, db)
    await directory.apply(allocate(A, N1, None, "sw-1"))
    await directory.apply(allocate(A, None, U1, "sw-2"))
    await directory.apply(allocate(A, None, U2, "sw-3"))
    await directory.apply(allocate(A, None, U1, "sw-4"))  # one case only: U1's
    assert who(directory, N1, None) == {A: "sw-1"}
    await directory.apply(
        samples.allocation_update(
            [(N1, U1, "sw-5", "T", "tm"), (None, U2, "sw-5", "T", "tm")], la=A
        )
    )
    await directory.apply(allocate(A, N1, U2, "sw-6"))  # joins U2 in too
    for naming in [(N1, None), (None, U1), (None, U2)]:
        assert who(directory, *naming) == {A: "sw-6"}, naming
    await same_after_restart(store, db, directory)
    await directory.apply(close(A, None, U2))
    assert len(directory) == 0


async def test_the_open_case_lists_follow_the_whole_case(store: GatewayStore, db: Backend) -> None:
    directory = await directory_of(store, db)
    await directory.apply(allocate(A, N1, U1, "sw-1"))
    await directory.apply(allocate(A, N2, U2, "sw-2"))
    nhs1, upn1 = PSEUDONYMS.identifier_keys(N1, U1)
    assert {nhs1, upn1} <= set(await directory.open_case_keys([A]))
    await directory.apply(close(A, None, U1))
    listed = set(await directory.open_case_keys([A]))
    assert not {nhs1, upn1} & listed
    assert len(listed) == 2


async def test_the_snapshot_settles_each_update_against_its_own_rows(
    store: GatewayStore, db: Backend
) -> None:
    """The owner persists updates its memory has already applied (the feed reads ahead):
    the snapshot settles each against its rows at that update's offset, not against
    memory, so a closure by one identifier still deletes every row of the case."""
    directory = await directory_of(store, db)
    updates = [
        allocate(A, N1, U1, "sw-1"),
        allocate(A, None, U1, "sw-2"),
        close(A, N1, None),
        allocate(A, N2, U2, "sw-3"),
    ]
    changes = [directory.change(u, ("sgx.allocations.la-a", 0, i)) for i, u in enumerate(updates)]
    for change in changes:
        directory.apply_in_memory(change)  # memory runs ahead of the owner
    for change in changes:  # the owner's batches, one update each
        async with write_transaction(store.engine) as conn:
            await directory.persist(conn, [change])
    async with write_transaction(store.engine) as conn:  # a replay is skipped
        await directory.persist(conn, changes[:3])
    await same_after_restart(store, db, directory)
    assert who(directory, None, U2) == {A: "sw-3"}
    assert who(directory, None, U1) == {}


async def test_the_owner_is_told_an_update_was_refused_whichever_instance_applied_it(
    store: GatewayStore, db: Backend
) -> None:
    """The feed (every instance) applies an update first; the partition's owner then
    judges it: it is told the update was refused (kept from when it was applied, or
    worked out again), and its snapshot write changes no row either."""
    directory = await directory_of(store, db)
    feed = AllocationFeed(
        directory=directory,
        opener=cast(Opener, None),
        contract=default_contract(),
        trust=TrustDirectory([]),
    )
    topic = "sgx.allocations.la-a"
    _, _, refused = feed.settle(Source(topic, 0, 0, 0, b""), allocate(A, N1, U1, "sw-1"), "m0")
    assert not refused
    conflicting = allocate(A, N2, U1, "sw-2")
    first = feed.settle(Source(topic, 0, 1, 0, b""), conflicting, "m1")  # the feed
    change, detail, refused = feed.settle(Source(topic, 0, 1, 0, b""), conflicting, "m1")
    assert (detail, refused) == first[1:]
    assert refused
    assert "two NHS numbers in one case" in detail
    feed._summaries.clear()  # no longer kept: worked out against the directory as it is
    assert feed.settle(Source(topic, 0, 1, 0, b""), conflicting, "m1")[1:] == (detail, True)
    async with write_transaction(store.engine) as conn:
        await directory.persist(conn, [directory.change(allocate(A, N1, U1, "sw-1")), change])
    assert who(directory, None, U1) == {A: "sw-1"}
    await same_after_restart(store, db, directory)


def test_the_rule_alone() -> None:
    """settle over a look-up: a closure reaches every key of the case, once (a second
    closure of it in the same update finds nothing open)."""
    (n1,) = named_keys(PSEUDONYMS, N1, None)
    (u1,) = named_keys(PSEUDONYMS, None, U1)
    cases = {n1: (n1, u1), u1: (n1, u1)}
    settled = settle([], [(n1,), (u1,), (named_keys(PSEUDONYMS, N2, None))], cases.get)
    assert settled.closed == tuple(sorted((n1, u1)))
    assert settled.held == (True, False, False)
    worker = Allocation("sw", "Sam", "T", "tm", "Tam")
    moved = settle([((u1,), worker)], [], cases.get)
    assert moved.cases == ((tuple(sorted((n1, u1))), worker),)
    assert moved.closed == ()


def test_snapshot_rows_in_any_order_rebuild_the_case() -> None:
    """load() reads rows in whatever order the database returns them: the anchor's (the
    key the case is named by) first, last or between, the case comes out whole."""
    worker = Allocation("sw", "Sam", "T", "tm", "Tam")
    keys = [*named_keys(PSEUDONYMS, N1, U1), *named_keys(PSEUDONYMS, None, U2)]
    anchor = from_db_key(case_id(keys) or "")
    for order in itertools.permutations(keys):
        index = AllocationIndex()
        for key in order:
            index.load(A, from_db_key(db_key(key)), worker, anchor)
        index.load(A, from_db_key(db_key(keys[0])) ^ 1, worker, None)  # a case of one
        for key in keys:
            assert sorted(index.case_of(A, key) or ()) == sorted(keys), order
        assert index.case_of(B, keys[0]) is None
        assert len(index) == 4


async def test_rows_written_before_gateway_0005_are_each_a_case_of_their_own(
    tmp_path: Path,
) -> None:
    """A snapshot of the previous release keyed a child's NHS number and UPN apart: after
    the upgrade each row is its own case, as it was applied (no pairing is invented)."""
    from alembic import command

    path = tmp_path / "gateway.db"
    engine = open_engine(None, path)
    nhs1, upn1 = PSEUDONYMS.identifier_keys(N1, U1)
    assert nhs1 is not None
    assert upn1 is not None
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda c: command.upgrade(migrate._config("gateway", c), "gateway_0004")
            )
            for key in ("n" + nhs1.hex(), "u" + upn1.hex()):
                await conn.execute(
                    text(
                        "INSERT INTO gateway_allocations VALUES "
                        "(:la, :key, 'sw-1', 'Sam', 'T', 'tm', 'Tam')"
                    ),
                    {"la": A, "key": key},
                )
        assert await migrate.upgrade(engine, "gateway") == ("gateway_0004", migrate.head("gateway"))
    finally:
        await engine.dispose()
    async with await GatewayStore.open(None, path, owner="gateway") as store:
        directory = AllocationDirectory(store.engine, PSEUDONYMS)
        await directory.load()
        assert who(directory, None, U1) == {A: "sw-1"}
        await directory.apply(close(A, N1, None))
        assert who(directory, None, U1) == {A: "sw-1"}, "not linked: closed as it was opened"
