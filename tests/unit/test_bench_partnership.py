"""benchmarks.partnership: the partnership it builds, its notifications, and its report."""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from benchmarks.common import Result
from benchmarks.partnership import (
    ALLOCATIONS,
    BATCH,
    LAS,
    RECEIVERS,
    Plan,
    agreement_text,
    build_plan,
    gateway_ratios,
    notices,
    partnership_report,
    routing_line,
    rows,
    summary_line,
)
from benchmarks.pipeline import SingleLA, sample_value
from gateway.allocations import AllocationDirectory
from gateway.partnership import Partnership
from gateway.routing import Router
from gateway.store import GatewayStore
from safeguard import samples
from safeguard.parties import LA, SCHOOL
from sgx.errors import ConfigError
from sgx.keys.key_admin import init_trust
from sgx.keys.pseudonym import Pseudonymiser
from sgx.keys.trust import TrustDirectory
from sgx.wire.contract import default_contract


def _agencies(plan: Plan) -> list[str]:
    return [p.id for p in plan.parties if p.kind not in ("gateway", "local_authority")]


def _partnership(plan: Plan, trust: TrustDirectory, text: str) -> Partnership:
    data = tomllib.loads(text)
    return Partnership.from_mapping(data, default_contract(), trust, source="bench")


def test_twenty_las_with_gss_codes_and_agencies_serving_several() -> None:
    plan = build_plan()
    las = [p for p in plan.parties if p.kind == "local_authority"]
    assert len(las) == LAS == 20
    assert [p.gss_code for p in las] == [f"E090000{n:02d}" for n in range(1, 21)]
    agencies = [p for p in plan.parties if p.id in _agencies(plan)]
    assert {p.kind for p in agencies} == {"school", "health", "police"}
    assert all(len(p.serves) > 1 for p in agencies)
    sender = next(p for p in agencies if p.id == plan.sender)
    assert sender.kind == "school"
    assert plan.receivers == sender.serves
    assert len(plan.receivers) == RECEIVERS
    assert build_plan() is plan  # built once per process


def test_a_hundred_thousand_allocations_spread_in_batches() -> None:
    plan = build_plan()
    assert sum(len(u.entries) for u in plan.updates) == ALLOCATIONS == 100_000
    assert all(0 < len(u.entries) <= BATCH for u in plan.updates)
    per_la: Counter[str] = Counter()
    for update in plan.updates:
        per_la[update.la] += len(update.entries)
    assert set(per_la.values()) == {ALLOCATIONS // LAS}
    # Each transferred child is allocated by its first LA and transferred in by another.
    gss = {p.id: p.gss_code for p in plan.parties}
    by_la = {(u.la, e[0]): u.transfer_from for u in plan.updates for e in u.entries}
    for nhs, origin, to in plan.transfers:
        assert origin != to
        assert {origin, to} <= set(plan.receivers)
        assert by_la[origin, nhs] is None
        assert by_la[to, nhs] == gss[origin]
    moved = {nhs for nhs, _, _ in plan.transfers}
    for la, children in plan.held.items():
        assert all(by_la.get((la, nhs), "absent") is None for nhs in children)
        assert not moved & set(children)


def test_default_las_name_every_agency_and_satisfy_the_gateway(tmp_path: Path) -> None:
    plan = build_plan()
    trust = init_trust(tmp_path / "trust", plan.parties)
    text = agreement_text(plan.default_las)
    partnership = _partnership(plan, trust, text)
    for agency in _agencies(plan):
        assert partnership.defaults(agency) == plan.default_las[agency]
        assert set(plan.default_las[agency]) <= set(trust.served(agency))
    # The repository's partnership-wide agreement, without Islington's own entries.
    data = tomllib.loads(text)
    assert "authorities" not in data
    assert data["senders"]["school"] == ["attendance_update", "referral"]
    with pytest.raises(ConfigError, match="serves"):
        _partnership(plan, trust, agreement_text({}))


def test_the_notifications_exercise_every_route_at_two_rows_each() -> None:
    plan = build_plan()
    chosen = notices(plan, 20_000)
    kinds = Counter(n.kind for n in chosen)
    assert kinds == {"allocated": 17_000, "two LAs": 1_000, "residence": 1_000, "default LA": 1_000}
    expected = rows(plan, 20_000)
    assert sum(expected.values()) == 40_000  # as the single-LA pipeline: 2 rows each
    assert set(expected) == set(plan.receivers)
    allocated = {e[0] for u in plan.updates for e in u.entries}
    for notice in chosen:
        if notice.kind in ("residence", "default LA"):
            assert notice.nhs_number not in allocated
        else:
            assert notice.residence is None
    residences = {n.residence for n in chosen if n.kind == "default LA"}
    assert residences == {None, "E09000033"}  # not stated, and outside the partnership


def test_one_la_control_sends_every_child_to_one_la() -> None:
    plan = build_plan()
    chosen = notices(plan, 1_000, one_la=True)
    assert {n.kind for n in chosen} == {"allocated"}
    assert rows(plan, 1_000, one_la=True) == {plan.receivers[0]: 2_000}


async def test_the_gateway_routes_each_notification_as_the_plan_expects(tmp_path: Path) -> None:
    plan = build_plan(allocations=10_000, batch=1_000)
    trust = init_trust(tmp_path / "trust", plan.parties)
    partnership = _partnership(plan, trust, agreement_text(plan.default_las))
    pseudonyms = Pseudonymiser.load(tmp_path / "trust")
    async with await GatewayStore.open(None, tmp_path / "gateway.db", owner="gateway") as store:
        directory = AllocationDirectory(store.engine, pseudonyms)
        await directory.load()
        for u in plan.updates:
            await directory.apply(
                samples.allocation_update(u.entries, la=u.la, transfer_from=u.transfer_from)
            )
        router = Router(directory, trust, partnership)
        for notice in notices(plan, 400):
            nhs_key, upn_key = pseudonyms.identifier_keys(notice.nhs_number, None)
            routes = router.routes(plan.sender, nhs_key, upn_key, notice.residence)
            assert {r.la: len(r.recipients) for r in routes} == notice.rows, notice


def test_the_single_la_pipeline_still_routes_within_camden() -> None:
    flow = SingleLA()
    school = next(p for p in flow.parties if p.id == flow.sender)
    assert flow.sender == SCHOOL
    assert school.serves == (LA,)
    assert flow.receivers == (LA,)
    assert flow.rows(10) == {LA: 20}
    assert [la for la, _ in flow.allocation_updates()] == [LA]


def test_sample_value_reads_one_metric() -> None:
    registry = CollectorRegistry()
    counter = PromCounter("things", "Things.", ["kind"], registry=registry)
    counter.labels(kind="a").inc(3)
    assert sample_value(registry, "things_total", {"kind": "a"}) == 3
    assert sample_value(registry, "things_total", {"kind": "b"}) == 0


def _result(name: str, per_second: float, gateway: float) -> Result:
    cpu = {"gateway": gateway, "producer": 60.0, "consumer": 100.0, "broker": 30.0}
    cpu["total"] = sum(cpu.values())
    extra = {"cpu_us_per_message": cpu, "gateway_gc_us_per_message": 4.0,
             "gateway_idle_cpu_ms_per_s": 80.0}  # fmt: skip
    return Result(name, 100, 1.0, per_second, extra=extra)


def test_the_report_puts_the_two_side_by_side_with_the_verdict() -> None:
    single, many = _result("single", 3_000, 200.0), _result("many", 2_700, 215.0)
    report = partnership_report(single, many)
    gateway = next(line for line in report.splitlines() if line.startswith("gateway CPU µs"))
    assert gateway.split()[-3:] == ["200.0", "215.0", "1.07"]
    assert "notifications/s" in report
    assert "0.90" in report
    assert report.splitlines()[-1] == routing_line(200.0, 215.0)
    assert "1.07 (+7%; within the +10% target)" in routing_line(200.0, 215.0)
    assert "MISSES" in routing_line(200.0, 221.0)


def test_the_summary_takes_the_median_of_interleaved_pairs() -> None:
    singles = [_result("single", 3_000, us) for us in (200.0, 210.0, 220.0)]
    many = [_result("many", 2_700, us) for us in (240.0, 210.0, 231.0)]
    assert gateway_ratios(singles, many) == pytest.approx([1.2, 1.0, 1.05])
    line = summary_line(singles, many)
    assert "median of 3 interleaved pairs: 1.05 (pairs 1.00, 1.05, 1.20)" in line
    assert line.endswith("within the +10% target")


def test_too_few_allocations_for_the_transfers_are_refused() -> None:
    with pytest.raises(ValueError, match="allocations per LA"):
        build_plan(allocations=20 * 200)
