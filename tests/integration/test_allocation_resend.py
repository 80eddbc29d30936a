"""A resent allocation update is applied by no gateway instance, before a restart or
after one, through the real broker: an LA's system that sends an old update again (the
same envelope, the same message id) must not move a child back to the worker it had.

After a restart the gateway no longer holds every update id it ever applied in memory
(that grew with history, issue 20): it asks its store where each id was first applied.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete
from prometheus_client import CollectorRegistry

from safeguard import samples
from safeguard.parties import LA, SCHOOL
from safeguard.runtime import publisher
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import ConfigError
from sgx.kafka.wiring import admin_client, allocations_topic, read_topic, start_producer
from sgx.wire import contract as c
from tests.integration.harness import Exchange, running_exchange

pytestmark = pytest.mark.broker

MAYA = samples.child(make_nhs_number(31), make_upn(31), given="Maya", family="Resend")
TO_AMARA = samples.allocation_update(
    [(MAYA["nhs_number"], MAYA["upn"], "sw-amara", "T1", "tm-jones")]
)
TO_BEN = samples.allocation_update([(MAYA["nhs_number"], MAYA["upn"], "sw-ben", "T2", "tm-lee")])


async def _resend(ex: Exchange, value: bytes) -> None:
    producer = await start_producer(ex.rt.kafka)
    try:
        await producer.send_and_wait(allocations_topic(LA), value)
    finally:
        await producer.stop()


async def _delivered_to_ben(ex: Exchange, count: int) -> None:
    """A notification about Maya, routed after the gateway has read the allocation topics
    to their end (it does so before every batch): it reaches whoever holds her now."""
    await ex.publish(SCHOOL, c.ATTENDANCE_UPDATE, samples.attendance_update(MAYA))
    await ex.wait_items("sw-ben", count)
    assert await ex.queue("sw-amara") == [], "the resent update moved Maya back"


async def test_a_resent_allocation_update_is_applied_by_no_instance(tmp_path: Path) -> None:
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(TO_AMARA)
        (first,) = [r.value for r in await read_topic(ex.rt.kafka, allocations_topic(LA))]
        await ex.allocate(TO_BEN)
        await _resend(ex, first)
        await _delivered_to_ben(ex, 1)

        await ex.stop("gateway")  # its memory of applied updates goes with it
        ex.gateway_metrics = CollectorRegistry()  # a new process has new counters
        await ex.start_gateway()
        await _resend(ex, first)
        await _delivered_to_ben(ex, 2)
        records = await read_topic(ex.rt.kafka, allocations_topic(LA))
        assert [r.value for r in records].count(first) == 3, "sent once, resent twice"


async def test_a_gateway_refuses_to_start_when_updates_it_has_not_applied_are_gone(
    tmp_path: Path,
) -> None:
    """An allocation topic is kept for ever. If records the snapshot has not applied are
    deleted (a retention set by mistake), a starting gateway says so and stops: reading on
    from what is left would route by a directory missing a closure or a transfer. (Found on
    Apache Kafka: it waited for the missing records for ever.)"""
    async with running_exchange(tmp_path) as ex:
        await ex.allocate(TO_AMARA)
        await ex.stop("gateway")
        async with publisher(ex.rt, LA) as la:  # while the gateway is down
            await la.publish_allocations(TO_BEN)
        topic = TopicPartition(allocations_topic(LA), 0)
        async with admin_client(ex.rt.kafka) as admin:
            await admin.delete_records({topic: RecordsToDelete(before_offset=-1)})
        with pytest.raises(ConfigError, match="allocation updates the directory has not applied"):
            await ex.start_gateway()
