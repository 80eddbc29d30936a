"""What the gateway sends agencies behind a connector, through a real broker (issue 23).

The demo's connector ``mis-north-london`` carries Gospel Oak (Camden) and Highbury Fields
(Islington); Hillside is its own connector. Everything the gateway sends a carried school
(receipts, open-case lists, its key adult's deliveries) goes on the connector's topics,
keyed by and naming the school, sealed for the school; each school reads its own and
skips the other's; Hillside keeps its own topics.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from producers.open_cases import OpenCaseListener, OpenCaseStore
from safeguard import samples
from safeguard.outbox_wiring import open_outbox_store, receipt_recorder, running_outbox
from safeguard.parties import (
    CONNECTED_SCHOOL,
    CONNECTOR,
    OTHER_CONNECTED_SCHOOL,
    POLICE,
    SCHOOL,
)
from safeguard.runtime import Runtime
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import WrongRecipient
from sgx.kafka.outbound import agency_headers, named_agency, receipts_topic_of
from sgx.kafka.wiring import kafka_errors, list_topics, read_topic, start_producer
from sgx.wire import contract as c
from sgx.wire.envelope import Opener, Purpose, Sealer, peek, unpack
from sgx.wire.ids import new_id
from tests.integration.harness import Exchange, eventually, running_exchange

pytestmark = pytest.mark.broker

GOSPEL, HIGHBURY = CONNECTED_SCHOOL, OTHER_CONNECTED_SCHOOL
CHILD = samples.child(make_nhs_number(811), make_upn(811), given="Amira", family="Outbound")
ALLOCATE = samples.allocation_update(
    [(CHILD["nhs_number"], CHILD["upn"], "sw-amara", "Assessment Team 1", "tm-jones")]
)


def _encompass(school: str) -> dict[str, Any]:
    """A police domestic-abuse notification about the child, naming ``school``."""
    record = samples.police_notification(CHILD)
    record["police"]["incident"]["school_id"] = school
    return record


def _attendance(school: str, n: int) -> dict[str, Any]:
    child = samples.child(make_nhs_number(820 + n), make_upn(820 + n), given="Bo", family="Out")
    record = samples.attendance_update(child)
    return samples.from_agency(record, school, samples.AGENCY_NAMES[school])


async def _publish_as_gateway(rt: Runtime, topic: str, value: bytes, agency: str) -> None:
    """One raw record on ``topic``, keyed by and naming ``agency``, as the gateway writes."""
    producer = await start_producer(rt.kafka)
    try:
        async with kafka_errors("publish a raw record"):
            await producer.send_and_wait(
                topic, value, key=agency.encode(), headers=agency_headers(agency)
            )
    finally:
        await producer.stop()


async def _key_adult(ex: Exchange, school: str) -> list[str]:
    return [v.item.notification_id for v in await ex.queue(f"key-adult:{school}", party=school)]


async def test_schools_behind_one_connector_get_their_own_deliveries_and_receipts_only(
    tmp_path: Path,
) -> None:
    async with running_exchange(tmp_path) as ex:
        rt = ex.rt
        for school in (GOSPEL, HIGHBURY, SCHOOL):
            await ex.start_consumer(party=school)
        topics = set(await list_topics(rt.kafka))
        # the connector's outbound topics, none of its schools' own; Hillside keeps its own
        assert {f"sgx.receipts.{CONNECTOR}", f"sgx.delivery.{CONNECTOR}"} <= topics
        for school in (GOSPEL, HIGHBURY):
            assert not {f"sgx.receipts.{school}", f"sgx.delivery.{school}"} & topics
        assert {f"sgx.receipts.{SCHOOL}", f"sgx.delivery.{SCHOOL}"} <= topics

        await ex.allocate(ALLOCATE)
        sent = {s: await ex.publish(POLICE, c.POLICE_NOTIFICATION, _encompass(s)) for s in
                (GOSPEL, HIGHBURY, SCHOOL)}  # fmt: skip
        for school in (GOSPEL, HIGHBURY, SCHOOL):
            (adult,) = await ex.wait_items(f"key-adult:{school}", 1, party=school)
            assert adult.item.notification_id == str(sent[school])
        await ex.wait_items("sw-amara", 3)  # every incident judged and published
        for school in (GOSPEL, HIGHBURY, SCHOOL):  # and never another school's
            assert await _key_adult(ex, school) == [str(sent[school])]
            assert await ex.queue_rows(party=school) == 1

        # on the connector's delivery topic: keyed by and naming each school, sealed for it
        shared = await read_topic(rt.kafka, f"sgx.delivery.{CONNECTOR}")
        assert sorted(named_agency(r) or "" for r in shared) == sorted([GOSPEL, HIGHBURY])
        trust = rt.trust()
        for record in shared:
            named = named_agency(record)
            assert named is not None
            assert record.key == named.encode()
            (envelope,) = unpack(record.value or b"")
            claims = peek(envelope)
            assert claims is not None
            assert claims.recipient == named
            stranger = HIGHBURY if named == GOSPEL else GOSPEL
            with pytest.raises(WrongRecipient):  # the other school cannot open it
                Opener(rt.identity(stranger, trust), trust).open(envelope)
        (own,) = await read_topic(rt.kafka, f"sgx.delivery.{SCHOOL}")
        assert named_agency(own) is None  # a school of its own: as before connectors

        # receipts: both schools' outboxes in one connector process, each hears its own
        settings = rt.exchange.model_copy(update={"connector": CONNECTOR})  # SGX_CONNECTOR
        through = dataclasses.replace(rt, exchange=settings)
        async with (
            running_outbox(through, GOSPEL) as one,
            running_outbox(through, HIGHBURY) as other,
        ):
            mine = await one.add(c.ATTENDANCE_UPDATE, _attendance(GOSPEL, 1))
            theirs = await other.add(c.ATTENDANCE_UPDATE, _attendance(HIGHBURY, 2))

            async def receipted() -> bool:
                entries = [*await one.store.entries(GOSPEL), *await other.store.entries(HIGHBURY)]
                return all(e.receipt_outcome == "DELIVERED" for e in entries)

            await eventually(receipted, "both schools' receipts")
            assert [e.message_id for e in await one.store.entries(GOSPEL)] == [mine]
            assert [e.message_id for e in await other.store.entries(HIGHBURY)] == [theirs]
            # the other school's receipts were skipped, not quarantined
            assert await one.store.quarantine_list(GOSPEL) == []
            assert await other.store.quarantine_list(HIGHBURY) == []
        receipts = await read_topic(rt.kafka, f"sgx.receipts.{CONNECTOR}")
        assert {named_agency(r) for r in receipts} >= {GOSPEL, HIGHBURY}
        assert all(r.key == str(named_agency(r)).encode() for r in receipts)


async def test_a_record_naming_the_school_that_it_cannot_open_is_quarantined(
    tmp_path: Path,
) -> None:
    """A record on the connector's topic naming Gospel Oak but sealed for Highbury Fields:
    Gospel Oak keeps it in quarantine (wrong_recipient), Highbury Fields skips it."""
    async with running_exchange(tmp_path, consumer=False) as ex:
        rt = ex.rt
        trust = rt.trust()
        sealer = Sealer(rt.identity("gateway", trust), trust, HIGHBURY)
        batch = rt.contract().encode(c.RECEIPT_BATCH, {"receipts": []})
        value = sealer.seal(Purpose.RECEIPTS, new_id(), batch)
        topic = receipts_topic_of(trust, GOSPEL)
        assert topic == f"sgx.receipts.{CONNECTOR}"
        await _publish_as_gateway(rt, topic, value, GOSPEL)
        kept = {}
        for school in (GOSPEL, HIGHBURY):
            async with await open_outbox_store(rt, school) as store:
                recorder = receipt_recorder(rt, store, rt.identity(school, trust), trust,
                                            rt.contract())  # fmt: skip
                assert recorder.topic == topic
                await recorder.record(await read_topic(rt.kafka, topic))
                kept[school] = [q.reason for q in await store.quarantine_list(school)]
        assert kept == {GOSPEL: ["wrong_recipient"], HIGHBURY: []}


async def test_open_case_lists_reach_each_connected_school_alone(tmp_path: Path) -> None:
    async with (
        running_exchange(tmp_path / "x", consumer=False) as ex,
        await OpenCaseStore.open(None, tmp_path / "gospel.db", owner="t") as gospel_cases,
        await OpenCaseStore.open(None, tmp_path / "highbury.db", owner="t") as highbury_cases,
    ):
        rt = ex.rt
        trust = rt.trust()

        def listener(school: str, store: OpenCaseStore) -> OpenCaseListener:
            return OpenCaseListener(
                school_id=school,
                opener=Opener(rt.identity(school, trust), trust),
                contract=rt.contract(),
                store=store,
                topic=receipts_topic_of(trust, school),
            )

        await ex.allocate(ALLOCATE)  # Camden's: Gospel Oak serves Camden, Highbury does not

        async def listed() -> bool:
            return any(
                named_agency(r) == GOSPEL
                for r in await read_topic(rt.kafka, f"sgx.receipts.{CONNECTOR}")
            )

        await eventually(listed, "Gospel Oak's open-case list")
        assert await listener(GOSPEL, gospel_cases).catch_up(rt.kafka) == 1
        assert await listener(HIGHBURY, highbury_cases).catch_up(rt.kafka) == 0
        assert (await gospel_cases.current()).keys
        assert (await highbury_cases.current()).issued_at is None
