"""A gateway's first catch-up of the allocation topics, through the real broker: limited by
a stall, never by its length. A first start with a year of updates on a busy machine takes
minutes; a limit on the whole catch-up made such a gateway refuse to start, and start
again, and refuse again: an outage (seen as benchmark runs whose gateway never got ready
while the machine was loaded). A catch-up that reads nothing while behind still fails,
saying where each partition stands."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from gateway import allocation_feed
from gateway import service as gateway_service
from gateway.allocation_feed import AllocationFeed
from safeguard import samples
from safeguard.parties import LA, SCHOOL
from safeguard.runtime import publisher
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import TransportError
from sgx.kafka.wiring import allocations_topic
from sgx.wire import contract as c
from tests.integration.harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.broker

STALL_S = 0.3
SLOW_APPLY_S = 4 * STALL_S  # each batch of records read takes this long to apply
CHILDREN = [samples.child(make_nhs_number(60 + i), make_upn(60 + i)) for i in range(3)]


async def _backlog_while_down(ex: Exchange) -> None:
    """Three updates published while the gateway is down, each moving every child."""
    await ex.stop("gateway")
    ex.gateway_metrics = CollectorRegistry()  # a new process has new counters
    async with publisher(ex.rt, LA) as la:
        for worker in ("sw-amara", "sw-ben", "sw-chloe"):
            await la.publish_allocations(
                samples.allocation_update(
                    [(k["nhs_number"], k["upn"], worker, "T1", "tm-jones") for k in CHILDREN]
                )
            )


async def test_a_catch_up_longer_than_the_stall_limit_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(allocation_feed, "CATCH_UP_STALL_S", STALL_S)
    apply_all = AllocationFeed._apply_all
    spent: list[float] = []

    async def slow(
        self: AllocationFeed, fetched: Mapping[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        began = time.monotonic()
        if any(fetched.values()):
            await asyncio.sleep(SLOW_APPLY_S)  # a starved process: reading goes on, slowly
        await apply_all(self, fetched)
        spent.append(time.monotonic() - began)

    async with running_exchange(tmp_path) as ex:
        await _backlog_while_down(ex)
        monkeypatch.setattr(AllocationFeed, "_apply_all", slow)
        await ex.start_gateway()
        assert sum(spent) > STALL_S, "the catch-up did not outlast the limit: it proves nothing"
        monkeypatch.setattr(AllocationFeed, "_apply_all", apply_all)
        await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(CHILDREN[0]))
        await ex.wait_items("sw-chloe", 1)  # routed by the last update of the backlog
        assert await ex.queue("sw-amara") == []


async def test_a_catch_up_that_reads_nothing_while_behind_says_where_it_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An end the broker reports and never delivers (the embedded broker's end offsets
    are unreliable) is a TransportError naming the partition, its position and the end."""
    monkeypatch.setattr(allocation_feed, "CATCH_UP_STALL_S", STALL_S)
    behind = AllocationFeed._behind

    def one_more(self: AllocationFeed, tp: TopicPartition, end: int) -> bool:
        return behind(self, tp, end + 1)  # an end one record beyond what the topic holds

    async with running_exchange(tmp_path) as ex:
        await _backlog_while_down(ex)
        monkeypatch.setattr(AllocationFeed, "_behind", one_more)
        with pytest.raises(TransportError) as refused:
            await ex.start_gateway()
        said = str(refused.value)
        assert f"nothing read for {STALL_S:g}s while behind" in said
        assert f"{allocations_topic(LA)}:0 at " in said, said


def _sample(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name) or 0.0


async def test_an_instance_with_nothing_to_judge_still_reads_the_allocation_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two gateways share the group; an update lands on one allocation partition, which one
    of them owns and audits. The other has no batch at all (nothing inbound), yet its
    directory reads the update within the idle catch-up's interval: it caught up only before
    a batch, so an idle instance's directory stood still (a benchmark's second gateway
    waited for ever for the updates already on the broker) and its first batch after a
    quiet spell began with a catch-up of everything published meanwhile."""
    monkeypatch.setattr(gateway_service, "IDLE_CATCH_UP_S", 0.5)
    second = CollectorRegistry()
    async with running_exchange(tmp_path) as ex:
        await ex.start_gateway(name="gateway-2", registry=second)
        instances = (ex.gateway_metrics, second)

        def shared_out() -> bool:
            assigned = [_sample(r, "sgx_gateway_assigned_partitions") for r in instances]
            total = _sample(ex.gateway_metrics, "sgx_gateway_group_partitions")
            return all(assigned) and sum(assigned) == total

        await eventually(shared_out, "the group to share its partitions out to both")
        before = [_sample(r, "sgx_gateway_allocation_records_total") for r in instances]
        async with publisher(ex.rt, LA) as la:
            await la.publish_allocations(
                samples.allocation_update(
                    [(k["nhs_number"], k["upn"], "sw-amara", "T1", "tm-jones") for k in CHILDREN]
                )
            )

        def both_read_it() -> bool:
            now = [_sample(r, "sgx_gateway_allocation_records_total") for r in instances]
            return all(n > b for n, b in zip(now, before, strict=True))

        await eventually(both_read_it, "both instances' directories to read the update", 20)
        assert ex.gateway_count("allocation_update", "applied") + _sample_applied(second) == 1


def _sample_applied(registry: CollectorRegistry) -> float:
    """The owner of the update's partition audits it as applied; the other only reads it."""
    return (
        registry.get_sample_value(
            "sgx_gateway_notifications_total", {"type": "allocation_update", "outcome": "applied"}
        )
        or 0.0
    )
