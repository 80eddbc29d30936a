"""benchmarks.national: the national partnership it builds, its morning, and its lag."""

from __future__ import annotations

import argparse
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.national import (
    FIRST_FORCE_LAS,
    build,
    lag_verdict,
    morning,
    record,
)
from benchmarks.national import allocation_updates as updates_of
from benchmarks.national_topics import measure
from benchmarks.partnership import agreement_text
from gateway.allocations import AllocationDirectory
from gateway.partnership import Partnership
from gateway.routing import Router
from gateway.store import GatewayStore
from sgx.keys.key_admin import init_trust
from sgx.keys.pseudonym import Pseudonymiser
from sgx.wire.contract import default_contract


def test_the_full_size_partnership_has_every_la_covered_by_one_force() -> None:
    national = build()
    assert len(national.las) == 152
    assert len(national.serves) == 25_000
    assert sum(national.quota) == 1_000_000
    forces = [national.serves[f] for f in national.by_kind["police"]]
    assert len(forces[0]) == FIRST_FORCE_LAS
    covered = Counter(la for area in forces for la in area)
    assert set(covered) == set(national.las)
    assert set(covered.values()) == {1}  # each LA in exactly one force area


def test_every_allocated_child_is_distinct_and_transfers_repeat_the_la_before() -> None:
    national = build(las=6, schools=20, trusts=3, forces=2, allocations=6_000)
    seen: Counter[tuple[str | None, str | None]] = Counter()
    by_la: Counter[str] = Counter()
    for la, update in updates_of(national):
        for entry in update["allocations"]:
            seen[entry["nhs_number"], entry["upn"]] += 1
            by_la[la] += 1
    assert sum(by_la.values()) == 6_000
    assert set(by_la.values()) == {1_000}
    twice = [child for child, n in seen.items() if n == 2]
    assert len(twice) == 6 * 20  # each LA's transfers in, open to two LAs
    assert all(nhs is not None for nhs, _ in twice)
    assert max(seen.values()) == 2


def test_too_many_allocations_for_the_test_number_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="allocations must be"):
        build(allocations=1_000_001)


async def test_the_gateway_routes_the_morning_as_the_plan_expects(tmp_path: Path) -> None:
    national = build(las=8, schools=40, trusts=4, forces=3, allocations=8_000)
    trust = init_trust(tmp_path / "trust", national.parties)
    defaults = {agency: las[:1] for agency, las in national.serves.items()}
    data = tomllib.loads(agreement_text(defaults))
    partnership = Partnership.from_mapping(data, default_contract(), trust, source="bench")
    pseudonyms = Pseudonymiser.load(tmp_path / "trust")
    items = morning(national, 600)
    assert {i.route for i in items} == {"allocated", "two LAs", "residence", "default LA"}
    assert {i.kind for i in items} == {"school", "health", "police"}
    async with await GatewayStore.open(None, tmp_path / "gateway.db", owner="gateway") as store:
        directory = AllocationDirectory(store.engine, pseudonyms)
        await directory.load()
        for _, update in updates_of(national):
            await directory.apply(update)
        router = Router(directory, trust, partnership)
        names = {p.id: p.name for p in national.parties}
        for item in items:
            child = record(item, names)["child"]
            nhs_key, upn_key = pseudonyms.identifier_keys(child["nhs_number"], child["upn"])
            routes = router.routes(item.sender, nhs_key, upn_key, item.residence)
            assert sorted(r.la for r in routes) == sorted(item.reaches), item


def test_lag_that_climbs_through_the_morning_is_called_growing() -> None:
    steady = lag_verdict([5, 80, 90, 85, 95, 88, 92, 90])
    assert not steady["grows"]
    growing = lag_verdict([5, 100, 200, 300, 400, 500, 600, 700])
    assert growing["grows"]
    assert growing["at_end"] == 700


def test_agencies_are_carried_by_connectors_of_their_kind_but_the_own_few(tmp_path: Path) -> None:
    national = build(las=8, schools=300, trusts=12, forces=3, allocations=8_000,
                     connectors=20, own=10)  # fmt: skip
    assert len(national.connectors) == 20
    carried = Counter(a for conn in national.connectors for a in conn.carries)
    assert set(carried.values()) == {1}  # each carried by one connector
    assert len(national.serves) - len(carried) == 10
    kinds = {p.id: p.kind for p in national.parties}
    for conn in national.connectors:
        assert len({kinds[a] for a in conn.carries}) == 1, conn.id  # one kind each
        assert conn.carries  # and none empty
    by_kind = Counter(conn.id.split("-")[1] for conn in national.connectors)
    assert by_kind["school"] > by_kind["health"] >= by_kind["police"] >= 1
    # the trust directory takes them: its inbound topics are the connectors, the own
    # agencies and the LAs
    trust = init_trust(tmp_path / "trust", national.parties, national.connectors)
    assert len(trust.inbound_connectors()) == 20 + 10 + 8


def test_too_many_connectors_for_the_agencies_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot share"):
        build(las=4, schools=5, trusts=1, forces=1, allocations=4_000, connectors=7, own=1)


def test_connectors_cut_the_topics_both_ways() -> None:
    args = argparse.Namespace(las=6, schools=60, trusts=6, forces=2, connectors=5, own=3,
                              inbound_partitions=3)  # fmt: skip
    figures = measure(args)
    with_connectors, before = figures["with_connectors"], figures["every_agency_its_own"]
    assert with_connectors["inbound_topics"] == 5 + 3 + 6  # connectors, own agencies, LAs
    assert before["inbound_topics"] == 68 + 6
    # the gateway reads the inbound (3 partitions each) and allocation topics, and replay
    assert with_connectors["gateway_group_partitions"] == 14 * 3 + 6 + 1
    # both ways: the schema registry and replay; each LA's inbound, receipts, allocations
    # and delivery topics; each of the 3 schools of its own its inbound, receipts and
    # delivery; each connector its inbound and receipts, and a delivery topic where it
    # carries schools or forces (4 of the 5: not the health bodies')
    assert with_connectors["topics"] == 2 + 6 * 4 + 3 * 3 + 5 * 2 + 4
    # before connectors: every agency its inbound and receipts, every school and force
    # its delivery topic
    assert before["topics"] == 2 + 6 * 4 + 68 * 2 + 60 + 2
    assert with_connectors["partitions"] == 2 + 6 * (3 + 1 + 1 + 3) + 3 * 7 + 5 * 6 + 4 * 3
