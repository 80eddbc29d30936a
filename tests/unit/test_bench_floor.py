"""benchmarks.floor and the budget line benchmarks.run prints beside it."""

from __future__ import annotations

from benchmarks import floor
from benchmarks.common import Result
from benchmarks.run import budget_line


async def test_floor_measures_every_stage_of_one_notification() -> None:
    steps = await floor.measure(20)
    assert {stage for stage, _, _ in steps} == {"producer", "gateway", "consumer"}
    assert all(us > 0 for _, _, us in steps)
    assert floor.total(steps) == sum(us for _, _, us in steps)
    table = floor.report(steps)
    assert f"{floor.total(steps):7.1f}" in table.splitlines()[-1]
    assert len(table.splitlines()) == len(steps) + 3  # header, steps, fastavro, total


def test_budget_line_divides_the_raw_cost_by_the_target() -> None:
    raw = Result("raw", 10, 1.0, 10.0, extra={"cpu_us_per_message": {"total": 60.0}})
    pipeline = Result("pipeline", 10, 1.0, 1.0, extra={"cpu_us_per_message": {"total": 400.0}})
    line = budget_line(raw, pipeline, 150.0)
    assert "leaves 150 µs" in line
    assert "raw chain: 60 µs" in line
    assert "spent 400 µs" in line
    assert "floor above is 150 µs" in line
