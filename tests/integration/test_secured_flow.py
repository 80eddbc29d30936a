"""The whole flow through the broker production runs, every party as itself: Apache Kafka
with SASL_SSL (SCRAM-SHA-512 over TLS), the StandardAuthorizer, deny by default, and the
topics, principals and ACLs of deploy/'s plan applied by the operators' own script
(``scripts/ensure-kafka.sh``, ``tests/kafka_broker.py``).

The gateway connects as ``sgx-gateway``, each LA's consumer as ``sgx-consumer-<la>``, each
agency (an LA publishing allocations or asking consent included) as itself: nobody holds
more than the plan grants it. Allocations from both LAs, a school's notification through
its outbox with the receipt back, a trust's and a force's notifications, and a consent
asked of the school and answered all work; and a school reaching beyond its grant is
refused, by the broker and then by the exchange in words.

The plan's topics outlive the session: before the flow, every record earlier runs left in
them is deleted (the topics, their configuration and the ACLs stay), but in the
allocation topics, which are kept for ever, and the compacted schema registry: what
earlier runs wrote there was sealed or signed under keys this run's trust directory does
not hold, so it is skipped or not learned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import RecordsToDelete

from deploy.acl_plan import PARTIES_FILE, load_partnership, plan
from producers.consent_requests import ConsentRequests
from safeguard import samples
from safeguard.outbox_wiring import running_outbox
from safeguard.parties import (
    CONNECTED_SCHOOL,
    CONNECTOR,
    DEMO_CONNECTORS,
    DEMO_PARTIES,
    HEALTH,
    LA,
    OTHER_LA,
    OTHER_SCHOOL,
    POLICE,
    SCHOOL,
)
from safeguard.runtime import Runtime, publisher
from safeguard.sharing import ask_consent, consent_outcomes
from sgx.domain.identifiers import make_nhs_number, make_upn
from sgx.errors import BrokerRefused
from sgx.kafka.wiring import (
    ALLOCATIONS_PREFIX,
    GATEWAY_GROUP,
    admin_client,
    delivery_topic,
    inbound_topic,
    run_batches,
    start_consumer,
)
from sgx.keys.key_admin import init_trust
from sgx.settings import KafkaSettings
from sgx.wire import contract as c
from tests.integration.harness import Exchange, eventually, make_runtime
from tests.integration.test_author_consent import asked_of
from tests.kafka_broker import ApacheKafka

pytestmark = pytest.mark.broker

AMIRA = samples.child(make_nhs_number(51), make_upn(51), given="Amira", family="Zephyrine")
LEO = samples.child(make_nhs_number(52), None, given="Leopold", family="Quixotic")


async def emptied_plan_topics(kafka: ApacheKafka) -> None:
    """Delete every record the plan's topics hold, but the allocation topics' (kept for
    ever: a gateway refuses a directory with updates missing, and earlier runs' updates,
    sealed under keys this run does not know, are skipped) and the compacted registry's."""
    topics = [
        t
        for t in plan(*load_partnership(PARTIES_FILE)).topics
        if not t.compacted and not t.name.startswith(ALLOCATIONS_PREFIX)
    ]
    every = {
        TopicPartition(t.name, p): RecordsToDelete(before_offset=-1)  # to the high watermark
        for t in topics
        for p in range(t.partitions)
    }
    async with admin_client(kafka.plaintext_settings()) as admin:
        await admin.delete_records(every, timeout_ms=30_000)


@asynccontextmanager
async def secured_exchange(home: Path, kafka: ApacheKafka) -> AsyncIterator[Exchange]:
    """The demo's parties on the secured broker, each connecting as its own principal;
    the gateway and both LAs' consumers running. The runtime's own broker settings (the
    PLAINTEXT super user) are used by nothing here."""
    await emptied_plan_topics(kafka)
    init_trust(home / "trust", DEMO_PARTIES, DEMO_CONNECTORS)
    ex = Exchange(make_runtime(home, kafka.plaintext), principals=kafka.scram_settings)
    try:
        await ex.start_gateway()
        await ex.start_consumer()
        await ex.start_consumer(party=OTHER_LA)
        yield ex
    finally:
        await ex.stop_all()


async def test_every_party_as_its_own_principal_over_tls_the_whole_flow(
    apache_kafka: ApacheKafka, tmp_path: Path
) -> None:
    async with secured_exchange(tmp_path, apache_kafka) as ex:
        await ex.allocate(
            samples.allocation_update(
                [(AMIRA["nhs_number"], AMIRA["upn"], "sw-amara", "Team 1", "tm-jones")]
            )
        )
        await ex.allocate(
            samples.allocation_update(
                [(LEO["nhs_number"], None, "sw-idris", "North", "tm-north")], la=OTHER_LA
            )
        )
        async with running_outbox(ex.as_principal(SCHOOL), SCHOOL) as school:
            sent = await school.add(c.ATTENDANCE_UPDATE, samples.attendance_update(AMIRA))
            await ex.publish(POLICE, c.POLICE_NOTIFICATION, samples.police_notification(AMIRA))
            await ex.publish(HEALTH, c.HEALTH_UPDATE, samples.health_update(LEO))

            amara = await ex.wait_items("sw-amara", 2)
            assert {v.item.sender_agency for v in amara} == {SCHOOL, POLICE}
            (idris,) = await ex.wait_items("sw-idris", 1, party=OTHER_LA)
            assert idris.item.sender_agency == HEALTH
            assert await ex.queue("sw-idris") == [], "Camden holds none of Islington's child"

            async def receipted() -> bool:
                (entry,) = [e for e in await school.store.entries(SCHOOL) if e.message_id == sent]
                return entry.status == "DELIVERED"

            await eventually(receipted, "the gateway's receipt to reach the school's outbox")

            # Camden asks the school's consent to tell the parents; the school grants it
            (item,) = [v.item for v in amara if v.item.notification_id == str(sent)]
            asked = await ask_consent(
                ex.as_principal(LA), LA, item.item_id, category="PARENT_OR_CARER",
                purpose="Child protection conference", by="sw-amara",
            )  # fmt: skip
            assert asked["state"] == "ASKED"
            (request,) = await asked_of(school, SCHOOL)
            await ConsentRequests(school.store.engine).answer(
                school, request.request_id, granted=True, answered_by="Ms Head"
            )
            granted: list[dict[str, Any]] = []

            async def heard() -> bool:
                outcomes = await consent_outcomes(ex.as_principal(LA), LA)
                granted[:] = [
                    o for o in outcomes.get(request.request_id, []) if o["state"] == "GRANTED"
                ]
                return bool(granted)

            await eventually(heard, "Camden to hear the school's grant")
            assert granted[0]["answered_by"] == "Ms Head"

        # a school behind the connector: its outbox run by the connector, as its principal
        name = samples.AGENCY_NAMES[CONNECTED_SCHOOL]
        record = samples.from_agency(samples.attendance_update(AMIRA), CONNECTED_SCHOOL, name)
        async with running_outbox(ex.as_principal(CONNECTOR), CONNECTED_SCHOOL) as carried:
            through = await carried.add(c.ATTENDANCE_UPDATE, record)
            amara = await ex.wait_items("sw-amara", 3)
            assert str(through) in {v.item.notification_id for v in amara}

            async def carried_receipt() -> bool:
                entries = await carried.store.entries(CONNECTED_SCHOOL)
                return [e.status for e in entries if e.message_id == through] == ["DELIVERED"]

            await eventually(carried_receipt, "Gospel Oak's receipt, read by its connector")

        # its key adult's consumer, run by the connector as its principal, reads the
        # connector's delivery topic in the school's group
        await ex.start_consumer(party=CONNECTED_SCHOOL, principal=CONNECTOR)
        incident = samples.police_notification(AMIRA)
        incident["police"]["incident"]["school_id"] = CONNECTED_SCHOOL
        told = await ex.publish(POLICE, c.POLICE_NOTIFICATION, incident)
        (adult,) = await ex.wait_items(f"key-adult:{CONNECTED_SCHOOL}", 1, party=CONNECTED_SCHOOL)
        assert adult.item.notification_id == str(told)


async def test_a_school_beyond_its_grant_is_refused_and_the_exchange_says_so(
    apache_kafka: ApacheKafka, tmp_path: Path
) -> None:
    """As school-hillside: publishing on another school's inbound topic, reading Camden's
    delivery topic, joining the gateway's group. Each is refused by the broker and comes
    out of the exchange's wiring as BrokerRefused, naming what was refused."""
    init_trust(tmp_path / "trust", DEMO_PARTIES, DEMO_CONNECTORS)
    hillside = apache_kafka.scram_settings(SCHOOL)
    rt = make_runtime(tmp_path, apache_kafka.plaintext)
    as_hillside = dataclasses.replace(rt, kafka=hillside)
    with pytest.raises(BrokerRefused, match=r"refused it.*ACLs") as written:
        await publish_as(as_hillside, OTHER_SCHOOL)  # another school's topic, not its own
    assert "TopicAuthorizationFailed" in str(written.value)
    assert inbound_topic(OTHER_SCHOOL) in str(written.value)

    for topics, group in (
        ([delivery_topic(LA)], "sgx-consumer-la-camden"),  # Camden's deliveries
        ([inbound_topic(SCHOOL)], GATEWAY_GROUP),  # its own topic, in the gateway's group
    ):
        with pytest.raises(BrokerRefused, match="refused it") as read:
            await read_as(hillside, topics, group)
        assert "AuthorizationFailed" in str(read.value), read.value


async def publish_as(rt: Runtime, agency: str) -> None:
    async with publisher(rt, agency) as sender:
        record = samples.attendance_update(AMIRA, notification_id=uuid.uuid4())
        await sender.publish(c.ATTENDANCE_UPDATE, record)


async def read_as(settings: KafkaSettings, topics: list[str], group: str) -> None:
    """Read ``topics`` in ``group`` as a service does (its wiring's fetch loop)."""
    consumer = await start_consumer(settings, topics, group_id=group)
    try:
        loop = run_batches(consumer, asyncio.Event(), _nothing, max_records=10, action="read")
        await asyncio.wait_for(loop, timeout=30)
    finally:
        await consumer.stop()


async def _nothing(records: list[ConsumerRecord]) -> None:
    raise AssertionError(f"read what it may not: {records[:1]}")
