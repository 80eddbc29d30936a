"""The schools' open-case lists through the broker (gateway.open_case_sender): a backlog of
an LA's allocation updates gives its schools one list, the newest, not one per update; and
a gateway that dies before the lists went loses nothing, because the LA's allocation
partition was not committed while they waited: the next start judges the updates again
and sends them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from gateway import service as gateway_service
from gateway.open_case_sender import OpenCaseSender
from producers.open_cases import OpenCaseListener, OpenCaseStore, pupil_keys
from safeguard import samples
from safeguard.parties import LA, SCHOOL
from safeguard.runtime import publisher
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import TransportError
from sgx.kafka.wiring import GATEWAY_GROUP, allocations_topic, run_batches, start_consumer
from sgx.wire.envelope import Opener
from tests.integration.harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.broker

CHILDREN = [samples.child(make_nhs_number(70 + i), make_upn(70 + i)) for i in range(3)]
PARTITION = TopicPartition(allocations_topic(LA), 0)


async def _three_updates_while_down(ex: Exchange) -> None:
    """Each opens one more child: the third leaves all three open."""
    await ex.stop("gateway")
    ex.gateway_metrics = CollectorRegistry()  # a new process has new counters
    async with publisher(ex.rt, LA) as la:
        for upto in (1, 2, 3):
            entries = [
                (k["nhs_number"], k["upn"], "sw-amara", "T1", "tm-jones") for k in CHILDREN[:upto]
            ]
            await la.publish_allocations(samples.allocation_update(entries))


def _one_record_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway judges one record a batch: the backlog is three batches, not one."""

    async def one_at_a_time(*args: Any, **kwargs: Any) -> None:
        kwargs["max_records"] = 1
        await run_batches(*args, **kwargs)

    monkeypatch.setattr(gateway_service, "run_batches", one_at_a_time)


async def _committed(ex: Exchange) -> int | None:
    consumer = await start_consumer(ex.rt.kafka, [], group_id=GATEWAY_GROUP)
    try:
        offset: int | None = await consumer.committed(PARTITION)
        return offset
    finally:
        await consumer.stop()


async def _lists_read(ex: Exchange, store: OpenCaseStore) -> int:
    trust = ex.rt.trust()
    listener = OpenCaseListener(
        school_id=SCHOOL,
        opener=Opener(ex.rt.identity(SCHOOL, trust), trust),
        contract=ex.rt.contract(),
        store=store,
    )
    return await listener.catch_up(ex.rt.kafka)


def _round(ex: Exchange) -> int:
    """The lists in one round of Camden's: one to each school serving it (two)."""
    return len(ex.rt.trust().serving(LA, "school"))


def _lists_sent(ex: Exchange) -> float:
    return ex.gateway_metrics.get_sample_value("sgx_gateway_open_case_lists_total") or 0.0


def _all_open(ex: Exchange) -> set[bytes]:
    pseudonyms = ex.rt.pseudonyms()
    return {key for k in CHILDREN for key in pupil_keys(pseudonyms, k["nhs_number"], k["upn"])}


async def test_a_backlog_of_updates_gives_the_schools_one_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        running_exchange(tmp_path / "x", consumer=False) as ex,
        await OpenCaseStore.open(None, tmp_path / "cases.db", owner="school-test") as cases,
    ):
        await _three_updates_while_down(ex)
        _one_record_a_batch(monkeypatch)
        await ex.start_gateway()
        await eventually(lambda: _lists_sent(ex) == _round(ex), "one round of lists sent")
        assert await _lists_read(ex, cases) == 1  # one list: before, one per update judged
        assert (await cases.current()).keys == _all_open(ex)  # the newest
        await ex.stop("gateway")  # a clean stop commits what it sent
        assert await _committed(ex) == 3


async def test_a_gateway_that_dies_before_the_lists_went_sends_them_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    send = OpenCaseSender.send

    async def dies(self: OpenCaseSender, las: Any) -> Any:
        raise TransportError("the process died before the lists went")

    async with (
        running_exchange(tmp_path / "x", consumer=False) as ex,
        await OpenCaseStore.open(None, tmp_path / "cases.db", owner="school-test") as cases,
    ):
        await _three_updates_while_down(ex)
        _one_record_a_batch(monkeypatch)
        monkeypatch.setattr(OpenCaseSender, "send", dies)
        await ex.start_gateway()
        with pytest.raises(TransportError, match="before the lists went"):
            await ex.ended("gateway")
        assert await _committed(ex) is None  # but the partition held: nothing committed
        assert await _lists_read(ex, cases) == 0

        monkeypatch.setattr(OpenCaseSender, "send", send)
        ex.gateway_metrics = CollectorRegistry()
        await ex.start_gateway()
        await eventually(lambda: _lists_sent(ex) == _round(ex), "one round of lists sent")
        assert ex.gateway_count("allocation_update", "applied") == 3  # judged again
        assert await _lists_read(ex, cases) == 1
        assert (await cases.current()).keys == _all_open(ex)
        await ex.stop("gateway")
        assert await _committed(ex) == 3
