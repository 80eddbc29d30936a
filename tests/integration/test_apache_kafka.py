"""The exchange's Kafka wiring against a real Apache Kafka with deploy/'s plan applied.

The broker is ``scripts/ensure-kafka.sh``'s (``tests/kafka_broker.py``): one KRaft node on
loopback, the StandardAuthorizer with ``allow.everyone.if.no.acl.found=false``, and the
topics, SCRAM users and ACLs of ``deploy/parties.toml`` applied by the operators' own
``deploy/scripts/create-topics-and-acls.sh``. Clients are the project's own
(``sgx.kafka.wiring`` from ``KafkaSettings``), as a deployed service makes them; the
principals are the plan's, with the passwords ``deploy/scripts/make-certs.sh`` made.

The broker outlives the session, so a topic of the plan holds what earlier runs wrote:
each test writes values of its own and looks for them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import uuid
from typing import cast

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from deploy.acl_plan import (
    PARTIES_FILE,
    Binding,
    Operation,
    Pattern,
    ResourceType,
    consumer_principal,
    load_partnership,
    plan,
)
from sgx.errors import BrokerRefused, TransportError
from sgx.kafka.wiring import (
    admin_client,
    delivery_topic,
    ensure_topics,
    inbound_topic,
    list_topics,
    read_topic,
    receipts_topic,
    start_consumer,
    start_producer,
    topic_partitions,
)
from sgx.settings import REPO_ROOT, KafkaSettings
from tests.kafka_broker import ApacheKafka, kafka_test_settings

pytestmark = pytest.mark.broker

CAMDEN, ISLINGTON = "la-camden", "la-islington"
HILLSIDE, CANONBURY = "school-hillside", "school-canonbury"
CONNECTOR = "mis-north-london"  # carries Gospel Oak and Highbury Fields
GATEWAY = "sgx-gateway"
REFUSAL_S = 10.0  # a refused client must fail within this, not hang


def unique(label: str) -> bytes:
    return f"{label}-{uuid.uuid4().hex}".encode()


async def produce(settings: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = await start_producer(settings)
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def consume_until(
    consumer: AIOKafkaConsumer, wanted: set[bytes], seconds: float
) -> set[bytes]:
    """The values of ``wanted`` that ``consumer`` reads within ``seconds``."""
    seen: set[bytes] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not wanted <= seen and loop.time() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        seen.update(r.value for records in batch.values() for r in records if r.value in wanted)
    return seen


async def fetch_forever(consumer: AIOKafkaConsumer) -> None:
    """Fetch until an error is raised (bound it with a timeout)."""
    while True:
        await consumer.getmany(timeout_ms=200)


async def test_produce_and_consume_over_plaintext(apache_kafka: ApacheKafka) -> None:
    settings = apache_kafka.plaintext_settings()
    topic = f"test.{uuid.uuid4().hex[:12]}"  # ANONYMOUS may create it: a super user
    await ensure_topics(settings, {topic: 1})
    try:
        values = [unique("plain") for _ in range(5)]
        await produce(settings, topic, values)
        group = f"test-{uuid.uuid4().hex[:8]}"
        consumer = await start_consumer(settings, [topic], group_id=group)
        try:
            assert await consume_until(consumer, set(values), 20.0) == set(values)
        finally:
            await consumer.stop()
        assert [r.value for r in await read_topic(settings, topic)] == values  # in order
    finally:  # the broker outlives the session: leave no topic behind
        async with admin_client(settings) as admin:
            await admin.delete_topics([topic])


async def test_the_plan_principals_carry_a_record_over_sasl_ssl(apache_kafka: ApacheKafka) -> None:
    # a school writes its inbound topic; the gateway reads it (no group) and delivers to
    # Camden; Camden's delivery consumer reads it in its own group: every hop SCRAM over
    # TLS, with the certificate make-certs.sh made checked against its CA
    school, gateway = apache_kafka.scram_settings(HILLSIDE), apache_kafka.scram_settings(GATEWAY)
    notification = unique("inbound")
    await produce(school, inbound_topic(HILLSIDE), [notification])
    inbound = [r.value for r in await read_topic(gateway, inbound_topic(HILLSIDE))]
    assert notification in inbound

    delivery = unique("delivery")
    await produce(gateway, delivery_topic(CAMDEN), [delivery])
    camden = apache_kafka.scram_settings(consumer_principal(CAMDEN))
    consumer = await start_consumer(
        camden, [delivery_topic(CAMDEN)], group_id=consumer_principal(CAMDEN)
    )
    try:
        assert await consume_until(consumer, {delivery}, 30.0) == {delivery}
    finally:
        await consumer.stop()


async def test_a_wrong_password_is_refused(
    apache_kafka: ApacheKafka, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = apache_kafka.scram_settings(HILLSIDE, password="not-" + apache_kafka.password(HILLSIDE))
    caplog.set_level(logging.ERROR, logger="aiokafka")
    async with asyncio.timeout(REFUSAL_S):
        with pytest.raises(TransportError, match="Unable to bootstrap"):
            await start_producer(wrong)
    # refused by the broker's SCRAM check, not unreachable
    assert "SaslAuthenticationFailed" in caplog.text
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in caplog.text
    producer = await start_producer(apache_kafka.scram_settings(HILLSIDE))  # the right one
    await producer.stop()


async def test_a_plaintext_client_is_refused_by_the_tls_port(
    apache_kafka: ApacheKafka, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aiokafka")
    async with asyncio.timeout(REFUSAL_S):
        with pytest.raises(TransportError, match="Unable to bootstrap"):
            await start_producer(kafka_test_settings(apache_kafka.sasl_ssl))
    assert "closed" in caplog.text  # the broker hung up on a client that spoke no TLS


async def test_a_client_that_does_not_trust_the_dev_ca_is_refused(
    apache_kafka: ApacheKafka, caplog: pytest.LogCaptureFixture
) -> None:
    # the same principal and password, but the system's trust store: the broker's
    # certificate is the dev CA's, so the client refuses it before sending the password
    settings = apache_kafka.scram_settings(HILLSIDE).model_copy(update={"ssl_cafile": None})
    caplog.set_level(logging.ERROR, logger="aiokafka")
    async with asyncio.timeout(REFUSAL_S):
        with pytest.raises(TransportError, match="Unable to bootstrap"):
            await start_producer(settings)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


async def test_a_school_cannot_write_another_schools_inbound_topic(
    apache_kafka: ApacheKafka,
) -> None:
    producer = await start_producer(apache_kafka.scram_settings(HILLSIDE))
    try:
        await producer.send_and_wait(inbound_topic(HILLSIDE), unique("own"))  # its own: yes
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(inbound_topic(CANONBURY), unique("forged"))
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(delivery_topic(CAMDEN), unique("forged"))
    finally:
        await producer.stop()


async def test_a_connector_writes_only_its_own_topic(apache_kafka: ApacheKafka) -> None:
    producer = await start_producer(apache_kafka.scram_settings(CONNECTOR))
    try:
        await producer.send_and_wait(inbound_topic(CONNECTOR), unique("carried"))  # its own
        # nor its own outbound topics: only the gateway writes a record naming an agency
        outbound = (receipts_topic(CONNECTOR), delivery_topic(CONNECTOR))
        others = (inbound_topic(HILLSIDE), delivery_topic(CAMDEN), receipts_topic(HILLSIDE))
        for topic in (*others, *outbound):
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(topic, unique("forged"))
    finally:
        await producer.stop()


async def test_a_school_cannot_join_the_gateways_group(apache_kafka: ApacheKafka) -> None:
    school = apache_kafka.scram_settings(HILLSIDE)
    # a topic it may read, in a group it may not: the group ACL alone refuses it
    with pytest.raises(BrokerRefused, match="refused it") as refused:  # not retried
        await start_consumer(school, [receipts_topic(HILLSIDE)], group_id=GATEWAY)
    assert isinstance(refused.value.__cause__, GroupAuthorizationFailedError)


async def test_one_las_consumer_cannot_read_another_las_delivery_topic(
    apache_kafka: ApacheKafka,
) -> None:
    camden = apache_kafka.scram_settings(consumer_principal(CAMDEN))
    # in its own group, which it may join: the topic ACL alone refuses it
    consumer = await start_consumer(
        camden, [delivery_topic(ISLINGTON)], group_id=consumer_principal(CAMDEN)
    )
    try:
        async with asyncio.timeout(REFUSAL_S):
            with pytest.raises(TopicAuthorizationFailedError, match=delivery_topic(ISLINGTON)):
                await fetch_forever(consumer)
    finally:
        await consumer.stop()


_ACL_RESOURCE = re.compile(r"resourceType=(\w+), name=([^,]+), patternType=(\w+)")
_ACL_ENTRY = re.compile(r"principal=User:([^,]+), host=\*, operation=(\w+), permissionType=ALLOW")


def broker_acls(apache_kafka: ApacheKafka) -> set[Binding]:
    """Every ACL on the broker, read with Kafka's own kafka-acls.sh as sgx-admin."""
    listed = subprocess.run(
        [
            str(REPO_ROOT / "scripts" / "kafka" / "bin" / "kafka-acls.sh"),
            "--bootstrap-server",
            apache_kafka.sasl_ssl,
            "--command-config",
            str(apache_kafka.admin_config),
            "--list",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    acls: set[Binding] = set()
    resource: tuple[str, str, str] | None = None
    for line in listed.splitlines():
        if found := _ACL_RESOURCE.search(line):
            resource = (found[1], found[2], found[3])
        elif (entry := _ACL_ENTRY.search(line)) and resource is not None:
            kind, name, pattern = resource
            operation = cast(Operation, entry[2].capitalize())  # READ -> Read
            acls.add(
                Binding(
                    entry[1],
                    operation,
                    cast(ResourceType, kind.lower()),
                    name,
                    cast(Pattern, pattern.lower()),
                )
            )
    return acls


async def test_the_broker_holds_the_plan_topics_and_exactly_its_acls(
    apache_kafka: ApacheKafka,
) -> None:
    the_plan = plan(*load_partnership(PARTIES_FILE))
    admin = apache_kafka.plaintext_settings()
    topics = set(await list_topics(admin))
    for topic in the_plan.topics:
        assert topic.name in topics
        assert len(await topic_partitions(admin, topic.name)) == topic.partitions, topic.name
    assert broker_acls(apache_kafka) == set(the_plan.bindings)
