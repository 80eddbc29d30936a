"""benchmarks.batch_cost: the gateway's and the consumer's cost per batch, in one process."""

from __future__ import annotations

from benchmarks import batch_cost


async def test_both_stages_are_measured_at_the_batch_size() -> None:
    # (measure checks that every notification was delivered and queued for both addressees)
    costs = await batch_cost.measure(batch=3, notifications=12)
    assert [(c.stage, c.batch) for c in costs] == [("gateway", 3), ("consumer", 3)]
    assert all(c.us_per_notification > 0 and c.ms_per_batch > 0 for c in costs)
    table = batch_cost.report(costs).splitlines()
    assert table[1].split()[:2] == ["gateway", "3"]
    assert table[2].split()[:2] == ["consumer", "3"]
